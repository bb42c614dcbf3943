"""modules.efficientnet_lite: the layout of the network, and every array of a state dict (in a legacy
torch file the test writes) landing in its layer."""
import collections

import numpy as np
import pytest

from gemstone import torch_state_dict
from gemstone.torch_state_dict_test import contiguous, write_legacy_torch
from modules import efficientnet_lite


def _torch_layout(layer_name, keras_array):
    """The inverse of efficientnet_lite.to_keras."""
    if layer_name.endswith("dwconv"):
        return keras_array.transpose(2, 3, 0, 1)
    if keras_array.ndim == 4:
        return keras_array.transpose(3, 2, 0, 1)
    if keras_array.ndim == 2:
        return keras_array.T
    return keras_array


def random_state_dict(model, seed=0):
    """A state dict in the package's naming and PyTorch's layout, random numbers, for `model`'s shapes."""
    rng = np.random.default_rng(seed)
    names = efficientnet_lite.torch_names()
    state = collections.OrderedDict()
    for layer in model.layers:
        for weight, name in zip(layer.weights, names.get(layer.name, [])):
            value = rng.uniform(0.5, 1.5, tuple(weight.shape)).astype(np.float32)
            state[name] = _torch_layout(layer.name, value)
    return state


def test_every_weight_lands_where_it_belongs(tmp_path):
    model = efficientnet_lite.build(32, include_top=True, classes=10)
    state = random_state_dict(model)
    path = tmp_path / "lite2.pth"
    write_legacy_torch(path, {name: contiguous(str(i), value) for i, (name, value) in enumerate(state.items())})
    read = torch_state_dict.read(path)
    assert efficientnet_lite.assign_state_dict(model, read) == len(state) == 322
    names = efficientnet_lite.torch_names()
    for layer_name in ("stem_conv", "block4_dwconv", "block20_project_bn", "top_conv", "predictions"):
        layer = model.get_layer(layer_name)
        for weight, name in zip(layer.get_weights(), names[layer_name]):
            np.testing.assert_array_equal(weight, efficientnet_lite.to_keras(layer_name, state[name]))
    # The depthwise kernel is not a plain conv's: (c, 1, h, w) -> (h, w, c, 1).
    assert model.get_layer("block4_dwconv").get_weights()[0].shape == (5, 5, 144, 1)

    del read["_blocks.7._bn1.running_var"]
    with pytest.raises(ValueError, match="block7_bn: _blocks.7._bn1.running_var is not in the state dict"):
        efficientnet_lite.assign_state_dict(model, read)


def test_network_matches_the_reference_layout():
    blocks = efficientnet_lite.blocks()
    assert len(blocks) == 21 and [b.index for b in blocks if b.stride == 2] == [1, 4, 7, 15]
    assert sum(b.residual for b in blocks) == 14
    model = efficientnet_lite.build(224)
    assert model.output_shape == (None, 7, 7, 1280)
    assert model.get_layer("block14").output_shape == (None, 14, 14, 120)
    assert model.count_params() == 4_869_168  # the package's 386 tensors minus the classifier
