"""Reading ML Metadata as TFX leaves it, including the events a cached or baseline-equal execution records."""
import json

from ml_metadata.proto import metadata_store_pb2

from gemstone.apps import metadata
from tests import mlmd_store
from tests.mlmd_store import CACHED, COMPLETE

PIPELINE = "gem.88"  # a dot in the pipeline's name too: the node id is what follows it


def _store(tmp_path):
    return mlmd_store.store(tmp_path / "metadata.db")


_artifact = mlmd_store.artifact


def _execution(store, component, state, inputs=(), outputs=(), component_class=None):
    return mlmd_store.execution(store, PIPELINE, component, state, inputs, outputs, component_class)


def test_latest_evaluation_of_a_candidate_that_is_the_baseline_and_robustness_verdict(tmp_path):
    """A run whose Trainer came from the cache: the candidate is the blessed baseline, and ML Metadata keeps its
    one input event under `baseline_model`. The verdict is that of Robustness' newest blessing of that model."""
    store = _store(tmp_path)
    examples = _artifact(store, "Examples", "/examples/1")
    model = _artifact(store, "Model", "/model/8")
    evaluation = _artifact(store, "ModelEvaluation", "/evaluation/22")
    evaluator_blessing = _artifact(store, "ModelBlessing", "/evaluator_blessing/22", blessed=1)
    _execution(store, "Evaluator", COMPLETE, inputs=[("model", model), ("examples", examples)],
               outputs=[("evaluation", evaluation), ("blessing", evaluator_blessing)])
    _execution(store, "Robustness", COMPLETE, inputs=[("model", model)],
               outputs=[("report", _artifact(store, "RobustnessReport", "/report/23")),
                        ("blessing", _artifact(store, "ModelBlessing", "/blessing/23", blessed=1))])
    # The next run: Evaluator cached on the same model (now also the baseline), Robustness re-run stricter.
    _execution(store, "Evaluator", CACHED, inputs=[("baseline_model", model), ("examples", examples)],
               outputs=[("evaluation", evaluation), ("blessing", evaluator_blessing)])
    _execution(store, "Robustness", COMPLETE, inputs=[("model", model)],
               outputs=[("report", _artifact(store, "RobustnessReport", "/report/62")),
                        ("blessing", _artifact(store, "ModelBlessing", "/blessing/62", blessed=0))])

    sources = metadata.latest_evaluation(store)

    assert (sources.evaluation, sources.model, sources.examples) == ("/evaluation/22", "/model/8", "/examples/1")
    assert (sources.robustness, sources.blessing, sources.blessed) == ("/report/62", "/blessing/62", False)


def _pushed_model(store, uri, destination=None):
    """A PushedModel as TFX's Pusher records it: `pushed` 1 and the version folder when it pushed, else `pushed` 0."""
    artifact_id = _artifact(store, "PushedModel", uri, pushed=int(destination is not None))
    if destination is not None:
        [record] = store.get_artifacts_by_id([artifact_id])
        record.custom_properties["pushed_destination"].string_value = destination
        store.put_artifacts([record])
    return artifact_id


def _evaluated_and_pushed(store, model_uri, blessed, destination):
    """Evaluator, Robustness and Pusher of one run on the model at `model_uri`; the Pusher pushed to `destination`."""
    model = _artifact(store, "Model", model_uri)
    blessing = _artifact(store, "ModelBlessing", model_uri + "/blessing", blessed=blessed)
    _execution(store, "Evaluator", COMPLETE, inputs=[("model", model), ("examples", _artifact(store, "Examples", "/e"))],
               outputs=[("evaluation", _artifact(store, "ModelEvaluation", model_uri + "/evaluation")),
                        ("blessing", _artifact(store, "ModelBlessing", model_uri + "/evaluator_blessing"))])
    _execution(store, "Robustness", COMPLETE, inputs=[("model", model)],
               outputs=[("report", _artifact(store, "RobustnessReport", model_uri + "/report")),
                        ("blessing", blessing)])
    _execution(store, "Pusher", COMPLETE, inputs=[("model", model), ("model_blessing", blessing)],
               outputs=[("pushed_model", _pushed_model(store, model_uri + "/pushed", destination))])


def test_the_latest_evaluation_names_the_version_its_model_was_pushed_to_by_the_same_runs_pusher(tmp_path):
    store = _store(tmp_path)
    _evaluated_and_pushed(store, "/model/1", blessed=1, destination="/serving/gem/1700000001")
    assert metadata.latest_evaluation(store).pushed_to == "/serving/gem/1700000001"
    # The next run's model is rejected: its page says not pushed, not the version the run before pushed.
    _evaluated_and_pushed(store, "/model/2", blessed=0, destination=None)
    sources = metadata.latest_evaluation(store)
    assert (sources.model, sources.blessed, sources.pushed_to) == ("/model/2", False, None)


def test_a_run_stopped_before_the_pusher_has_pushed_nothing(tmp_path):
    store = _store(tmp_path)
    _evaluated_and_pushed(store, "/model/1", blessed=1, destination="/serving/gem/1700000001")
    model = _artifact(store, "Model", "/model/3")
    _execution(store, "Evaluator", COMPLETE, inputs=[("model", model), ("examples", _artifact(store, "Examples", "/e"))],
               outputs=[("evaluation", _artifact(store, "ModelEvaluation", "/evaluation/3")),
                        ("blessing", _artifact(store, "ModelBlessing", "/evaluator_blessing/3", blessed=1))])
    assert metadata.latest_evaluation(store).pushed_to is None


def test_latest_output_uri_skips_executions_that_recorded_no_such_output(tmp_path):
    store = _store(tmp_path)
    dashboard = _artifact(store, "SliceDashboard", "/dashboard/12")
    _execution(store, "SliceReport", COMPLETE, outputs=[("dashboard", dashboard)])
    _execution(store, "SliceReport", CACHED)  # no events of its own
    assert metadata.latest_output_uri(store, "SliceReport", "dashboard") == "/dashboard/12"
    assert metadata.latest_output_uri(store, "Pusher", "pushed_model") is None


def test_trainer_split_files_point_into_the_split_of_the_newest_trainers_examples(tmp_path):
    store = _store(tmp_path)
    type_id = store.put_artifact_type(metadata_store_pb2.ArtifactType(
        name="Examples", properties={"split_names": metadata_store_pb2.STRING}))
    for run in (1, 2):
        examples = metadata_store_pb2.Artifact(type_id=type_id, uri=f"/transform/transformed_examples/{run}")
        examples.properties["split_names"].string_value = '["train", "eval", "test"]'
        _execution(store, "Trainer", COMPLETE, inputs=[("examples", store.put_artifacts([examples])[0])])

    assert metadata.trainer_split_files(store, "test") == ["/transform/transformed_examples/2/Split-test/*"]
    assert metadata.trainer_split_files(store, "train") == ["/transform/transformed_examples/2/Split-train/*"]


def test_two_nodes_of_one_component_class_are_told_apart_by_their_node_id(tmp_path):
    """Two Evaluators (one the gate, one a report on another split): each node's newest output is its own."""
    store = _store(tmp_path)
    gate = _artifact(store, "ModelEvaluation", "/evaluation/gate")
    extra = _artifact(store, "ModelEvaluation", "/evaluation/extra")
    _execution(store, "Evaluator", COMPLETE, outputs=[("evaluation", gate)])
    _execution(store, "Evaluator.on_new_photos", COMPLETE, outputs=[("evaluation", extra)],
               component_class="Evaluator")
    assert metadata.latest_output_uri(store, "Evaluator", "evaluation") == "/evaluation/gate"
    assert metadata.latest_output_uri(store, "Evaluator.on_new_photos", "evaluation") == "/evaluation/extra"
    assert [e.component for e in metadata.executions(store)] == ["Evaluator", "Evaluator.on_new_photos"]


def test_the_node_contexts_are_named_as_tfx_names_them():
    from tfx.dsl.compiler import compiler_utils, constants

    assert (metadata.PIPELINE_CONTEXT, metadata.NODE_CONTEXT) == (constants.PIPELINE_CONTEXT_TYPE_NAME,
                                                                  constants.NODE_CONTEXT_TYPE_NAME)
    assert compiler_utils.node_context_name(PIPELINE, "Trainer") == f"{PIPELINE}.Trainer"


def test_the_resolver_type_is_named_as_tfx_names_it():
    from tfx.dsl.components.common import resolver

    assert metadata.RESOLVER_TYPE == f"{resolver.Resolver.__module__}.{resolver.Resolver.__name__}"


def _with_property(store, execution_id: int, key: str, value: str) -> None:
    """An exec property as TFX records it: a string custom property of the execution (JSON for a proto)."""
    [execution] = store.get_executions_by_id([execution_id])
    execution.custom_properties[key].string_value = value
    store.put_executions([execution])


def _second_run(tmp_path, store):
    """A run with nothing changed since the one that pushed version 1700000000: the Evaluator judged the model alone
    (it was the latest blessed one), the Pusher pushed nothing; its model card in `card`."""
    from tfx.types import standard_artifacts

    model = _artifact(store, "Model", "/model/8")
    evaluator_blessing = _artifact(store, "ModelBlessing", "/evaluator_blessing/22", blessed=1,
                                   candidate_is_latest_blessed=1)
    evaluator = _execution(store, "Evaluator", COMPLETE, inputs=[("model", model)],
                           outputs=[("blessing", evaluator_blessing)])
    _with_property(store, evaluator, "eval_config", json.dumps({"metrics_specs": [{"metrics": [
        {"class_name": "SparseCategoricalAccuracy", "per_slice_thresholds": [{"slicing_specs": [{}], "threshold": {
            "change_threshold": {"absolute": -0.05, "direction": "HIGHER_IS_BETTER"},
            "value_threshold": {"lower_bound": 0.5}}}]}]}]}))
    blessing = _artifact(store, "ModelBlessing", "/blessing/23", blessed=1)
    _execution(store, "Robustness", COMPLETE, inputs=[("model", model)], outputs=[("blessing", blessing)])
    pushed = standard_artifacts.PushedModel()
    pushed.uri = "/pushed/24"
    pushed.set_int_custom_property("pushed", 0)
    pushed.set_string_custom_property("already_serving_version", "1700000000")
    pushed.set_string_custom_property("already_serving_destination", "/serving/demo/1700000000")
    pusher = _execution(store, "Pusher", COMPLETE, outputs=[("pushed_model", mlmd_store.published(store, pushed))])
    _with_property(store, pusher, "push_destination", '{"filesystem": {"base_directory": "/serving/demo"}}')
    card = tmp_path / "card"
    card.mkdir()
    (card / "model_card.json").write_text(json.dumps({
        "verdict": {"blessed": True, "pushed": False, "reasons": []},
        "metrics": {"overall": {"sparse_categorical_accuracy": 0.75, "sparse_top_k_categorical_accuracy": 1.0,
                                "example_count": 4.0}}}))
    _execution(store, "ModelCard", COMPLETE, outputs=[("card", _artifact(store, "ModelCardDocument", str(card)))])
    return metadata.RunRecord("run-2", 0.0, metadata.executions(store))


def test_the_summary_of_a_run_that_found_its_model_already_serving(tmp_path):
    store = _store(tmp_path)
    summary = metadata.run_summary(store, _second_run(tmp_path, store))
    assert summary["blessed"] is True and summary["compared"] == "itself"
    assert (summary["accuracy_floor"], summary["max_accuracy_drop"]) == (0.5, 0.05)
    assert (summary["accuracy"], summary["top_k_accuracy"], summary["test_photos"]) == (0.75, 1.0, 4)
    assert summary["pushed_version"] is None and summary["already_serving_version"] == "1700000000"
    assert summary["serving_dir"] == "/serving/demo"
    assert summary["model_card"] == str(tmp_path / "card" / "model_card.md")
