"""The dashboard's figures and page (gemstone/report.py, report_page.py, report_photos.py), on small synthetic data.
The page `gemstone report` writes for a pipeline run, rendered by a real headless browser: tests/test_dashboard.py."""
import base64
import io
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

from gemstone import charts, contract, evaluation_results, report, report_page, report_photos


def test_robustness_predictions_of_old_and_new_runs_are_read_alike():
    """Runs made before the prediction record was shared wrote "predicted" beside the label (no traceback on them)."""
    new = {"source_path": "Ruby/1.jpg", "label": "Ruby", "prediction": {"label": "Spinel", "confidence": 0.4}}
    old = {"source_path": "Ruby/1.jpg", "label": "Ruby", "predicted": "Spinel", "confidence": 0.4, "top_k": []}
    assert report._per_photo(new) == report._per_photo(old) == {
        "source_path": "Ruby/1.jpg", "label": "Ruby", "predicted": "Spinel", "confidence": 0.4,
        "known": None, "novelty": None, "review_reason": None}


def test_ece_by_chance_is_what_luck_alone_gives_a_calibrated_model_and_shrinks_with_more_photos():
    # 100 photos at confidence 0.5: the share right is 0.5 +- 0.05, so 19 draws in 20 stay within about 0.1.
    few = evaluation_results.ece_by_chance_p95([{"photos": 100, "confidence": 0.5}])
    many = evaluation_results.ece_by_chance_p95([{"photos": 10000, "confidence": 0.5}])
    assert 0.08 < few < 0.12
    assert 8 < few / many < 12
    # At confidence 0.99 luck leaves little room: 0.02 on 100 photos (97 right in 100).
    assert evaluation_results.ece_by_chance_p95([{"photos": 100, "confidence": 0.99}]) < 0.03
    shown = evaluation_results.reliability([(100, 50, 50, 0.4), (0, 0, 0, 0.6)])
    assert shown["ece"] == 0 and shown["ece_by_chance_p95"] == few


@pytest.mark.parametrize("successes, trials, low, high", [
    # Newcombe (1998), "Two-sided confidence intervals for the single proportion", Statistics in Medicine 17,
    # table I, method 3 (Wilson's score interval without continuity correction).
    (81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611), (1, 29, 0.0061, 0.1718),
    # A class with 10 test photos, all right: the interval still reaches down to 10 / (10 + 1.96^2) = 72 %.
    (10, 10, 0.7225, 1.0)])
def test_the_wilson_interval_gives_the_published_values(successes, trials, low, high):
    found = evaluation_results.wilson_interval(successes, trials)
    assert found == pytest.approx((low, high), abs=5e-5)


def test_the_wilson_interval_narrows_with_more_photos_and_needs_some():
    assert evaluation_results.wilson_interval(0, 0) is None
    few, many = evaluation_results.wilson_interval(4, 5), evaluation_results.wilson_interval(400, 500)
    assert few[0] < many[0] < 0.8 < many[1] < few[1]


# --- The per-class table ------------------------------------------------------------------------------

CLASSES = ["Emerald", "Ruby", "Spinel"]


def _metrics(accuracy, photos, baseline=None):
    """load_metrics' shape: per class slice, the candidate's (and the baseline's) accuracy and photo count."""
    metrics = {"overall": {"candidate": {}, "baseline": {}}}
    for name in CLASSES:
        metrics[f"{contract.LABEL_KEY}:{name}"] = {
            "candidate": {contract.ACCURACY: accuracy[name], contract.EXAMPLE_COUNT: photos[name]},
            "baseline": {contract.ACCURACY: baseline[name]} if baseline else {}}
    return metrics


def test_the_per_class_table_puts_the_worst_class_first_with_its_interval():
    # Emerald 8/10 right, Ruby 1/2, Spinel 4/5: Ruby is worst; Emerald and Spinel tie at 0.8, Emerald has more photos.
    matrix = np.array([[8, 1, 1], [0, 1, 1], [0, 1, 4]])
    rows = report.per_class_rows(CLASSES, _metrics({"Emerald": 0.8, "Ruby": 0.5, "Spinel": 0.8},
                                                   {"Emerald": 10, "Ruby": 2, "Spinel": 5}),
                                 matrix, {"Emerald": "Beryl", "Ruby": "Corundum", "Spinel": "Spinel"})
    assert [r["label"] for r in rows] == ["Ruby", "Emerald", "Spinel"]
    ruby, emerald, _ = rows
    assert emerald["accuracy_interval"] == pytest.approx((0.4902, 0.9433), abs=5e-5)
    assert ruby["accuracy_interval"] == pytest.approx(evaluation_results.wilson_interval(1, 2))
    assert (ruby["family"], ruby["confused_with"], emerald["confused_with"]) == ("Corundum", "Spinel", "Ruby")


def test_classes_without_test_photos_come_last_with_no_interval():
    rows = report.worst_first([{"label": "A", "accuracy": None, "photos": 0},
                               {"label": "B", "accuracy": 1.0, "photos": 3}])
    assert [r["label"] for r in rows] == ["B", "A"]
    rows = report.per_class_rows(["Ruby"], {}, np.zeros((1, 1)), {})
    assert rows[0]["accuracy"] is None and rows[0]["accuracy_interval"] is None


def test_the_confusion_cells_give_the_photos_and_their_share_of_the_true_class():
    cells = charts.confusion_cells([[3, 1], [0, 4]])
    assert [(i, j, text) for i, j, text, _ in cells] == [(0, 0, "3\n75%"), (0, 1, "1\n25%"), (1, 1, "4\n100%")]
    assert base64.b64decode(charts.confusion_chart([[3, 1], [0, 4]], ["Emerald", "Ruby"]))[:4] == b"\x89PNG"


# --- Photos: the worst confusions' thumbnails with their overlays, and those flagged for review ---------

def _jpeg(colour=(120, 120, 120), size=(64, 48)):
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def _png(image):
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _left_half_looked_at(size=(32, 24)):
    """A heatmap as the explain signature gives it (the photo's aspect ratio): hot on the left half only."""
    heat = Image.new("L", size, 0)
    heat.paste(255, (0, 0, size[0] // 2, size[1]))
    return _png(heat)


def _empty_map(size=(32, 24)):
    return _png(Image.new("L", size, 0))


def _decoded(b64):
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB"), np.float32)


def _photo(path, label="Ruby", predicted="Spinel", confidence=0.4, reason=None):
    return {"source_path": path, "label": label, "predicted": predicted, "confidence": confidence,
            "known": reason not in (contract.NOT_A_GEMSTONE, contract.UNFAMILIAR_VARIETY), "review_reason": reason}


def test_a_thumbnail_gets_the_overlay_of_where_the_model_looked_and_none_without_a_map():
    image_of = {"a.jpg": _jpeg(), "b.jpg": _jpeg(), "c.jpg": _jpeg()}
    calls = []

    def explainer(photos):  # as the explain signature: one heatmap per photo, in order
        calls.append(len(photos))
        return [_left_half_looked_at(), None, _empty_map()]

    heatmap_of = report_photos.heatmaps_of(image_of, explainer)
    assert calls == [3] and list(heatmap_of) == ["a.jpg", "c.jpg"]  # each photo explained once; b.jpg could not be
    shown = report_photos.figures([_photo("a.jpg"), _photo("b.jpg"), _photo("gone.jpg"), _photo("c.jpg")],
                                  image_of, heatmap_of)
    assert [f["path"] for f in shown] == ["a.jpg", "b.jpg", "c.jpg"]  # a photo not among the examples is left out
    plain, laid_over = _decoded(shown[0]["jpeg_base64"]), _decoded(shown[0]["overlay_base64"])
    assert plain.shape == laid_over.shape == (48, 64, 3)  # at most THUMBNAIL_SIDE, the photo's aspect ratio
    change = np.abs(laid_over - plain).sum(axis=2)
    assert change[:, :24].mean() > 100 and change[:, 40:].mean() < 10  # coloured where it looked, only there
    assert shown[1]["overlay_base64"] is None and shown[1]["confidence"] == 0.4
    # A map that is 0 everywhere leaves the photo as it is, and the figure says so.
    assert [f["map_empty"] for f in shown] == [False, False, True]
    assert np.abs(_decoded(shown[2]["overlay_base64"]) - _decoded(shown[2]["jpeg_base64"])).max() < 10
    assert report_photos.heatmaps_of(image_of, None) == {}


def test_the_photos_flagged_for_review_are_those_with_a_reason_by_reason_least_confident_first():
    predictions = [_photo("ok.jpg"), _photo("low.jpg", confidence=0.5, reason=contract.LOW_CONFIDENCE),
                   _photo("lower.jpg", confidence=0.3, reason=contract.LOW_CONFIDENCE),
                   _photo("odd.jpg", confidence=0.9, reason=contract.UNFAMILIAR_VARIETY),
                   _photo("cat.jpg", confidence=0.8, reason=contract.NOT_A_GEMSTONE)]
    flagged = report_photos.flagged_for_review(predictions)
    assert [p["source_path"] for p in flagged] == ["cat.jpg", "odd.jpg", "lower.jpg", "low.jpg"]


def test_the_explain_signature_of_an_exported_model_gives_a_heatmap_per_photo(contract_model, demo_photos):
    photos = [p.read_bytes() for p in sorted((demo_photos / "images").rglob("*.jpg"))[:report_photos.EXPLAIN_BATCH + 1]]
    explainer = report_photos.saliency_explainer(str(contract_model / "1"))
    heatmaps = explainer(photos)  # two batches
    assert len(heatmaps) == len(photos)
    for photo, heatmap in zip(photos, heatmaps):
        assert Image.open(io.BytesIO(heatmap)).mode == "L"
        assert report_photos.figures([_photo("p.jpg")], {"p.jpg": photo}, {"p.jpg": heatmap})[0]["overlay_base64"]


# --- The page -----------------------------------------------------------------------------------------

def _data(baseline=True, pushed_to="/home/g/serving/gem/1763886000", flagged=3):
    """What report.collect gives, for two classes and a few photos; `baseline`: a previous blessed model existed."""
    figure = {**_photo("images/Ruby/ruby_1.jpg", reason=contract.LOW_CONFIDENCE), "path": "images/Ruby/ruby_1.jpg",
              "jpeg_base64": "QUJD", "overlay_base64": "REVG"}
    rows = report.per_class_rows(["Emerald", "Ruby"], {
        "overall": {"candidate": {}, "baseline": {}},
        "label:Emerald": {"candidate": {contract.ACCURACY: 1.0, contract.EXAMPLE_COUNT: 2},
                          "baseline": {contract.ACCURACY: 0.5} if baseline else {}},
        "label:Ruby": {"candidate": {contract.ACCURACY: 0.5, contract.EXAMPLE_COUNT: 2},
                       "baseline": {contract.ACCURACY: 1.0} if baseline else {}}}, np.array([[2, 0], [1, 1]]), {})
    return {
        "pipeline_name": "gem", "split": "test", "created": "2026-12-05T10:00:00", "blessed": True,
        "pushed": report.pushed_version(pushed_to), "validation_failures": [], "robustness_failures": [],
        "classes": ["Emerald", "Ruby"],
        "overall": {"candidate": {contract.ACCURACY: 0.75, contract.EXAMPLE_COUNT: 4},
                    "baseline": {contract.ACCURACY: 0.75, contract.EXAMPLE_COUNT: 4} if baseline else {}},
        "per_class": rows,
        "families": [{"slice": "Beryl", "photos": 2, "accuracy": 1.0, "previous_accuracy": 0.5 if baseline else None,
                      "top_k_accuracy": 1.0}],
        "size_buckets": [], "confusion_matrix": [[2, 0], [1, 1]],
        "calibration": {"buckets": [{"from": 0.5, "photos": 4, "accuracy": 0.75, "confidence": 0.7}], "ece": 0.05,
                        "ece_by_chance_p95": 0.2},
        "review": {}, "robustness": None, "open_set": None,
        "worst_confusions": [{"label": "Ruby", "predicted": "Emerald", "photos": 1, "thumbnails": [figure]}],
        "explained": True,
        "flagged_for_review": {"photos": 40, "flagged": flagged, "shown": [figure] * min(flagged, 1)},
        "data_report": None, "sources": {"model": "/pipelines/gem/Trainer/model/7", "evaluation": "/e/9"},
    }


class _Tables(HTMLParser):
    """The header cells of each table, by its id (or its position)."""

    def __init__(self):
        super().__init__()
        self.headers, self._in_th = [], False

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.headers.append((dict(attrs).get("id"), []))
        self._in_th = tag == "th"

    def handle_data(self, data):
        if self._in_th:
            self.headers[-1][1].append(data)

    def handle_endtag(self, tag):
        self._in_th = self._in_th and tag != "th"


def _headers(page):
    parsed = _Tables()
    parsed.feed(page)
    return parsed.headers


def test_the_header_names_the_pushed_version_not_the_trainers_artifact():
    page = report_page.render(_data())
    header = page[:page.index("<h2>")]
    assert "Pushed as version <b>1763886000</b> (<code>/home/g/serving/gem/1763886000</code>)" in header
    assert "Trainer/model/7" not in header and "Not pushed" not in header
    page = report_page.render(_data(pushed_to=None))
    assert "<b>Not pushed</b>" in page[:page.index("<h2>")]


def test_on_a_first_run_the_page_says_there_is_nothing_to_compare_with_instead_of_blank_columns():
    first = report_page.render(_data(baseline=False))
    assert first.count(report_page.FIRST_RUN) == 2  # under the overall metrics and the per-class table
    assert all("previous" not in h and "previous blessed" not in h for _, h in _headers(first))
    later = report_page.render(_data(baseline=True))
    assert report_page.FIRST_RUN not in later
    per_class = dict(_headers(later))["per-class"]
    assert per_class[:7] == ["class", "family", "photos", "accuracy", "95% interval", "previous", "change"]
    assert "<td>1.000</td><td>0.500</td><td>+0.500</td>" in later  # the family slice against the previous model


def test_the_per_class_table_opens_worst_first_with_the_interval_and_says_so():
    page = report_page.render(_data())
    rows = page[page.index('id="per-class"'):]
    assert rows.index("<td>Ruby</td>") < rows.index("<td>Emerald</td>")
    assert '<th data-order="asc">accuracy</th>' in page  # the arrow on the column the rows are in order of
    low, high = evaluation_results.wilson_interval(1, 2)
    assert f"{low:.2f}–{high:.2f}" in rows and "Worst first" in page


def test_the_worst_confusions_and_the_photos_flagged_for_review_show_their_overlays():
    page = report_page.render(_data(flagged=30))
    review = page[page.index('<h2 id="review">'):page.index("<h2>Calibration")]
    assert "Flagged for review (30 of 40 test photos)" in review
    assert "(the first 1)" in review and "low confidence" in review and "Ruby &rarr; Spinel 0.40" in review
    assert 'src="data:image/jpeg;base64,REVG"' in review  # the overlay beside the photo
    confusions = page[page.index("<h2>Worst confusions"):page.index('<h2 id="review">')]
    assert 'src="data:image/jpeg;base64,QUJD"' in confusions and 'src="data:image/jpeg;base64,REVG"' in confusions
    empty = report_page.render({**_data(), "worst_confusions": [{
        "label": "Ruby", "predicted": "Emerald", "photos": 1,
        "thumbnails": [{**_data()["worst_confusions"][0]["thumbnails"][0], "map_empty": True}]}]})
    assert "<i>empty map</i>" in empty[empty.index("<h2>Worst confusions"):empty.index('<h2 id="review">')]
    assert "<i>empty map</i></figcaption>" not in page
    none_flagged = report_page.render(_data(flagged=0))
    assert "No test photo was flagged for review." in none_flagged
    without = report_page.render({**_data(), "explained": False})
    assert "no <code>explain</code> signature" in without
