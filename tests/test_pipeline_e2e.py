"""End to end: the real pipeline, through the real tfx CLI, on a tiny generated dataset.

Runs `tfx pipeline create` and `tfx run create --engine local` (LocalDagRunner)
as `make demo` does, checks every component's artifacts, classifies a JPEG
with the pushed model through `serving_default`. One more run checks what only
the real Evaluator can: a model worse than the blessed one (TFMA's comparison
with the baseline the resolver found) and under the floor is not pushed, and the
run says why. What a rejection does after that (no push, the dashboard's and the
model card's reasons, the robustness gate) is tested on small artifacts in
tests/test_gates.py; that a gate's setting leaves the nodes before it cached, in
pipeline/dag_test.py. A last run, through `gemstone run-pipeline` as `make demo` runs it, changes
nothing: up to the Trainer it comes from the cache; the Evaluator does not compare the model with
itself, nothing is pushed, and the terminal says so in a screenful.
"""
import json
import re
from pathlib import Path

import pytest

from tests.tfx_helpers import E2E_PIPELINE, tfx_cli as _tfx
from gemstone import contract, demo_data, evaluation_results, paths
from gemstone.apps import metadata

# Each test here reads the artifacts of a whole pipeline run (the `demo_pipeline` fixture), and some run it again.
pytestmark = pytest.mark.slow

PIPELINE_NAME = E2E_PIPELINE
COMPONENTS = ["ImageExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator", "DataGate", "Transform",
              "Trainer", "Evaluator", "Pusher"]


def _executions(home):
    """(component, MLMD state) of each execution, oldest first."""
    store = metadata.open_store(PIPELINE_NAME, str(home))
    return [(e.component, e.state) for e in metadata.executions(store)]


# The outputs the tests below read: (component, output key).
OUTPUTS = [("ImageExampleGen", "examples"), ("StatisticsGen", "statistics"), ("ImportSchemaGen", "schema"),
           ("ExampleValidator", "anomalies"), ("Transform", "transform_graph"), ("Evaluator", "evaluation"),
           ("Evaluator", "blessing"), ("Robustness", "report"), ("SliceReport", "dashboard")]


@pytest.fixture(scope="module")
def pipeline_run(demo_pipeline):
    """(home, env, executions, {(component, key): output folder}) of the first run, read from ML Metadata
    before any test runs the pipeline again: what a test reads does not depend on the tests before it."""
    home, env, _ = demo_pipeline
    store = metadata.open_store(PIPELINE_NAME, str(home))
    outputs = {(c, k): Path(metadata.latest_output_uri(store, c, k)) for c, k in OUTPUTS}
    return home, env, _executions(home), outputs


def _newest_output(home, component, key) -> Path:
    """An output of the run a test just made."""
    return Path(metadata.latest_output_uri(metadata.open_store(PIPELINE_NAME, str(home)), component, key))


def test_every_component_ran(pipeline_run):
    _, _, executions, _ = pipeline_run
    states = dict(executions)
    for component in COMPONENTS:
        assert states.get(component) == "COMPLETE", executions


def test_example_gen_wrote_three_splits_and_a_report(pipeline_run):
    home, _, _, first = pipeline_run
    examples = first[("ImageExampleGen", "examples")]
    for split in ("train", "eval", "test"):
        assert list((examples / f"Split-{split}").glob("*.gz")), split
    report = json.loads((examples / contract.INGESTION_REPORT_FILE).read_text())
    assert report["counts"]["files"] == 96
    assert report["counts"]["accepted"] == 96
    assert {f["split"] for f in report["files"]} == {"train", "eval", "test"}


def test_analysis_artifacts_exist(pipeline_run):
    home, _, _, first = pipeline_run
    assert list(first[("StatisticsGen", "statistics")].glob("Split-*/FeatureStats.pb"))
    assert (first[("ImportSchemaGen", "schema")] / "schema.pbtxt").exists()
    assert list(first[("ExampleValidator", "anomalies")].glob("Split-*/SchemaDiff.pb"))
    graph = first[("Transform", "transform_graph")]
    assert (graph / "transform_fn" / "saved_model.pb").exists()
    assert (graph / "transform_fn" / "assets" / "label").exists()
    assert (first[("Evaluator", "blessing")] / "BLESSED").exists()


def test_pushed_model_classifies_a_raw_jpeg(pipeline_run):
    import tensorflow as tf

    home, _, _, first = pipeline_run
    version = paths.latest_version_dir(paths.serving_dir(PIPELINE_NAME, str(home)))
    assert version is not None and version.name.isdigit()
    model = tf.saved_model.load(str(version))
    jpeg = next((Path(home) / "data" / "images" / "Ruby").glob("*.jpg")).read_bytes()
    out = model.signatures["serving_default"](images=tf.constant([jpeg, jpeg]))
    classes = [c.decode() for c in out["classes"].numpy()[0]]
    assert sorted(classes) == sorted(demo_data.VARIETIES)
    probabilities = out["probabilities"].numpy()
    assert probabilities.shape == (2, len(demo_data.VARIETIES))
    assert abs(probabilities.sum(axis=1) - 1).max() < 1e-4
    assert out["label"].numpy()[0].decode() in classes
    assert out["top_k_labels"].shape == (2, 3)
    assert out["family"].numpy()[0].decode() in set(demo_data.VARIETIES.values())
    assert out["needs_review"].dtype == tf.bool


def test_every_prediction_names_the_family_of_its_variety(pipeline_run):
    """One answer, not two: never "Amethyst, Corundum", whatever the auxiliary family head thinks."""
    import numpy as np
    import tensorflow as tf

    home, _, _, first = pipeline_run
    version = paths.latest_version_dir(paths.serving_dir(PIPELINE_NAME, str(home)))
    model = tf.saved_model.load(str(version))
    photos = sorted((Path(home) / "data" / "images").glob("*/*.jpg"))
    out = model.signatures["serving_default"](images=tf.constant([p.read_bytes() for p in photos]))
    labels = [label.decode() for label in out["label"].numpy()]
    families = [family.decode() for family in out["family"].numpy()]
    assert [demo_data.VARIETIES[label] for label in labels] == families
    # Its confidence is the summed probability of that family's varieties, at least the variety's own.
    classes = [c.decode() for c in out["classes"].numpy()[0]]
    probabilities = out["probabilities"].numpy()
    for row, family, confidence in zip(probabilities, families, out["family_confidence"].numpy()):
        expected = sum(p for c, p in zip(classes, row) if demo_data.VARIETIES[c] == family)
        assert abs(confidence - expected) < 1e-5
    assert np.all(out["family_confidence"].numpy() >= out["confidence"].numpy() - 1e-6)


def test_runs_and_lineage_come_from_metadata(pipeline_run, capsys, monkeypatch):
    from gemstone.apps import cli

    home, _, _, first = pipeline_run
    monkeypatch.setenv("GEMSTONE_HOME", str(home))
    assert cli.main(["runs", "--pipeline-name", PIPELINE_NAME]) == 0
    assert "finished" in capsys.readouterr().out
    version = paths.latest_version_dir(paths.serving_dir(PIPELINE_NAME, str(home)))
    assert cli.main(["lineage", str(version)]) == 0
    lineage = json.loads(capsys.readouterr().out)
    for kind in ("Examples", "Schema", "TransformGraph", "Model", "ModelEvaluation"):
        assert kind in lineage["artifacts"], lineage
    assert lineage["trainer_settings"]["epochs"] == 2
    assert "## Explanations" in (version / contract.MODEL_CARD_FILE).read_text()
    assert (version / contract.EDGE_DIR / "model_float16.tflite").exists()


def test_edge_models_are_kept_only_when_they_agree_with_the_saved_model(pipeline_run):
    home, _, _, first = pipeline_run
    version = paths.latest_version_dir(paths.serving_dir(PIPELINE_NAME, str(home)))
    report = json.loads((version / contract.EDGE_DIR / contract.EDGE_REPORT_FILE).read_text())
    assert (version / contract.EDGE_DIR / "model_float16.tflite").stat().st_size == report["float16"]["bytes"]
    int8 = report["int8"]
    assert (version / contract.EDGE_DIR / "model_int8.tflite").exists() == int8["kept"]
    if "agreement" in int8:  # absent only when the conversion failed (then said in why_not_kept)
        assert list(int8["agreement"]) == ["dynamic_range"]  # the default kind, and no other tried
    if int8["kept"]:
        assert int8["top1_agreement"] >= report["min_agreement"]
        assert int8["quantisation"] == "dynamic_range"
    else:
        assert "not kept" in int8["why_not_kept"] or "conversion failed" in int8["why_not_kept"]
    # float16 that disagrees (on the variety or on `known`) is backed by a float32 model that agrees
    float16 = report["float16"]
    least = min(float16["top1_agreement"], float16.get("known_agreement", 1.0))
    assert (version / contract.EDGE_DIR / "model_float32.tflite").exists() == (least < report["min_agreement"])
    if "float32" in report:
        assert report["float32"]["top1_agreement"] >= report["min_agreement"]


def test_robustness_measures_every_corruption_and_agrees_with_tfma(pipeline_run):
    from components.robustness import corruptions

    home, _, _, first = pipeline_run
    robustness = json.loads((first[("Robustness", "report")] / contract.ROBUSTNESS_REPORT_FILE).read_text())
    assert [c["name"] for c in robustness["corruptions"]] == list(corruptions.CORRUPTIONS)
    test_photos = json.loads((first[("ImageExampleGen", "examples")] /
                              contract.INGESTION_REPORT_FILE).read_text())["splits"]["examples_per_split"]["test"]
    assert robustness["examples"] == test_photos
    # Two independent paths over the same split and model: TFMA (from_examples) and serving_default on raw bytes.
    tfma_overall = evaluation_results.load_metrics(str(first[("Evaluator", "evaluation")]))["overall"]
    assert abs(tfma_overall["candidate"][contract.ACCURACY] - robustness["clean"]["accuracy"]) < 1e-6
    lines = (first[("Robustness", "report")] / contract.ROBUSTNESS_PREDICTIONS_FILE).read_text().splitlines()
    assert len(lines) == test_photos


def test_each_run_writes_the_slice_dashboard(pipeline_run, capsys, monkeypatch):
    from gemstone.apps import cli

    home, _, _, first = pipeline_run
    page = first[("SliceReport", "dashboard")] / contract.DASHBOARD_FILE
    assert page.exists() and "Per class" in page.read_text()
    monkeypatch.setenv("GEMSTONE_HOME", str(home))
    cli.main(["where", "--pipeline-name", PIPELINE_NAME])
    # `where` names the newest run's page (earlier tests may have run the pipeline again).
    newest = _newest_output(home, "SliceReport", "dashboard") / contract.DASHBOARD_FILE
    assert f"dashboard:    {newest}" in capsys.readouterr().out


# The run below changes the pipeline's settings through the environment of `tfx run create`: for the local
# engine it runs local_runner.py anew, which reads them (`tfx pipeline update` would only check the file again).

def test_a_model_worse_than_the_blessed_one_and_under_the_floor_is_not_pushed(pipeline_run):
    """An untrained model (0 epochs) against the blessed one, with no tolerance, and under a floor no model
    can reach: the Evaluator names both failed checks, and nothing is pushed."""

    home, env, _, _ = pipeline_run
    serving = paths.serving_dir(PIPELINE_NAME, str(home))
    before = sorted(p.name for p in serving.iterdir())
    worse = dict(env, GEMSTONE_EPOCHS="0", GEMSTONE_FINE_TUNE_EPOCHS="0", GEMSTONE_MIN_ACCURACY="1.01",
                 GEMSTONE_MAX_ACCURACY_DROP="0.0")
    start = len(_executions(home))
    result = _tfx(worse, "run", "create", "--engine", "local", "--pipeline_name", PIPELINE_NAME)  # exit code 0
    states = dict(_executions(home)[start:])
    for component in ("ImageExampleGen", "StatisticsGen", "Transform"):  # the data did not change: from the cache
        assert states.get(component) == "CACHED", states
    assert states.get("Trainer") == states.get("Pusher") == "COMPLETE", states
    evaluation = evaluation_results.load_metrics(str(_newest_output(home, "Evaluator", "evaluation")))["overall"]
    assert evaluation["candidate"][contract.ACCURACY] < evaluation["baseline"][contract.ACCURACY], evaluation
    assert (_newest_output(home, "Evaluator", "blessing") / "NOT_BLESSED").exists()
    assert sorted(p.name for p in serving.iterdir()) == before
    output = result.stdout + result.stderr
    assert "not blessed, so it is not pushed" in output
    assert "sparse_categorical_accuracy (candidate, change against the baseline)" in output
    assert "sparse_categorical_accuracy (candidate) = " in output


def test_a_second_run_with_nothing_changed_pushes_nothing_and_does_not_compare_the_model_with_itself(pipeline_run):
    """`gemstone run-pipeline` with the first run's settings: the Trainer's model comes from the cache and is the
    latest blessed one (the run above was not blessed). The Evaluator judges it alone, nothing is pushed, and the
    terminal says so in a screenful while the whole log goes to its file."""
    import subprocess
    import sys

    home, env, _, first = pipeline_run
    serving = paths.serving_dir(PIPELINE_NAME, str(home))
    before = sorted(p.name for p in serving.iterdir())
    serving_version = paths.latest_version_dir(serving).name
    start = len(_executions(home))
    result = subprocess.run([sys.executable, "-m", "gemstone.apps.cli", "run-pipeline", "--pipeline-name",
                             PIPELINE_NAME], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr

    states = dict(_executions(home)[start:])
    assert states["Trainer"] == "CACHED" and states["Evaluator"] == states["Pusher"] == "COMPLETE", states
    assert sorted(p.name for p in serving.iterdir()) == before  # no new version
    store = metadata.open_store(PIPELINE_NAME, str(home))
    evaluation = evaluation_results.load_metrics(metadata.latest_output_uri(store, "Evaluator", "evaluation"))
    assert evaluation["overall"]["baseline"] == {}  # evaluated alone, not against itself
    blessing = metadata.latest_output(store, "Evaluator", "blessing")
    assert blessing.get_int_custom_property(contract.CANDIDATE_IS_LATEST_BLESSED_PROPERTY) == 1
    assert not blessing.has_custom_property("baseline_model_id")
    pushed = metadata.latest_output(store, "Pusher", "pushed_model")
    assert pushed.get_int_custom_property("pushed") == 0
    assert pushed.get_string_custom_property(contract.ALREADY_SERVING_VERSION_PROPERTY) == serving_version

    lines = result.stdout.splitlines()
    assert len(lines) <= 40, result.stdout
    assert f"Not pushed: already serving version {serving_version}" in lines
    assert any(line.startswith("  not compared with itself") for line in lines)
    assert re.search(r"^  Trainer +cached$", result.stdout, re.M) and re.search(r"^  Evaluator +ran in ", result.stdout,
                                                                                  re.M)
    log = Path(next(line for line in lines if line.startswith("  whole log:")).split(":", 1)[1].strip())
    assert log.is_file() and "Component Pusher is finished." in log.read_text()
