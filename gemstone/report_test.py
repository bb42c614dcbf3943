"""The dashboard's figures (gemstone/report.py). The page `gemstone report` writes for a pipeline run, rendered by a
real headless browser: tests/test_dashboard.py."""
from gemstone import evaluation_results, report


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
