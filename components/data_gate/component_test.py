"""DataGate: passes clean data, stops on anomalies with a message naming split and feature."""
from pathlib import Path

import pytest
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx.types import artifact_utils, standard_artifacts

from components.data_gate import component


def _anomalies(tmp_path, per_split):
    artifact = standard_artifacts.ExampleAnomalies()
    artifact.uri = str(tmp_path)
    artifact.split_names = artifact_utils.encode_split_names(list(per_split))
    for split, anomalies in per_split.items():
        folder = Path(tmp_path, f"Split-{split}")
        folder.mkdir()
        (folder / component.ANOMALIES_FILE).write_bytes(anomalies.SerializeToString())
    return artifact


def _unknown_label():
    anomalies = anomalies_pb2.Anomalies()
    info = anomalies.anomaly_info["label"]
    info.short_description = "Unexpected string values"
    info.description = "Examples contain values missing from the schema: Moonstone (~2%)."
    return anomalies


def _run(artifact, **kwargs):
    # The decorated component's body is its executor's function.
    component.DataGate.EXECUTOR_SPEC.executor_class._FUNCTION(anomalies=artifact, **kwargs)


def test_clean_data_passes(tmp_path):
    _run(_anomalies(tmp_path, {"train": anomalies_pb2.Anomalies(), "eval": anomalies_pb2.Anomalies()}))


def test_unknown_label_stops_the_run_with_a_readable_message(tmp_path):
    artifact = _anomalies(tmp_path, {"train": anomalies_pb2.Anomalies(), "eval": _unknown_label()})
    with pytest.raises(component.DataAnomaliesError) as info:
        _run(artifact)
    assert "split 'eval', feature 'label': Unexpected string values" in str(info.value)
    assert "Moonstone" in str(info.value)


def test_gate_can_be_set_to_warn_only(tmp_path):
    _run(_anomalies(tmp_path, {"eval": _unknown_label()}), fail_on_anomalies=0)
