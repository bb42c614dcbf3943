"""gemstone.torch_state_dict: files written here as torch.save wrote them before 1.6 (no torch needed)."""
import collections
import pickle
import struct
import sys
import types
import zipfile

import numpy as np
import pytest

from gemstone import torch_state_dict


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
    state = torch_state_dict.read(path)
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
        torch_state_dict.read(path)
    zipped = tmp_path / "new.pth"
    with zipfile.ZipFile(zipped, "w") as archive:  # torch >= 1.6 writes a zip
        archive.writestr("archive/data.pkl", b"")
    with pytest.raises(ValueError, match="not a legacy torch file"):
        torch_state_dict.read(zipped)
