"""Signature names read from saved_model.pb without TensorFlow, as TensorFlow reads them."""
import pytest

from gemstone import contract, signatures


def _field(number, payload: bytes) -> bytes:
    """A length-delimited field (lengths under 128 bytes: one-byte varints)."""
    assert len(payload) < 128
    return bytes([number << 3 | 2, len(payload)]) + payload


def test_reads_the_signature_map_keys(tmp_path):
    entry = lambda name: _field(5, _field(1, name.encode()) + _field(2, b"\x1a\x00"))  # noqa: E731
    meta_graph = _field(1, b"\x0a\x03tag") + entry("serving_default") + entry("explain")
    (tmp_path / "saved_model.pb").write_bytes(b"\x08\x01" + _field(2, meta_graph))
    assert signatures.names(tmp_path) == ["explain", "serving_default"]


def test_garbage_is_not_a_saved_model(tmp_path):
    (tmp_path / "saved_model.pb").write_bytes(b"\x12\xff\xff\xff")  # a length past the end
    with pytest.raises(signatures.NotASavedModel):
        signatures.names(tmp_path)


def test_agrees_with_tensorflow_on_the_contract_model(contract_model):
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel.FromString((contract_model / "1" / "saved_model.pb").read_bytes())
    expected = sorted({name for graph in proto.meta_graphs for name in graph.signature_def})
    assert signatures.names(contract_model / "1") == expected
    assert {contract.SERVING_SIGNATURE, contract.EXPLAIN_SIGNATURE} <= set(expected)
