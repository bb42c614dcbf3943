"""Temperature scaling and the calibration figures: what the model card and the review flag rest on."""
import numpy as np

from modules import calibration


def _overconfident(n=4000, classes=5, seed=0):
    """Logits of a model right 70 % of the time that claims about 99 %: the true answer's logit is
    raised when right, a wrong one's otherwise, then everything is scaled up."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    right = rng.random(n) < 0.7
    top = np.where(right, labels, (labels + rng.integers(1, classes, n)) % classes)
    logits = rng.normal(0, 0.3, (n, classes))
    logits[np.arange(n), top] += 3.0
    return logits * 4.0, labels


def test_temperature_above_one_cures_overconfidence_without_changing_any_answer():
    logits, labels = _overconfident()
    temperature = calibration.fit_temperature(logits, labels)
    before, after = calibration.softmax(logits), calibration.softmax(logits, temperature)
    assert temperature > 2.0
    assert (before.argmax(1) == after.argmax(1)).all()
    assert calibration.nll(logits, labels, temperature) < calibration.nll(logits, labels, 1.0)
    assert calibration.expected_calibration_error(after, labels) < 0.05 < calibration.expected_calibration_error(
        before, labels)


def test_ece_is_the_gap_between_confidence_and_accuracy():
    # Every answer at confidence 0.9, right half the time: ECE 0.4.
    probabilities = np.tile([0.9, 0.1], (10, 1))
    labels = np.array([0, 1] * 5)
    assert abs(calibration.expected_calibration_error(probabilities, labels) - 0.4) < 1e-9


def test_coverage_accuracy_counts_only_the_answers_above_the_threshold():
    probabilities = np.array([[0.95, 0.05], [0.55, 0.45], [0.8, 0.2], [0.3, 0.7]])
    labels = np.array([0, 1, 1, 1])
    rows = {r["threshold"]: r for r in calibration.coverage_accuracy(probabilities, labels, [0.0, 0.6, 0.99])}
    assert rows[0.0] == {"threshold": 0.0, "coverage": 1.0, "accuracy": 0.5}
    assert rows[0.6]["coverage"] == 0.75 and abs(rows[0.6]["accuracy"] - 2 / 3) < 1e-9
    assert rows[0.99] == {"threshold": 0.99, "coverage": 0.0, "accuracy": None}


def test_report_says_what_calibration_changed():
    logits, labels = _overconfident(n=1000)
    report = calibration.report(logits, labels, review_threshold=0.6)
    assert report["examples"] == 1000 and report["ece_after"] < report["ece_before"]
    assert 0.65 < report["accuracy"] < 0.75
    assert 0.0 < report["review_rate"] < 1.0


def test_ece_by_chance_is_what_a_perfectly_calibrated_model_shows_and_shrinks_with_more_photos():
    rng = np.random.default_rng(1)
    confidence = rng.uniform(0.5, 1.0, 500)  # two classes: the first is always the answer
    few, many = calibration.ece_by_chance(confidence), calibration.ece_by_chance(np.tile(confidence, 16))
    # A model that is calibrated by construction: right with probability its confidence.
    right = rng.random(500) < confidence
    probabilities = np.stack([confidence, 1 - confidence], axis=1)
    observed = calibration.expected_calibration_error(probabilities, np.where(right, 0, 1))
    assert 0.01 < few["mean"] < few["p95"] < 0.1
    assert observed < few["p95"] + 0.02
    # Sixteen times the photos: the chance ECE falls about four-fold (one over the square root of the count).
    assert 2.5 < few["mean"] / many["mean"] < 6
    # A model that says 0.99 and is right 70 % of the time is far above chance.
    assert calibration.expected_calibration_error(np.tile([0.99, 0.01], (500, 1)), (rng.random(500) > 0.7).astype(int)) \
        > 10 * calibration.ece_by_chance(np.full(500, 0.99))["p95"]
