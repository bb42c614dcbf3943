"""The dashboard's figures (gemstone/report.py). The page `gemstone report` writes for a pipeline run, rendered by a
real headless browser: tests/test_dashboard.py."""
import base64

import pytest

from gemstone import charts, evaluation_results, report


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


def test_the_confusion_cells_give_the_photos_and_their_share_of_the_true_class():
    cells = charts.confusion_cells([[3, 1], [0, 4]])
    assert [(i, j, text) for i, j, text, _ in cells] == [(0, 0, "3\n75%"), (0, 1, "1\n25%"), (1, 1, "4\n100%")]
    assert base64.b64decode(charts.confusion_chart([[3, 1], [0, 4]], ["Emerald", "Ruby"]))[:4] == b"\x89PNG"
