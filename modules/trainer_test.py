"""The Trainer's training loop: when early stopping may stop it."""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from gemstone import contract
from modules import model as model_lib, trainer, transform

SIZE = 16


def _photos(brightness, labels):
    """Grey photos of the given brightness, with the labels given (variety and family alike)."""
    images = tf.constant(np.broadcast_to(np.array(brightness, np.float32)[:, None, None, None],
                                         (len(labels), SIZE, SIZE, 3)).copy())
    inputs = {contract.IMAGE_XF: images, contract.COLOUR_XF: transform.colour_histogram(images)}
    y = tf.constant(labels, tf.int64)
    return tf.data.Dataset.from_tensor_slices((inputs, {contract.VARIETY_HEAD: y, contract.FAMILY_HEAD: y}))


@pytest.mark.slow  # trains
def test_early_stopping_waits_for_the_learning_rate_to_decay_then_stops(tmp_path):
    """Eval labels are the reverse of the training labels: eval loss gets worse from the first epoch.

    Watched from the start, training would stop after patience + 1 epochs. It is
    watched from the middle of the cosine decay, then stops `patience` epochs later.
    """
    # Seeded, so every run is the same one: late in the decay eval loss moves by only
    # hundredths an epoch, either way, and one unseeded run in about fifteen failed.
    keras.utils.set_random_seed(0)
    brightness = np.tile([0.2, 0.8], 16)
    train = _photos(brightness, (brightness > 0.5).astype(int)).batch(8)
    val = _photos(brightness, (brightness < 0.5).astype(int)).batch(8)
    model = model_lib.build_model(SIZE, 2, 2, transform.COLOUR_FEATURE_SIZE, learning_rate=1e-2)
    config = {**trainer.DEFAULTS, "epochs": 8, "patience": 2, "batch_size": 8, "imbalance": "none"}
    history = trainer._fit(model, train, val, config, np.array([16, 16]), str(tmp_path))
    losses = history["val_loss"]
    assert np.argmin(losses) == 0, f"the premise: eval loss is lowest at the first epoch, got {losses}"
    assert len(losses) == 8 // 2 + 2 + 1  # watched from epoch 4 (0-based), stopped 2 epochs without improving
