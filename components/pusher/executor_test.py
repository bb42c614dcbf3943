"""The pipeline's Pusher on small folders: a blessed model the newest version already holds is not pushed again,
and the PushedModel says which version serves it; any other blessed model is pushed as TFX's Pusher does."""
from pathlib import Path

import pytest
from google.protobuf import json_format
from tfx.components.pusher import executor as tfx_pusher
from tfx.proto import pusher_pb2
from tfx.types import standard_artifacts

from components.pusher import executor
from gemstone import contract


def _artifact(kind, uri: Path):
    uri.mkdir(parents=True, exist_ok=True)
    artifact = kind()
    artifact.uri = str(uri)
    return artifact


def _model(uri: Path, weights: bytes):
    """A Model artifact whose serving folder holds a (fake) SavedModel: its files are what the Pusher compares."""
    serving = uri / "Format-Serving"
    (serving / "variables").mkdir(parents=True)
    (serving / "saved_model.pb").write_bytes(b"graph")
    (serving / "variables" / "variables.data-00000-of-00001").write_bytes(weights)
    return _artifact(standard_artifacts.Model, uri)


def _blessing(uri: Path, blessed: int):
    blessing = _artifact(standard_artifacts.ModelBlessing, uri)
    blessing.set_int_custom_property(contract.BLESSED_PROPERTY, blessed)
    return blessing


@pytest.fixture
def push(tmp_path, monkeypatch):
    """push(model, blessed=1) -> the PushedModel artifact; each push a second after the one before (TFX names a
    version after the time)."""
    serving = tmp_path / "serving"
    destination = json_format.MessageToJson(pusher_pb2.PushDestination(
        filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=str(serving))))
    clock = iter(range(1_700_000_000, 1_700_000_100))
    monkeypatch.setattr(tfx_pusher.time, "time", lambda: next(clock))
    count = iter(range(100))

    def run(model, blessed=1):
        number = next(count)
        pushed = _artifact(standard_artifacts.PushedModel, tmp_path / "pushed" / str(number))
        executor.Executor().Do({"model": [model], "model_blessing": [_blessing(tmp_path / f"b{number}", blessed)]},
                               {"pushed_model": [pushed]}, {"push_destination": destination})
        return pushed

    run.serving = serving
    return run


def _versions(serving: Path):
    return sorted(p.name for p in serving.iterdir())


def test_the_model_the_newest_version_holds_is_not_pushed_again(push, tmp_path):
    model = _model(tmp_path / "model", b"weights-a")
    first = push(model)
    assert first.get_int_custom_property("pushed") == 1
    [version] = _versions(push.serving)
    (push.serving / version / contract.MODEL_CARD_FILE).write_text("# card")  # the ModelCard adds its card

    again = push(model)
    assert again.get_int_custom_property("pushed") == 0
    assert again.get_string_custom_property(contract.ALREADY_SERVING_VERSION_PROPERTY) == version
    assert again.get_string_custom_property(contract.ALREADY_SERVING_DESTINATION_PROPERTY) == \
        str(push.serving / version)
    assert _versions(push.serving) == [version]
    assert not any(Path(again.uri).iterdir())  # nor archived in the artifact


def test_another_model_and_a_rollback_to_an_older_version_are_pushed(push, tmp_path):
    a, b = _model(tmp_path / "a", b"weights-a"), _model(tmp_path / "b", b"weights-b")
    push(a)
    pushed_b = push(b)  # same files, other bytes
    assert pushed_b.get_int_custom_property("pushed") == 1
    assert not pushed_b.has_custom_property(contract.ALREADY_SERVING_VERSION_PROPERTY)
    rollback = push(a)  # an older version holds it, the newest does not: serving it again is a push
    assert rollback.get_int_custom_property("pushed") == 1
    assert len(_versions(push.serving)) == 3


def test_a_model_not_blessed_is_not_pushed_and_not_said_to_be_serving(push, tmp_path):
    model = _model(tmp_path / "model", b"weights")
    push(model)
    rejected = push(model, blessed=0)
    assert rejected.get_int_custom_property("pushed") == 0
    assert not rejected.has_custom_property(contract.ALREADY_SERVING_VERSION_PROPERTY)


def test_the_newest_version_is_the_highest_complete_one(tmp_path):
    for name, complete in (("9", True), ("10", True), ("11", False), ("tmp", True)):
        (tmp_path / name).mkdir()
        if complete:
            (tmp_path / name / "saved_model.pb").write_bytes(b"")
    assert executor.newest_version(str(tmp_path)) == str(tmp_path / "10")  # 10 > 9 as numbers; 11 is incomplete
    assert executor.newest_version(str(tmp_path / "none")) is None


def test_a_version_holds_a_model_only_with_every_file_byte_for_byte(tmp_path):
    model = Path(_model(tmp_path / "model", b"weights").uri) / "Format-Serving"
    version = tmp_path / "version"
    (version / "variables").mkdir(parents=True)
    (version / "saved_model.pb").write_bytes(b"graph")
    assert not executor.holds_model(str(version), str(model))  # a file missing
    (version / "variables" / "variables.data-00000-of-00001").write_bytes(b"weightz")
    assert not executor.holds_model(str(version), str(model))  # same size, other bytes
    (version / "variables" / "variables.data-00000-of-00001").write_bytes(b"weights")
    (version / "model_card.md").write_text("more is fine")
    assert executor.holds_model(str(version), str(model))
