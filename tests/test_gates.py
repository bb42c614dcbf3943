"""The pipeline's gates on small real artifacts (no pipeline run, no training).

The end: runs the executors in order, as the orchestrator would: Robustness (on
a tiny SavedModel), the pipeline's Pusher (TFX's: components/pusher), SliceReport and ModelCard, each output
passed on through its ML Metadata proto. A model the robustness gate rejects
must not be pushed, no step may raise, and the dashboard and the model card
must exist and say why.

The start: ImageExampleGen, TFX's StatisticsGen and ExampleValidator, and
DataGate, on photos with a variety the curated schema does not know.
"""
import io
import json
from pathlib import Path

import pytest
from tfx.types import artifact_utils, standard_artifacts

from components import artifacts
from components.model_card import component as model_card
from components.robustness import executor as robustness
from components.slice_report import component as slice_report
from gemstone import contract
from tests.tfx_helpers import write_examples

LABELS = ["Emerald", "Ruby"]
PHOTOS = [("Ruby", (200, 30, 40)), ("Ruby", (180, 20, 60)), ("Emerald", (20, 160, 80)), ("Emerald", (30, 140, 90))]


def _run(component, **kwargs):
    """A decorated component's body, as TFX's test_call() runs it."""
    component.test_call(**kwargs)


def _artifact(kind, uri: Path, **int_properties):
    uri.mkdir(parents=True, exist_ok=True)
    artifact = kind()
    artifact.uri = str(uri)
    for key, value in int_properties.items():
        artifact.set_int_custom_property(key, value)
    return artifact


def _published(artifact):
    """The artifact as the next component gets it: through its MLMD proto and back."""
    return artifact_utils.deserialize_artifact(artifact.artifact_type, artifact.mlmd_artifact)


def _jpeg(colour):
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (48, 48), colour).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def _examples(uri: Path):
    write_examples(uri, "test", [[
        {contract.IMAGE_KEY: _jpeg(colour), contract.LABEL_KEY: label.encode(),
         contract.FAMILY_KEY: b"Beryl" if label == "Emerald" else b"Corundum",
         "source_path": f"images/{label}/{i}.jpg".encode()} for i, (label, colour) in enumerate(PHOTOS)]])
    return _artifact(standard_artifacts.Examples, uri)


def _model(uri: Path, unfamiliar: bool = False):
    """A SavedModel with the pipeline's serving signature that knows the clean photos only.

    Every corruption changes a photo's bytes, so every corrupted photo is answered wrongly:
    clean accuracy 1.0, each corruption 0.0: whatever the gate's threshold above 0, it fails.
    `unfamiliar`: it also says of every photo that it is not a variety it knows (the open-set outputs).
    """
    import tensorflow as tf

    known = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
        tf.constant([_jpeg(colour) for _, colour in PHOTOS]), tf.constant([label for label, _ in PHOTOS])),
        default_value="Emerald-or-Ruby?")

    class Serving(tf.Module):
        def __init__(self):
            super().__init__()
            self.known = known

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="images")])
        def serve(self, images):
            label = self.known.lookup(images)
            n = tf.shape(images)[0]
            # Every output of the export contract (gemstone.contract.PREDICTION_OUTPUTS).
            family = tf.where(label == "Ruby", "Corundum", "Beryl")
            classes = tf.tile(tf.constant([LABELS]), [n, 1])
            probabilities = tf.cast(tf.equal(classes, label[:, tf.newaxis]), tf.float32)
            return {"label": label, "confidence": tf.fill([n], 0.9), "needs_review": tf.fill([n], unfamiliar),
                    "top_k_labels": tf.stack([label, label], axis=1), "top_k_scores": tf.fill([n, 2], 0.45),
                    "family": family, "family_confidence": tf.fill([n], 0.9), "probabilities": probabilities,
                    "classes": classes, "known": tf.fill([n], not unfamiliar),
                    "novelty": tf.tile(tf.constant([[0.2, 1.5 if unfamiliar else 0.1]]), [n, 1]),
                    "review_reason": tf.fill([n], contract.UNFAMILIAR_VARIETY if unfamiliar else "")}

    module = Serving()
    serving = uri / "Format-Serving"
    tf.saved_model.save(module, str(serving), signatures={"serving_default": module.serve})
    (serving / "assets").mkdir(exist_ok=True)
    (serving / "assets" / contract.LABEL_VOCAB).write_text("\n".join(LABELS) + "\n")
    return _artifact(standard_artifacts.Model, uri)


def _evaluation(uri: Path, accuracy: float, min_accuracy: float):
    """What TFMA writes, as far as the dashboard and the card read it: metrics and the validation result."""
    import tensorflow as tf
    from tensorflow_model_analysis.proto import config_pb2, metrics_for_slice_pb2, validation_result_pb2

    uri.mkdir(parents=True)
    metrics = metrics_for_slice_pb2.MetricsForSlice()
    for name, value in (("sparse_categorical_accuracy", accuracy), ("example_count", len(PHOTOS))):
        entry = metrics.metric_keys_and_values.add()
        entry.key.name = name
        entry.value.double_value.value = value
    validation = validation_result_pb2.ValidationResult(validation_ok=accuracy >= min_accuracy)
    if accuracy < min_accuracy:
        failure = validation.metric_validations_per_slice.add().failures.add()
        failure.metric_key.name = "sparse_categorical_accuracy"
        failure.metric_value.double_value.value = accuracy
        failure.metric_threshold.CopyFrom(config_pb2.MetricThreshold(
            value_threshold=config_pb2.GenericValueThreshold(lower_bound={"value": min_accuracy})))
    for name, record in (("metrics.tfrecord", metrics), ("validations.tfrecord", validation)):
        with tf.io.TFRecordWriter(str(uri / name)) as writer:
            writer.write(record.SerializeToString())
    return _artifact(standard_artifacts.ModelEvaluation, uri)


def _end_of_pipeline(tmp_path, evaluator_blessed: bool, min_relative_accuracy: float, blessed_property=None,
                     unfamiliar: bool = False):
    """Robustness -> Pusher -> SliceReport, ModelCard; returns what each wrote.

    `blessed_property`: replaces Robustness' blessing with one that holds only this `blessed` custom property.
    `unfamiliar`: the model flags every photo as an unfamiliar variety.
    """
    from google.protobuf import json_format
    from tfx.proto import pusher_pb2

    from components.pusher import executor as pusher

    model, examples = _model(tmp_path / "model", unfamiliar), _examples(tmp_path / "examples")
    evaluation = _evaluation(tmp_path / "evaluation", accuracy=1.0, min_accuracy=0.5 if evaluator_blessed else 1.01)
    evaluator_blessing = _published(_artifact(standard_artifacts.ModelBlessing, tmp_path / "evaluator_blessing",
                                              blessed=int(evaluator_blessed), current_model_id=model.id))

    report = _artifact(artifacts.RobustnessReport, tmp_path / "robustness")
    blessing = _artifact(standard_artifacts.ModelBlessing, tmp_path / "blessing")
    # As the orchestrator runs it: its executor, on Beam (the DirectRunner), inputs and outputs by key.
    context = robustness.Executor.Context(tmp_dir=str(tmp_path / "tmp"), unique_id="robustness")
    robustness.Executor(context).Do(
        {"model": [model], "examples": [examples], "model_blessing": [evaluator_blessing]},
        {"report": [report], "blessing": [blessing]},
        {"split": "test", "max_examples": 100, "min_relative_accuracy": min_relative_accuracy,
         "max_flagged_known": 0.1})
    blessing, report = _published(blessing), _published(report)
    if blessed_property is not None:
        blessing = _published(_artifact(standard_artifacts.ModelBlessing, tmp_path / "bare_blessing",
                                        blessed=blessed_property))

    serving = tmp_path / "serving"
    pushed = _artifact(standard_artifacts.PushedModel, tmp_path / "pushed")
    destination = pusher_pb2.PushDestination(filesystem=pusher_pb2.PushDestination.Filesystem(
        base_directory=str(serving)))
    pusher.Executor().Do({"model": [model], "model_blessing": [blessing]}, {"pushed_model": [pushed]},
                         {"push_destination": json_format.MessageToJson(destination)})
    pushed = _published(pushed)

    dashboard = _artifact(artifacts.SliceDashboard, tmp_path / "dashboard")
    _run(slice_report.SliceReport, evaluation=evaluation, blessing=blessing, model=model, examples=examples,
         robustness=report, pushed_model=pushed, dashboard=dashboard, pipeline_name="gates-test", split="test")
    card = _artifact(artifacts.ModelCardDocument, tmp_path / "card")
    _run(model_card.ModelCard, model=model, evaluation=evaluation, examples=examples, blessing=blessing,
         robustness=report, pushed_model=pushed, card=card)
    return {"blessing": blessing, "pushed": pushed, "serving": serving,
            "robustness": json.loads((Path(report.uri) / robustness.REPORT_FILE).read_text()),
            "page": (Path(dashboard.uri) / slice_report.REPORT_FILE).read_text(),
            "card": json.loads((Path(card.uri) / "model_card.json").read_text()),
            "card_md": (Path(card.uri) / "model_card.md").read_text()}


def test_a_model_the_robustness_gate_rejects_is_not_pushed_and_the_dashboard_and_card_say_why(tmp_path):
    out = _end_of_pipeline(tmp_path, evaluator_blessed=True, min_relative_accuracy=0.8)  # and nothing raised

    assert out["robustness"]["clean"]["accuracy"] == 1.0
    failures = out["robustness"]["gate"]["failures"]
    assert len(failures) == len(out["robustness"]["corruptions"]) > 0
    blessing = out["blessing"]
    assert blessing.get_int_custom_property("blessed") == 0
    assert blessing.get_int_custom_property("evaluator_blessed") == 1
    assert blessing.get_int_custom_property("robustness_passed") == 0
    assert (Path(blessing.uri) / "NOT_BLESSED").exists() and not (Path(blessing.uri) / "BLESSED").exists()
    assert "Evaluator" not in blessing.get_string_custom_property("blessing_message")
    assert failures[0] in blessing.get_string_custom_property("blessing_message")

    assert out["pushed"].get_int_custom_property("pushed") == 0
    assert not out["serving"].exists()

    assert "Not blessed: the model will not be pushed" in out["page"]
    assert "<b>Not pushed</b>" in out["page"]
    assert f"Robustness gate failed: {failures[0]}" in out["page"]
    assert "Evaluator threshold failed" not in out["page"]

    verdict = out["card"]["verdict"]
    assert verdict == {"blessed": False, "pushed": False, "pushed_to": None, "already_serving": None,
                       "reasons": [f"Robustness gate failed: {f}" for f in failures]}
    assert "Not blessed, so not pushed" in out["card_md"] and failures[-1] in out["card_md"]


def test_a_model_that_flags_too_many_known_photos_is_not_pushed_and_the_dashboard_and_card_say_why(tmp_path):
    out = _end_of_pipeline(tmp_path, evaluator_blessed=True, min_relative_accuracy=0.0, unfamiliar=True)

    open_set = out["robustness"]["open_set"]
    assert open_set["flagged"] == 1.0 and open_set["flagged_by_reason"][contract.UNFAMILIAR_VARIETY] == 1.0
    assert open_set["non_gem_photos"]["photos"] >= 20  # the packages' photos, each answered
    [failure] = out["robustness"]["gate"]["failures"]
    assert failure.startswith("open set: 100.0% of the 4 known test photos") and "over the 10% allowed" in failure
    assert out["blessing"].get_int_custom_property("blessed") == 0
    assert out["pushed"].get_int_custom_property("pushed") == 0 and not out["serving"].exists()
    assert failure in out["page"] and failure in out["card_md"]


def test_with_few_known_photos_flagged_the_open_set_gate_passes(tmp_path):
    out = _end_of_pipeline(tmp_path, evaluator_blessed=True, min_relative_accuracy=0.0)
    assert out["robustness"]["open_set"]["flagged"] == 0.0 and out["robustness"]["gate"]["failures"] == []
    assert out["blessing"].get_int_custom_property("blessed") == 1


def test_an_evaluator_rejection_is_kept_and_both_reasons_are_given(tmp_path):
    out = _end_of_pipeline(tmp_path, evaluator_blessed=False, min_relative_accuracy=0.8)

    blessing = out["blessing"]
    assert blessing.get_int_custom_property("blessed") == 0
    assert blessing.get_int_custom_property("evaluator_blessed") == 0
    assert blessing.get_string_custom_property("blessing_message").startswith("Evaluator:")
    assert out["pushed"].get_int_custom_property("pushed") == 0 and not out["serving"].exists()
    reasons = out["card"]["verdict"]["reasons"]
    assert reasons[0].startswith("Evaluator threshold failed: overall: sparse_categorical_accuracy")
    assert "1.01" in reasons[0] and any(r.startswith("Robustness gate failed: ") for r in reasons[1:])
    assert "Evaluator threshold failed: overall: sparse_categorical_accuracy" in out["page"]
    assert "Robustness gate failed" in out["page"]


def test_with_the_gate_off_a_model_the_evaluator_blessed_is_pushed_with_its_card(tmp_path):
    out = _end_of_pipeline(tmp_path, evaluator_blessed=True, min_relative_accuracy=0.0)

    blessing = out["blessing"]
    assert blessing.get_int_custom_property("blessed") == 1
    assert blessing.get_string_custom_property("blessing_message") == ""
    assert (Path(blessing.uri) / "BLESSED").exists()
    pushed = out["pushed"]
    assert pushed.get_int_custom_property("pushed") == 1
    version = Path(pushed.get_string_custom_property("pushed_destination"))
    assert version.parent == out["serving"] and (version / "saved_model.pb").exists()
    assert json.loads((version / "model_card.json").read_text())["verdict"]["blessed"] is True
    assert out["card"]["verdict"] == {"blessed": True, "pushed": True, "pushed_to": str(version),
                                      "already_serving": None, "reasons": []}
    assert "Blessed: the model met the accuracy floor" in out["page"]
    # The page names the version the Pusher wrote, not the Trainer's artifact.
    assert f"Pushed as version <b>{version.name}</b> (<code>{version}</code>)" in out["page"]


@pytest.mark.parametrize("evaluator, failures, blessed", [(1, [], 1), (1, ["jpeg"], 0), (0, [], 0), (0, ["jpeg"], 0)])
def test_blessed_only_when_the_evaluator_blessed_and_the_gate_passed(tmp_path, evaluator, failures, blessed):
    model = _artifact(standard_artifacts.Model, tmp_path / "model")
    evaluator_blessing = _artifact(standard_artifacts.ModelBlessing, tmp_path / "evaluator", blessed=evaluator,
                                   baseline_model_id=7)
    evaluator_blessing.set_string_custom_property("baseline_model", "/models/7")
    blessing = _artifact(standard_artifacts.ModelBlessing, tmp_path / "blessing")
    assert robustness.bless(blessing, model, _published(evaluator_blessing), failures) == bool(blessed)
    blessing = _published(blessing)
    assert blessing.get_int_custom_property("blessed") == blessed
    # As the Evaluator writes it: the latest-blessed-model resolvers find the model by these.
    assert blessing.get_string_custom_property("current_model") == model.uri
    assert blessing.has_custom_property("current_model_id")
    assert blessing.get_int_custom_property("baseline_model_id") == 7
    assert blessing.get_string_custom_property("baseline_model") == "/models/7"


@pytest.mark.parametrize("evaluator_blessed, blessed", [(True, 0), (False, 1)])
def test_the_push_the_dashboard_and_the_card_follow_the_blessed_property(tmp_path, evaluator_blessed, blessed):
    """Not a BLESSED file (this blessing has none), nor the evaluation: the property the Pusher reads."""
    out = _end_of_pipeline(tmp_path, evaluator_blessed=evaluator_blessed, min_relative_accuracy=0.0,
                           blessed_property=blessed)
    assert out["pushed"].get_int_custom_property("pushed") == blessed
    assert out["card"]["verdict"]["blessed"] is bool(blessed)
    assert ("Not blessed: the model will not be pushed" in out["page"]) is not bool(blessed)


def test_the_dashboard_shows_the_photos_behind_the_worst_confusion(tmp_path):
    """One clean Ruby photo taken for an Emerald: the page's worst confusion shows its thumbnail and confidence,
    read from the Robustness component's prediction records."""
    import tensorflow as tf
    from tensorflow_model_analysis.proto import metrics_for_slice_pb2

    from gemstone import report as dashboard

    model, examples = _model(tmp_path / "model"), _examples(tmp_path / "examples")
    evaluation = _evaluation(tmp_path / "evaluation", accuracy=0.75, min_accuracy=0.5)
    plots = metrics_for_slice_pb2.PlotsForSlice()
    matrix = plots.plot_keys_and_values.add().value.multi_class_confusion_matrix_at_thresholds.matrices.add()
    for actual, predicted, count in ((0, 0, 2), (1, 1, 1), (1, 0, 1)):  # ids in LABELS: Emerald 0, Ruby 1
        matrix.entries.add(actual_class_id=actual, predicted_class_id=predicted, num_weighted_examples=count)
    with tf.io.TFRecordWriter(str(Path(evaluation.uri) / "plots.tfrecord")) as writer:
        writer.write(plots.SerializeToString())
    robustness_dir = tmp_path / "robustness"
    robustness_dir.mkdir()
    (robustness_dir / contract.ROBUSTNESS_REPORT_FILE).write_text(json.dumps(
        {"split": "test", "examples": 4, "clean": {"accuracy": 0.75}, "corruptions": []}))
    taken = {"label": "Emerald", "confidence": 0.61, "top_k": [], "family": "Beryl", "family_confidence": 0.61,
             "needs_review": False}
    (robustness_dir / contract.ROBUSTNESS_PREDICTIONS_FILE).write_text(
        json.dumps({"source_path": "images/Ruby/0.jpg", "label": "Ruby", "prediction": taken}) + "\n")
    sources = dashboard.EvaluationSources(evaluation=evaluation.uri, blessing=str(tmp_path / "blessing"),
                                          model=model.uri, examples=examples.uri, robustness=str(robustness_dir),
                                          blessed=True)

    data = dashboard.collect(sources, "gates-test")

    [confusion] = data["worst_confusions"]
    assert (confusion["label"], confusion["predicted"], confusion["photos"]) == ("Ruby", "Emerald", 1)
    [thumbnail] = confusion["thumbnails"]
    assert thumbnail["path"] == "images/Ruby/0.jpg" and thumbnail["confidence"] == 0.61
    assert thumbnail["jpeg_base64"]
    # This model has no explain signature: the photo is shown without where the model looked.
    assert thumbnail["overlay_base64"] is None and not data["explained"]


@pytest.mark.slow  # Beam runs ImageExampleGen and StatisticsGen (about 20 s)
def test_a_variety_the_schema_does_not_know_stops_the_run_at_datagate_saying_which(tmp_path):
    """The start of the pipeline: ImageExampleGen, TFX's StatisticsGen and ExampleValidator against the curated
    demo schema, then DataGate. An unknown variety must stop the run there, naming the split, feature and value."""
    import shutil

    from tfx.components.example_validator import executor as example_validator
    from tfx.components.statistics_gen import executor as statistics_gen

    from components.data_gate import component as data_gate
    from gemstone import demo_data
    from gemstone.schema import SCHEMA_DIR
    from tests.tfx_helpers import run_image_example_gen

    data = Path(demo_data.make_demo_data(tmp_path / "data", per_class=3, seed=2, size=64).out_dir)
    stranger = data / "images" / "moonstone.jpg"
    shutil.copy(next((data / "images" / "Ruby").glob("*.jpg")), stranger)
    with open(data / "manifest.csv", "a") as f:
        f.write("images/moonstone.jpg,Moonstone,Feldspar,moon-1\n")

    beam_args = ["--direct_running_mode=in_memory"]
    examples = run_image_example_gen(data, "manifest.csv", tmp_path, beam_args=beam_args)
    statistics = _artifact(standard_artifacts.ExampleStatistics, tmp_path / "statistics")
    statistics_gen.Executor(statistics_gen.Executor.Context(beam_pipeline_args=beam_args,
                                                            tmp_dir=str(tmp_path / "tmp"))).Do(
        {"examples": [_published(examples)]}, {"statistics": [statistics]}, {"exclude_splits": "[]"})
    schema = _artifact(standard_artifacts.Schema, tmp_path / "schema")
    shutil.copy(SCHEMA_DIR / "gemstone-demo" / "schema.pbtxt", schema.uri)
    anomalies = _artifact(standard_artifacts.ExampleAnomalies, tmp_path / "anomalies")
    example_validator.Executor().Do({"statistics": [_published(statistics)], "schema": [schema]},
                                    {"anomalies": [anomalies]}, {"exclude_splits": "[]"})

    with pytest.raises(data_gate.DataAnomaliesError) as stopped:
        _run(data_gate.DataGate, anomalies=_published(anomalies))
    ingestion = json.loads((Path(examples.uri) / contract.INGESTION_REPORT_FILE).read_text())
    moonstone_split = next(f["split"] for f in ingestion["files"] if f["path"].endswith("moonstone.jpg"))
    message = str(stopped.value)
    assert f"split '{moonstone_split}', feature 'label': Unexpected string values" in message, message
    assert "Moonstone" in message
