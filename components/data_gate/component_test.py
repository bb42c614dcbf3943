"""DataGate: goes by ExampleValidator's own per-split verdict; stops on anomalies naming split and feature."""
from pathlib import Path

import pytest
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx.types import artifact_utils, standard_artifacts

from components.data_gate import component


def _anomalies(tmp_path, per_split, blessed=None):
    """An anomalies artifact as ExampleValidator leaves it, read back from ML Metadata.

    `blessed`: the verdict to record ({split: 0 or 1}); by default ExampleValidator's own rule (1: no anomaly).
    """
    artifact = standard_artifacts.ExampleAnomalies()
    artifact.uri = str(tmp_path)
    artifact.split_names = artifact_utils.encode_split_names(list(per_split))
    for split, anomalies in per_split.items():
        folder = Path(tmp_path, f"Split-{split}")
        folder.mkdir(parents=True)
        (folder / "SchemaDiff.pb").write_bytes(anomalies.SerializeToString())
    if blessed is None:
        blessed = {split: int(not (a.anomaly_info or a.HasField("dataset_anomaly_info"))) for split, a in per_split.items()}
    if blessed != "none":
        artifact.set_json_value_custom_property(component.BLESSED_KEY, blessed)
    # Through MLMD's proto and back, as the next component gets it (the numbers come back as floats).
    return artifact_utils.deserialize_artifact(artifact.artifact_type, artifact.mlmd_artifact)


def _unknown_label():
    anomalies = anomalies_pb2.Anomalies()
    info = anomalies.anomaly_info["label"]
    info.short_description = "Unexpected string values"
    info.description = "Examples contain values missing from the schema: Moonstone (~2%)."
    return anomalies


def _run(artifact, **kwargs):
    # The decorated component's body, as TFX's test_call() runs it.
    component.DataGate.test_call(anomalies=artifact, **kwargs)


def _log_lines(monkeypatch, level):
    """What the component logs at `level`, line by line. absl's lines reach pytest's caplog or not depending on
    which earlier test set up absl's handler: the call itself is recorded instead."""
    from absl import logging

    said = []
    monkeypatch.setattr(logging, level, lambda message, *args: said.append(message % args if args else message))
    return said


def test_the_verdict_is_read_from_example_validators_blessed_property(tmp_path):
    artifact = _anomalies(tmp_path, {"train": anomalies_pb2.Anomalies(), "eval": _unknown_label()})
    assert artifact.get_json_value_custom_property("blessed") == {"train": 1.0, "eval": 0.0}
    assert component.verdict(artifact) == {"train": True, "eval": False}


def test_clean_data_passes(tmp_path, monkeypatch):
    artifact = _anomalies(tmp_path, {"train": anomalies_pb2.Anomalies(), "eval": anomalies_pb2.Anomalies()})
    assert component.problems(artifact) == []
    said = _log_lines(monkeypatch, "info")
    _run(artifact)  # no exception
    assert any("blessed every split" in line for line in said)


def test_unknown_label_stops_the_run_with_a_readable_message(tmp_path):
    artifact = _anomalies(tmp_path, {"train": anomalies_pb2.Anomalies(), "eval": _unknown_label()})
    with pytest.raises(component.DataAnomaliesError) as info:
        _run(artifact)
    assert "split 'eval', feature 'label': Unexpected string values" in str(info.value)
    assert "Moonstone" in str(info.value)
    assert "split 'train'" not in str(info.value)


def test_the_gate_follows_the_recorded_verdict_not_the_files(tmp_path):
    # ExampleValidator blessed the split: its anomalies file is not consulted (nor needed).
    blessed = _anomalies(tmp_path / "a", {"eval": _unknown_label()}, blessed={"eval": 1})
    _run(blessed)
    # Not blessed, yet no anomaly detail to show: it still stops, and says which split.
    rejected = _anomalies(tmp_path / "b", {"eval": anomalies_pb2.Anomalies()}, blessed={"eval": 0})
    with pytest.raises(component.DataAnomaliesError, match="split 'eval': not blessed by ExampleValidator"):
        _run(rejected)


def test_no_recorded_verdict_stops_the_run(tmp_path):
    artifact = _anomalies(tmp_path, {"eval": anomalies_pb2.Anomalies()}, blessed="none")
    with pytest.raises(component.DataAnomaliesError, match="recorded no 'blessed' verdict"):
        _run(artifact)


def test_gate_can_be_set_to_warn_only(tmp_path, monkeypatch):
    said = _log_lines(monkeypatch, "warning")
    _run(_anomalies(tmp_path, {"eval": _unknown_label()}), fail_on_anomalies=0)  # no exception
    assert any("DataGate (not enforced)" in line and "Moonstone" in line for line in said)
