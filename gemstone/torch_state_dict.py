"""PyTorch state dicts in torch's legacy (pre-1.6) format, read with the standard library and numpy.

The EfficientNet-Lite2 weights this project uses (`gemstone backbone fetch`) come as
such a file. A restricted unpickler builds arrays and refuses any other object, so
reading a file never runs its code; PyTorch is not needed.
"""
from __future__ import annotations

import collections
import pickle
import struct
from typing import Dict, NamedTuple

import numpy as np

_STORAGES = {"FloatStorage": np.float32, "HalfStorage": np.float16, "DoubleStorage": np.float64,
             "LongStorage": np.int64, "IntStorage": np.int32, "ByteStorage": np.uint8}


class _Storage(NamedTuple):
    dtype: np.dtype


def _rebuild_tensor_v2(storage_key, offset, size, stride, *unused):
    return ("tensor", storage_key, int(offset), tuple(size), tuple(stride))


class _StateDictUnpickler(pickle.Unpickler):
    """Builds (storage key, offset, shape, strides) records; any other global is refused."""

    def __init__(self, file, storages: dict):
        super().__init__(file)
        self.storages = storages

    def find_class(self, module, name):
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if module == "torch" and name in _STORAGES:
            return _Storage(np.dtype(_STORAGES[name]))
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        raise pickle.UnpicklingError(f"a state dict has no {module}.{name}: refusing to load it")

    def persistent_load(self, pid):
        # ("storage", storage type, key, location, number of elements)
        _, storage, key, _, _ = pid[:5]
        self.storages[key] = storage.dtype
        return key


def read(path) -> "collections.OrderedDict[str, np.ndarray]":
    """name -> array from a state dict saved by torch.save in the legacy format (torch < 1.6).

    Layout: pickles of the magic number, protocol version and system info; the
    state dict's pickle (tensors point at storages by key); the list of keys;
    then each storage as int64 element count + raw little-endian data.
    """
    with open(path, "rb") as f:
        try:
            magic = pickle.load(f)
        except Exception:
            magic = None
        if not isinstance(magic, int):
            raise ValueError(f"{path} is not a legacy torch file (a zip-format file needs torch itself)")
        pickle.load(f), pickle.load(f)  # protocol version, system info
        storages: Dict[str, np.dtype] = {}
        records = _StateDictUnpickler(f, storages).load()
        data = {}
        for key in pickle.load(f):
            (count,) = struct.unpack("<q", f.read(8))
            dtype = storages[key]
            raw = f.read(count * dtype.itemsize)
            if len(raw) != count * dtype.itemsize:
                raise ValueError(f"{path} ends inside storage {key}")
            data[key] = np.frombuffer(raw, dtype.newbyteorder("<"))
    out = collections.OrderedDict()
    for name, record in records.items():
        if not (isinstance(record, tuple) and record[:1] == ("tensor",)):
            continue
        _, key, offset, shape, strides = record
        flat = data[key]
        out[name] = np.lib.stride_tricks.as_strided(flat[offset:], shape, [s * flat.itemsize for s in strides]).copy()
    return out
