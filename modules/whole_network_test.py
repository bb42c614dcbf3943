"""Fine-tuning the whole network: learning rates by depth, frozen BatchNormalization, and the keep-or-drop rule."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from gemstone import contract
from modules import model as model_lib, transfer, transform, whole_network
from tests.colour_photos import colour_photos

SIZE = 64


def test_learning_rates_fall_geometrically_from_the_top_group_to_the_stem():
    factors = whole_network.depth_factors(12, bottom_factor=0.1, groups=4)
    groups = [g for g, _ in factors]
    rates = [f for _, f in factors]
    assert groups == sorted(groups) and set(groups) == {0, 1, 2, 3}
    assert rates[0] == pytest.approx(0.1) and rates[-1] == pytest.approx(1.0)
    assert rates == sorted(rates)
    # Geometric: each group's rate is the one below times the same ratio.
    distinct = sorted(set(rates))
    ratios = [b / a for a, b in zip(distinct, distinct[1:])]
    assert ratios == pytest.approx([ratios[0]] * len(ratios))


def test_fewer_layers_than_groups_gives_one_group_per_layer():
    factors = whole_network.depth_factors(2, bottom_factor=0.5, groups=6)
    assert [g for g, _ in factors] == [0, 1] and [f for _, f in factors] == pytest.approx([0.5, 1.0])


def _inputs(n, seed, weighted):
    """(image, variety[, weight]) batches, as the Trainer hands them to whole_network.fine_tune."""
    x, y = colour_photos(n, SIZE, seed)
    items = (x[contract.IMAGE_XF], y[contract.VARIETY_HEAD])
    return tf.data.Dataset.from_tensor_slices(items + ((np.ones(n, np.float32),) if weighted else ())).batch(4)


def _batch_norm_and_conv(parts):
    layers = whole_network.backbone_layers(parts)
    norms = [layer for layer in layers if isinstance(layer, keras.layers.BatchNormalization)]
    convs = [layer for layer in layers if not isinstance(layer, keras.layers.BatchNormalization)]
    return norms, convs


def _cached(parts, n, seed):
    return transfer.cache(parts, tf.data.Dataset.from_tensor_slices(colour_photos(n, SIZE, seed)).batch(4), views=1)


@pytest.mark.slow  # trains the whole network
def test_every_layer_but_batch_norm_learns_and_the_trunk_is_frozen_again_after(tmp_path):
    keras.utils.set_random_seed(0)
    parts = model_lib.build_transfer_model(SIZE, 2, 2, transform.COLOUR_FEATURE_SIZE)
    norms, convs = _batch_norm_and_conv(parts)
    before = {"norm": [w.numpy().copy() for layer in norms for w in layer.weights],
              "stem": convs[0].weights[0].numpy().copy(), "top": convs[-1].weights[0].numpy().copy()}
    seen = []

    def augment(images):
        seen.append(True)  # traced into the training step
        return images

    cached = _cached(parts, 8, 0)
    config = {**contract.TRAINER_DEFAULTS, "fine_tune_epochs": 2, "batch_size": 4, "whole_network_patience": 5}
    best = whole_network.fine_tune(parts, _inputs(8, 0, True), _inputs(8, 1, False), 8, config, str(tmp_path),
                                   (cached.high, cached.variety, np.ones(8, np.float32)), augment=augment)
    assert 0.0 <= best <= 1.0 and seen
    after = [w.numpy() for layer in norms for w in layer.weights]
    for old, new in zip(before["norm"], after):
        np.testing.assert_array_equal(old, new)  # BatchNormalization frozen: no scale, offset or statistics move
    stem_moved = np.abs(convs[0].weights[0].numpy() - before["stem"]).mean()
    top_moved = np.abs(convs[-1].weights[0].numpy() - before["top"]).mean()
    assert stem_moved > 0 and top_moved > 0  # the stem learns too, not only the top
    assert not parts.trunk.trainable  # frozen again: the quick stages' state


@pytest.mark.slow  # trains the whole network
def test_whole_network_fine_tuning_whose_features_make_a_worse_head_is_dropped(tmp_path):
    keras.utils.set_random_seed(0)
    parts = model_lib.build_transfer_model(SIZE, 2, 2, transform.COLOUR_FEATURE_SIZE)
    train, val = _cached(parts, 8, 0), _cached(parts, 8, 1)
    recached = []

    def recache():  # the features as the (ruined) network now gives them
        recached.append(True)
        return _cached(parts, 8, 0), _cached(parts, 8, 1), _cached(parts, 8, 1)

    # An absurd learning rate ruins the network: the frozen model after stage 1 must come back.
    whole = transfer.WholeNetwork(_inputs(8, 0, True), _inputs(8, 1, False), lambda x: x, recache)
    config = {**contract.TRAINER_DEFAULTS, "epochs": 20, "fine_tune_epochs": 2, "batch_size": 4,
              "whole_network_learning_rate": 1e3}
    frozen_trunk = [w.copy() for w in parts.trunk.get_weights()]
    fitted = transfer.fit(parts, train, val, 8, config, np.ones(2, np.float32), str(tmp_path), whole_network=whole)
    assert fitted.history["fine_tuning_kept"] == [False] and recached
    for old, new in zip(frozen_trunk, parts.trunk.get_weights()):
        np.testing.assert_array_equal(old, new)
    stage1_accuracy = fitted.history[transfer.MONITOR][19]  # stage 1's last epoch: the head that stands
    assert transfer.head_accuracy(parts.head, val) == stage1_accuracy
