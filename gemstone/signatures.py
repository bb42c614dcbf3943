"""A SavedModel's signatures: their names, read from saved_model.pb without TensorFlow, and `call`.

The command line refuses a model that lacks a signature it needs (`gemstone
explain` on a model exported before the `explain` signature) before TensorFlow
loads, which takes 5-15 s: so it reads the protocol buffer's wire format itself,
only as deep as the signature map's keys. SavedModel: field 2, the MetaGraphDefs;
MetaGraphDef: field 5, map<string, SignatureDef> (entries: key 1, value 2).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Iterator, List, Sequence, Tuple

from gemstone import contract

_META_GRAPHS, _SIGNATURE_DEF, _MAP_KEY = 2, 5, 1


class NotASavedModel(ValueError):
    """saved_model.pb is not a protocol buffer (truncated, or another file)."""


def _varint(data: bytes, position: int) -> Tuple[int, int]:
    value, shift = 0, 0
    while True:
        if position >= len(data) or shift > 63:
            raise NotASavedModel("a varint runs past the end")
        byte = data[position]
        value |= (byte & 0x7F) << shift
        position, shift = position + 1, shift + 7
        if not byte & 0x80:
            return value, position


def fields(data: bytes) -> Iterator[Tuple[int, object]]:
    """(field number, value) of one message: an int for varints and fixed widths, bytes when length-delimited."""
    position = 0
    while position < len(data):
        key, position = _varint(data, position)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            value, position = _varint(data, position)
        elif wire_type in (1, 5):
            width = 8 if wire_type == 1 else 4
            value, position = int.from_bytes(data[position:position + width], "little"), position + width
        elif wire_type == 2:
            length, position = _varint(data, position)
            value, position = data[position:position + length], position + length
        else:
            raise NotASavedModel(f"wire type {wire_type} (groups are not used by SavedModel)")
        if position > len(data):
            raise NotASavedModel("a field runs past the end")
        yield number, value


def names(version_dir) -> List[str]:
    """The signature names of the SavedModel in `version_dir` (every meta graph's), sorted."""
    data = (Path(version_dir) / contract.SAVED_MODEL_FILE).read_bytes()
    found = set()
    for number, meta_graph in fields(data):
        if number != _META_GRAPHS or not isinstance(meta_graph, bytes):
            continue
        for field, entry in fields(meta_graph):
            if field == _SIGNATURE_DEF and isinstance(entry, bytes):
                found.update(value.decode("utf-8") for key, value in fields(entry)
                             if key == _MAP_KEY and isinstance(value, bytes))
    return sorted(found)


def call(model, signature: str, photos: Sequence[bytes]) -> Dict[str, Any]:
    """A signature of a loaded SavedModel on encoded photos: its outputs as numpy arrays (the way serving,
    batch inference, `gemstone explain` and the dashboard all call the model)."""
    import tensorflow as tf

    outputs = model.signatures[signature](**{contract.SERVING_INPUT: tf.constant(list(photos))})
    return {name: value.numpy() for name, value in outputs.items()}
