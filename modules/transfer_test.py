"""Transfer learning on cached features: what the trunk's pass keeps, and when fine-tuning is kept."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from gemstone import contract
from modules import model as model_lib, transfer, transform
from tests.colour_photos import colour_photos

SIZE = 75  # InceptionV3's smallest input


def _photos(n, seed=0):
    return tf.data.Dataset.from_tensor_slices(colour_photos(n, SIZE, seed)).batch(4)


@pytest.fixture(scope="module")
def parts():
    keras.utils.set_random_seed(0)
    return model_lib.build_transfer_model(SIZE, 2, 2, transform.COLOUR_FEATURE_SIZE)


@pytest.fixture(scope="module")
def train_and_val(parts):
    """Two views of 8 training photos and one of 8 eval photos, as the trunk gives them."""
    return (transfer.cache(parts, _photos(8), views=2, augment=transfer.augmenter(True, seed=1)),
            transfer.cache(parts, _photos(8, seed=1), views=1))


@pytest.mark.slow  # runs InceptionV3 over every view
def test_each_view_is_a_pass_of_every_photo_and_only_the_later_views_are_augmented(parts):
    cached = transfer.cache(parts, _photos(6), views=3, augment=transfer.augmenter(True, seed=1), keep_images=4)
    assert len(cached.variety) == 18 and cached.cut_map.dtype == np.float16
    np.testing.assert_array_equal(cached.variety, np.tile(np.arange(6) % 2, 3))
    assert cached.images.shape == (4, SIZE, SIZE, 3)
    first, second = cached.low[:6], cached.low[6:12]
    assert not np.allclose(first, second)  # augmented
    again = transfer.cache(parts, _photos(6), views=1)
    np.testing.assert_allclose(again.low, first, rtol=1e-5, atol=1e-5)  # the first view is the photo as it is


@pytest.mark.slow  # trains
def test_fine_tuning_that_does_not_lower_the_eval_loss_is_dropped(parts, train_and_val, tmp_path):
    """An absurd learning rate ruins the top blocks: the model after stage 1 must come back."""
    train, val = train_and_val
    config = {**contract.TRAINER_DEFAULTS, "epochs": 2, "fine_tune_epochs": 2, "batch_size": 4, "patience": 5,
              "fine_tune_learning_rate_factor": 1e5}
    history = transfer.fit(parts, train, val, 8, config, np.ones(2, np.float32), str(tmp_path)).history
    assert history["fine_tuning_kept"] == [False]
    stage1, stage2 = history[transfer.MONITOR][:2], history[transfer.MONITOR][2:]
    assert len(stage2) == 2 and max(stage2) < max(stage1), history[transfer.MONITOR]  # the premise: it got worse
    fine_tune = parts.fine_tune_model()
    model_lib.compile_model(fine_tune, 0.0)
    # Stage 1 keeps its last epoch's weights; those are what the model has again.
    assert transfer._accuracy(fine_tune, val) == stage1[-1]


@pytest.mark.slow  # trains
def test_the_head_trains_every_epoch_of_its_schedule_and_keeps_the_last_weights(parts, train_and_val, tmp_path):
    """No early stopping in stage 1: with patience 1 it would stop once the eval accuracy stalls."""
    train, val = train_and_val
    config = {**contract.TRAINER_DEFAULTS, "epochs": 6, "fine_tune_epochs": 0, "batch_size": 4, "patience": 1}
    history = transfer.fit(parts, train, val, 8, config, np.ones(2, np.float32), str(tmp_path)).history
    assert len(history[transfer.MONITOR]) == 6
    last_loss = parts.head.evaluate(val.head_inputs(), val.labels(parts.head), verbose=0, return_dict=True)["loss"]
    assert last_loss == pytest.approx(history["val_loss"][-1], rel=1e-5)


@pytest.mark.slow  # trains
def test_the_refit_learns_from_the_eval_photos_and_calibration_reads_the_head_from_before_it(
        parts, train_and_val, tmp_path):
    """Training photos are all red (class 0), eval photos red and blue: only the refit sees a blue one."""
    train, val = train_and_val
    red = np.flatnonzero(train.variety == 0)
    red_only = train.rows(red)
    config = {**contract.TRAINER_DEFAULTS, "epochs": 8, "fine_tune_epochs": 0, "batch_size": 4}
    fitted = transfer.fit(parts, red_only, val, 4, config, np.ones(2, np.float32), str(tmp_path), refit_on=val)

    assert (fitted.eval_logits.argmax(axis=1) == 0).all()  # the held-out head never saw blue
    refit = parts.head.predict(val.head_inputs(), verbose=0)[contract.VARIETY_HEAD].argmax(axis=1)
    assert (refit == val.variety).mean() >= 0.75, (refit, val.variety)
    # As many steps as stage 1: 8 epochs of 2 batches there, 4 epochs of 4 batches (twice the samples) here.
    assert len(fitted.history[transfer.MONITOR]) == 8 and len(fitted.history["refit_loss"]) == 4


def test_first_view_keeps_the_photos_as_they_are():
    """Views are stacked view-major: the first `photos` rows of every column are the first view."""
    rows = np.arange(6)  # 3 photos x 2 views
    cached = transfer.Cached(rows.reshape(6, 1, 1, 1).astype(np.float16), rows[:, None] * 1.0, rows[:, None] * 2.0,
                             rows[:, None] * 3.0, rows % 3, rows % 3, np.zeros((2, 4, 4, 3), np.float32))
    first = cached.first_view(3)
    for column in ("cut_map", "low", "high", "colour", "variety", "family"):
        assert len(getattr(first, column)) == 3, column
    np.testing.assert_array_equal(first.low[:, 0], [0, 1, 2])
    assert len(first.images) == 2  # the kept photos stay as they were


@pytest.mark.slow  # runs the top blocks
def test_after_kept_fine_tuning_the_features_are_read_from_the_top_blocks_as_they_are_now(parts, train_and_val):
    """The cached top-block features are the frozen ones; once fine-tuning was kept they are stale."""
    train, _ = train_and_val
    stale = train._replace(high=np.zeros_like(train.high))
    assert not transfer._as_now(parts, stale, tuned=False).high.any()  # frozen: the cached features as they are
    np.testing.assert_allclose(transfer._as_now(parts, stale, tuned=True).high,
                               parts.top.predict(stale.cut_map.astype(np.float32), verbose=0), rtol=1e-4, atol=1e-4)


@pytest.mark.slow  # runs the trunk
def test_without_fine_tuning_no_cut_maps_are_kept_and_the_eval_logits_are_the_same(parts, train_and_val):
    """Calibration's logits from the cached pooled features equal those of the top blocks run over the maps."""
    _, val = train_and_val
    light = transfer.cache(parts, _photos(8, seed=1), views=1, keep_cut_maps=False)
    assert light.cut_map.size == 0 and len(light.cut_map) == 8
    np.testing.assert_array_equal(light.high, val.high)
    np.testing.assert_allclose(transfer._eval_logits(parts, light),
                               transfer._eval_logits(parts, transfer._as_now(parts, val, tuned=True)),
                               rtol=1e-2, atol=1e-2)
