"""The open-set scores on synthetic features: what is far is flagged, what is typical is not, and why."""
import numpy as np
import pytest
import tensorflow as tf

from gemstone import contract
from modules import novelty

CLASSES, DIMENSIONS = 3, 8


def _clusters(rng, per_class, spread=0.3):
    """Photos of three varieties: features around three centres, logits that favour each photo's own class."""
    centres = np.eye(CLASSES, DIMENSIONS) * 4.0
    labels = np.repeat(np.arange(CLASSES), per_class)
    features = centres[labels] + rng.normal(0, spread, (len(labels), DIMENSIONS))
    logits = np.eye(CLASSES)[labels] * 3.0 + rng.normal(0, 0.5, (len(labels), CLASSES))
    return features.astype(np.float32), labels, logits.astype(np.float32)


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(0)
    train, labels, _ = _clusters(rng, 60)
    eval_features, _, eval_logits = _clusters(rng, 40)
    return novelty.fit(train, labels, eval_features, eval_logits, (0, DIMENSIONS), CLASSES, temperature=1.0)


def test_a_photo_far_from_every_variety_is_not_a_gemstone_and_a_typical_one_is_known(fitted):
    model, _ = fitted
    rng = np.random.default_rng(1)
    typical, _, logits = _clusters(rng, 5)
    far = rng.normal(0, 0.3, (5, DIMENSIONS)).astype(np.float32) + 12.0
    scaled = novelty.scores(np.concatenate([typical, far]), np.concatenate([logits, logits[:5]]), model).numpy()
    assert (scaled[:15, 0] < 1).mean() >= 0.9  # typical photos: under the threshold
    assert (scaled[15:, 0] > 1).all()  # far ones: over it, by far
    known = novelty.known(tf.constant(scaled)).numpy()
    assert not known[15:].any()


def test_an_uncertain_head_answers_unfamiliar_variety(fitted):
    model, _ = fitted
    rng = np.random.default_rng(2)
    typical, _, confident = _clusters(rng, 5)
    unsure = np.zeros_like(confident)  # the same probability for every variety
    scaled = novelty.scores(np.concatenate([typical, typical]), np.concatenate([confident, unsure]), model).numpy()
    assert (scaled[15:, 1] > 1).all() and (scaled[:15, 1] < 1).mean() >= 0.9


def test_the_scale_puts_the_median_eval_photo_at_0_and_the_threshold_at_1(fitted):
    model, report = fitted
    rng = np.random.default_rng(0)
    _clusters(rng, 60)
    eval_features, _, eval_logits = _clusters(rng, 40)  # the eval photos fit() saw
    scaled = novelty.scores(eval_features, eval_logits, model).numpy()
    np.testing.assert_allclose(np.median(scaled, axis=0), 0.0, atol=1e-4)
    flagged = scaled > 1.0
    assert flagged.any(axis=1).mean() == pytest.approx(report["eval_flagged_either"])
    assert report["eval_flagged_either"] <= novelty.FLAGGED_SHARE
    for i, question in enumerate(contract.NOVELTY_QUESTIONS):
        assert flagged[:, i].mean() == pytest.approx(report["eval_flagged"][question])


def test_thresholds_flag_at_most_the_share_together_and_at_least_half_of_it_each():
    rng = np.random.default_rng(3)
    scores = rng.normal(size=(2000, 2))
    threshold = novelty.thresholds(scores, 0.05)
    either = (scores > threshold).any(axis=1).mean()
    assert 0.04 <= either <= 0.05
    assert ((scores > threshold).mean(axis=0) >= 0.025).all()
    # Perfectly correlated scores flag the same photos: each may then flag the whole share.
    same = np.repeat(rng.normal(size=(2000, 1)), 2, axis=1)
    assert (same > novelty.thresholds(same, 0.05)).any(axis=1).mean() == pytest.approx(0.05, abs=0.002)


def test_scores_that_flag_different_photos_still_get_thresholds_that_flag_some():
    """Two questions that never flag the same photo, on 100 eval photos: half the share each flags 3 + 3,
    over 5 %; the thresholds must go lower still rather than flag nothing (the highest scores)."""
    first = np.random.default_rng(4).permutation(100).astype(np.float32)
    scores = np.stack([first, -first], axis=1)
    flagged = scores > novelty.thresholds(scores, 0.05)
    assert 0.03 <= flagged.any(axis=1).mean() <= 0.05
    assert flagged.any(axis=0).all()


def test_the_review_reason_is_the_first_that_holds():
    scaled = tf.constant([[2.0, 2.0], [0.0, 2.0], [0.0, 0.0], [0.0, 0.0], [1.0, 0.0]])
    confident = tf.constant([False, False, False, True, True])
    reasons = [r.decode() for r in novelty.review_reason(scaled, confident).numpy()]
    assert reasons == [contract.NOT_A_GEMSTONE, contract.UNFAMILIAR_VARIETY, contract.LOW_CONFIDENCE, "",
                       contract.NOT_A_GEMSTONE]
    assert novelty.known(scaled).numpy().tolist() == [False, False, True, True, False]


def test_a_variety_without_training_photos_is_never_the_nearest(fitted):
    rng = np.random.default_rng(4)
    train, labels, _ = _clusters(rng, 30)
    keep = labels != 2
    eval_features, _, eval_logits = _clusters(rng, 20)
    model, _ = novelty.fit(train[keep], labels[keep], eval_features[:40], eval_logits[:40], (0, DIMENSIONS), CLASSES,
                           1.0)
    third = eval_features[40:]  # photos of the variety no training photo showed: far from the two others
    assert (novelty.scores(third, eval_logits[40:], model).numpy()[:, 0] > 1).all()
