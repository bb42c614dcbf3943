"""The slice dashboard of a pipeline run (`gemstone report`), rendered by a real headless browser.

Chromium is installed by `make test` when missing (Debian's package); without
it the browser test skips and says so. The figures' own tests: gemstone/report_test.py.
"""
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest

from gemstone import contract, paths, report, report_photos
from gemstone.apps import cli, metadata
from tests.tfx_helpers import E2E_PIPELINE

# Each test here reads the artifacts of a whole pipeline run (the `demo_pipeline` fixture).
pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
# As root, and on a machine without network: no sandbox, nothing fetched in the background.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def dashboard(demo_pipeline, tmp_path_factory):
    """(page written by `gemstone report`, the figures it shows) for the test pipeline's latest evaluation."""
    home, _, _ = demo_pipeline
    page = tmp_path_factory.mktemp("report") / "r.html"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GEMSTONE_HOME", str(home))
        assert cli.main(["report", "--pipeline-name", E2E_PIPELINE, "--output", str(page)]) == 0
    data = report.collect(metadata.latest_evaluation(metadata.open_store(E2E_PIPELINE, str(home))), E2E_PIPELINE)
    return page, data


class _Page(HTMLParser):
    """Collects the per-class table's rows, the header titles, and every URL the page would load."""

    def __init__(self):
        super().__init__()
        self.rows, self.titles, self.urls, self._table, self._cell = [], [], [], None, None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self._table = attrs.get("id")
        if self._table == "per-class" and tag == "tr":
            self.rows.append([])
        if self._table == "per-class" and tag == "td":
            self._cell = ""
        if self._table == "per-class" and tag == "th":
            self.titles.append(attrs.get("title"))
        for name in ("src", "href"):
            if name in attrs and not attrs[name].startswith("data:"):
                self.urls.append(attrs[name])

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self.rows[-1].append(self._cell)
            self._cell = None
        if tag == "table":
            self._table = None


def test_the_figures_hang_together(dashboard):
    _, data = dashboard
    matrix = np.asarray(data["confusion_matrix"])
    overall = data["overall"]["candidate"]
    assert matrix.sum() == overall[contract.EXAMPLE_COUNT]
    assert abs(np.trace(matrix) / matrix.sum() - overall[contract.ACCURACY]) < 1e-6
    for row in data["per_class"]:  # worst first, not in the classes' order
        assert row["photos"] == matrix[data["classes"].index(row["label"])].sum()
        if row["photos"]:  # accuracy on a class's slice is its recall
            assert abs(row["accuracy"] - row["recall"]) < 1e-6
    calibrated = data["calibration"]
    assert sum(b["photos"] for b in calibrated["buckets"]) == matrix.sum()
    assert 0.0 <= calibrated["ece"] <= 1.0 and 0.0 < calibrated["ece_by_chance_p95"] < 1.0
    assert {r["slice"] for r in data["families"]} == {r["family"] for r in data["per_class"]}
    assert sum(r["photos"] for r in data["size_buckets"]) == matrix.sum()
    for confusion in data["worst_confusions"]:
        assert confusion["photos"] == matrix[data["classes"].index(confusion["label"]),
                                             data["classes"].index(confusion["predicted"])]
        assert len(confusion["thumbnails"]) == min(confusion["photos"], report.THUMBNAILS_PER_CONFUSION)
    accuracies = [row["accuracy"] for row in data["per_class"] if row["photos"]]
    assert accuracies == sorted(accuracies)  # worst first
    for row in data["per_class"]:
        if row["photos"]:
            low, high = row["accuracy_interval"]
            assert low <= row["accuracy"] <= high and high - low > 0


def test_the_page_names_the_version_the_pusher_wrote(dashboard, demo_pipeline):
    _, data = dashboard
    home, _, _ = demo_pipeline
    pushed = paths.latest_version_dir(paths.serving_dir(E2E_PIPELINE, str(home)))
    if data["blessed"]:
        assert data["pushed"] == {"version": pushed.name, "path": str(pushed)}
    else:
        assert data["pushed"] is None


def test_the_photos_shown_carry_where_the_model_looked(dashboard):
    """The run's model has the explain signature: every photo shown has its overlay, those flagged for review too."""
    page, data = dashboard
    assert data["explained"]
    shown = [t for confusion in data["worst_confusions"] for t in confusion["thumbnails"]]
    review = data["flagged_for_review"]
    shown += review["shown"]
    assert shown, "the premise: a 2-epoch model gets some photos wrong or flags them"
    assert all(photo["overlay_base64"] for photo in shown)
    assert len(review["shown"]) == min(review["flagged"], report_photos.REVIEW_GALLERY_SIZE)
    assert all(photo["review_reason"] in contract.REVIEW_REASONS for photo in review["shown"])
    assert page.read_text().count('class="overlay"') == len(shown)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (make test installs it: apt-get install chromium)")
def test_the_page_renders_offline_in_a_browser_and_shows_every_class(dashboard, tmp_path):
    page, data = dashboard
    flags = CHROMIUM_FLAGS + [f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([CHROMIUM, *flags, "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    parsed = _Page()
    parsed.feed(dom)
    assert parsed.urls == []  # nothing from the network: works offline
    shown = [row[0] for row in parsed.rows if row]
    assert sorted(shown) == sorted(data["classes"]) and len(shown) == len(data["classes"])
    assert shown == [row["label"] for row in data["per_class"]]  # worst first, as collected
    # The sort script ran: it gives every header its tooltip.
    assert parsed.titles and all(title == "click to sort" for title in parsed.titles)
    for alt in ("confusion matrix", "reliability plot", "robustness chart", "image statistics"):
        assert f'alt="{alt}"' in dom, alt

    screenshot = tmp_path / "page.png"
    subprocess.run([CHROMIUM, *flags, "--window-size=1280,2000", f"--screenshot={screenshot}", page.as_uri()],
                   capture_output=True, timeout=120)
    from PIL import Image

    pixels = np.asarray(Image.open(screenshot).convert("L"), np.float32)
    assert pixels.std() > 10  # text, tables and charts, not a blank page
