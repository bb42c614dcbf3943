"""The Robustness executor on Beam: the same answers as sending each photo through the model one by one, and the
robustness gate. (Its place in the DAG: pipeline/dag_test.py; its gates and blessing: tests/test_gates.py.)"""
import json
from pathlib import Path

import pytest
from tfx.types import standard_artifacts

from components import artifacts
from components.robustness import corruptions, executor
from gemstone import contract, ingestion, non_gem_photos, paths
from tests.tfx_helpers import write_examples


def _report(clean, **accuracies):
    return {"clean": {"accuracy": clean}, "corruptions": [
        {"name": name, "description": name, "accuracy": a, "relative_accuracy": a / clean}
        for name, a in accuracies.items()]}


def test_gate_names_each_corruption_under_the_required_share():
    report = _report(0.9, blur=0.85, jpeg_q10=0.45, darker=0.75)
    failures = executor.gate_failures(report, min_relative_accuracy=0.8)
    assert len(failures) == 1 and failures[0].startswith("jpeg_q10") and "50%" in failures[0]
    assert executor.gate_failures(report, min_relative_accuracy=0.0) == []  # gate off
    assert len(executor.gate_failures(report, min_relative_accuracy=0.95)) == 3


def _artifact(kind, uri: Path):
    artifact = kind()
    artifact.uri = str(uri)
    uri.mkdir(parents=True, exist_ok=True)
    return artifact


def _one_by_one(signature, photos):
    """The compact record of each photo, each sent alone: what a client gets."""
    import tensorflow as tf

    return [contract.compact(contract.prediction_records(signature(**{contract.SERVING_INPUT: tf.constant([p])}))[0])
            for p in photos]


def _same(beam, alone):
    """The same answer: label and flags exactly, scores up to float noise (the batches differ)."""
    assert [(a["label"], a["needs_review"], a.get("review_reason")) for a in beam] == \
        [(a["label"], a["needs_review"], a.get("review_reason")) for a in alone]
    assert [a["confidence"] for a in beam] == pytest.approx([a["confidence"] for a in alone], abs=1e-4)


@pytest.mark.parametrize("beam_args", [
    None,  # the DirectRunner in memory
    # Worker processes, as the pipeline runs Beam from 4 cores up: each loads the model (slow on 2 cores).
    pytest.param(["--direct_running_mode=multi_processing", "--direct_num_workers=2",
                  f"--setup_file={paths.REPO_ROOT / 'setup.py'}"], marks=pytest.mark.slow)])
def test_on_beam_the_first_photos_of_the_split_get_the_answers_each_gets_alone(contract_model, demo_photos, tmp_path,
                                                                                beam_args):
    import tensorflow as tf

    rows = [{contract.IMAGE_KEY: p.read_bytes(), contract.LABEL_KEY: p.parent.name.encode(),
             "source_path": str(p.relative_to(demo_photos)).encode()}
            for p in sorted((demo_photos / "images").rglob("*.jpg"))[:7]]
    examples = _artifact(standard_artifacts.Examples, tmp_path / "examples")
    write_examples(examples.uri, "test", [rows[:3], rows[3:]])  # two files: the first 5 photos span them
    model = _artifact(standard_artifacts.Model, tmp_path / "model")
    (Path(model.uri) / "Format-Serving").symlink_to(paths.latest_version_dir(contract_model))
    evaluator_blessing = _artifact(standard_artifacts.ModelBlessing, tmp_path / "evaluator_blessing")
    evaluator_blessing.set_int_custom_property("blessed", 1)
    report = _artifact(artifacts.RobustnessReport, tmp_path / "report")
    blessing = _artifact(standard_artifacts.ModelBlessing, tmp_path / "blessing")

    context = executor.Executor.Context(beam_pipeline_args=beam_args, tmp_dir=str(tmp_path / "tmp"), unique_id="1")
    executor.Executor(context).Do(
        {"model": [model], "examples": [examples], "model_blessing": [evaluator_blessing]},
        {"report": [report], "blessing": [blessing]},
        {"split": "test", "max_examples": 5, "min_relative_accuracy": 0.0, "max_flagged_known": 1.0})

    found = json.loads((Path(report.uri) / executor.REPORT_FILE).read_text())
    per_photo = [json.loads(line) for line in (Path(report.uri) / executor.PREDICTIONS_FILE).read_text().splitlines()]
    first = ingestion.read_examples(examples.uri, "test", executor.KEYS, limit=5)
    assert [p["source_path"] for p in per_photo] == [e["source_path"].decode() for e in first]
    assert found["examples"] == 5 and list(Path(tmp_path / "tmp").rglob("*.jsonl")) == []  # staging cleared

    signature = tf.saved_model.load(str(paths.latest_version_dir(contract_model))).signatures["serving_default"]
    photos = [e[contract.IMAGE_KEY] for e in first]
    labels = [e[contract.LABEL_KEY].decode() for e in first]
    clean = _one_by_one(signature, photos)
    _same([p["prediction"] for p in per_photo], clean)
    assert found["clean"]["accuracy"] == sum(p["label"] == l for p, l in zip(clean, labels)) / 5
    decoded = [corruptions.decode(p) for p in photos]
    for (name, _, corrupted), measured in zip(corruptions.corrupt_each(decoded, executor.SEED), found["corruptions"]):
        alone = _one_by_one(signature, corrupted)
        assert measured["name"] == name
        assert measured["accuracy"] == sum(p["label"] == l for p, l in zip(alone, labels)) / 5, name
        assert measured["agreement"] == sum(a["label"] == b["label"] for a, b in zip(alone, clean)) / 5, name
    non_gems = non_gem_photos.photos()
    answers = found["open_set"]["non_gem_photos"]["answers"]
    assert [a["name"] for a in answers] == [photo.name for photo in non_gems]
    _same(answers, _one_by_one(signature, [photo.data for photo in non_gems]))
    assert blessing.get_int_custom_property("blessed") == 1
