"""Reading a pipeline's ML Metadata (MLMD) store: executions, their outcome and timing.

An execution belongs to a pipeline node (its id: "Trainer", "Evaluator", ...) through the
node context TFX attributes it to, not through its type (the component's class): two nodes
of one component class are two nodes here too.
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Optional

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from gemstone import contract, paths, verdict

if TYPE_CHECKING:
    from gemstone.report import EvaluationSources
# gemstone.report (TensorFlow, TFMA) is imported by the one function that needs it: `gemstone where`,
# `runs` and `lineage` read ML Metadata alone, in about a second.

_STATE_NAMES = {v: k for k, v in metadata_store_pb2.Execution.State.items()}
FINISHED = ("COMPLETE", "CACHED")  # a cached execution finished in an earlier run
# How TFX records a pipeline's nodes (tfx.dsl.compiler.constants and compiler_utils.node_context_name): a
# context of type "pipeline" named after the pipeline, and one of type "node" per node, named
# "<pipeline name>.<node id>", that each of the node's executions is attributed to. Spelled out here, not
# imported: `gemstone where`, `runs` and `lineage` read ML Metadata without loading TFX (metadata_test checks
# that TFX spells them so).
PIPELINE_CONTEXT = "pipeline"
NODE_CONTEXT = "node"
# The execution type of a Resolver node (tfx.dsl.components.common.resolver.Resolver): a node, not a component.
RESOLVER_TYPE = "tfx.dsl.components.common.resolver.Resolver"


@dataclasses.dataclass(frozen=True)
class ExecutionRecord:
    id: int
    component: str  # the TFX node id, e.g. "Trainer"
    state: str  # COMPLETE, CACHED, FAILED, RUNNING, ...
    started: float  # seconds since the epoch
    finished: float
    type_name: str = ""  # the execution type: the component's class, e.g. "tfx.components.trainer.component.Trainer"

    @property
    def seconds(self) -> float:
        return max(0.0, self.finished - self.started)


def open_store(pipeline_name: str, home: Optional[str] = None) -> metadata_store.MetadataStore:
    path = Path(paths.metadata_path(pipeline_name, home))
    if not path.exists():
        raise FileNotFoundError(f"no metadata for pipeline '{pipeline_name}' at {path}: has it run?")
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = str(path)
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return metadata_store.MetadataStore(config)


def node_ids(store: metadata_store.MetadataStore) -> Dict[int, str]:
    """{execution id: the id of the pipeline node it is an execution of}, from the node contexts."""
    pipelines = sorted((c.name for c in store.get_contexts_by_type(PIPELINE_CONTEXT)), key=len, reverse=True)
    found = {}
    for context in store.get_contexts_by_type(NODE_CONTEXT):
        pipeline = next((p for p in pipelines if context.name.startswith(p + ".")), None)
        if pipeline is not None:
            for execution in store.get_executions_by_context(context.id):
                found[execution.id] = context.name[len(pipeline) + 1:]
    return found


def executions(store: metadata_store.MetadataStore) -> List[ExecutionRecord]:
    """Every execution of a pipeline node, oldest first."""
    nodes = node_ids(store)
    types = {t.id: t.name for t in store.get_execution_types()}
    records = []
    for e in sorted(store.get_executions(), key=lambda e: e.id):
        if e.id in nodes:
            records.append(ExecutionRecord(
                id=e.id, component=nodes[e.id], state=_STATE_NAMES.get(e.last_known_state, "UNKNOWN"),
                started=e.create_time_since_epoch / 1000.0, finished=e.last_update_time_since_epoch / 1000.0,
                type_name=types.get(e.type_id, "")))
    return records


@dataclasses.dataclass
class RunRecord:
    run_id: str
    started: float
    executions: List[ExecutionRecord]

    @property
    def outcome(self) -> str:
        states = {e.component: e.state for e in self.executions}
        if any(state == "FAILED" for state in states.values()):
            failed = [c for c, state in states.items() if state == "FAILED"]
            return f"failed at {', '.join(failed)}"
        if states.get(contract.PUSHER_ID) in FINISHED:
            return "finished"
        return "running or stopped"


def runs(store: metadata_store.MetadataStore) -> List[RunRecord]:
    """Pipeline runs (MLMD's pipeline_run contexts), oldest first, with their executions."""
    by_id = {e.id: e for e in executions(store)}
    records = []
    for context in store.get_contexts_by_type("pipeline_run"):
        members = sorted((by_id[e.id] for e in store.get_executions_by_context(context.id) if e.id in by_id),
                         key=lambda e: e.id)
        started = min((e.started for e in members), default=context.create_time_since_epoch / 1000.0)
        records.append(RunRecord(context.name, started, members))
    return sorted(records, key=lambda r: r.started)


def run_summary(store: metadata_store.MetadataStore, run: RunRecord) -> dict:
    """What a run made of its model, and where it left it. Keys (None: not known, e.g. the node did not finish):

    - blessed: the verdict of the blessing the Pusher read (Robustness', else the Evaluator's); reasons: why
      not, one line each (the model card's); compared: "baseline" (with the latest blessed model), "itself" (the
      candidate was that model, so it was evaluated alone) or None (no model was blessed before);
      accuracy_floor, max_accuracy_drop: the Evaluator's thresholds
    - accuracy, top_k_accuracy, test_photos, baseline_accuracy: from the run's model card (model_card.json: the
      ModelCard's artifact, or beside the pushed version for runs made before it had one)
    - pushed_version, pushed_destination; pusher_cached: the push is an earlier run's (the Pusher's result came
      from the cache); already_serving_version, already_serving_destination: the version that already held the
      model, so nothing was pushed; serving_dir: the Pusher's base folder
    - dashboard, model_card: the files the run's SliceReport and ModelCard wrote
    """
    finished = {e.component: e for e in run.executions if e.state in FINISHED}
    outputs = {component: {key: artifact for (kind, key), artifact in _artifacts_by_key(store, e.id).items()
                           if kind == "OUTPUT"}
               for component, e in finished.items()
               if component in (contract.EVALUATOR_ID, contract.ROBUSTNESS_ID, contract.PUSHER_ID,
                                contract.MODEL_CARD_ID, contract.SLICE_REPORT_ID)}
    evaluator_blessing = outputs.get(contract.EVALUATOR_ID, {}).get("blessing")
    blessing = outputs.get(contract.ROBUSTNESS_ID, {}).get("blessing") or evaluator_blessing
    summary = {"blessed": _int_property(blessing, contract.BLESSED_PROPERTY), "compared": None,
               "accuracy_floor": None, "max_accuracy_drop": None}
    if summary["blessed"] is not None:
        summary["blessed"] = bool(summary["blessed"])
    if evaluator_blessing is not None and "baseline_model_id" in evaluator_blessing.custom_properties:
        summary["compared"] = "baseline"
    elif _int_property(evaluator_blessing, contract.CANDIDATE_IS_LATEST_BLESSED_PROPERTY):
        summary["compared"] = "itself"
    if contract.EVALUATOR_ID in finished:
        config = _execution_property(store, finished[contract.EVALUATOR_ID].id, "eval_config")
        thresholds = verdict.accuracy_thresholds(json.loads(config or "{}"))
        summary["accuracy_floor"], summary["max_accuracy_drop"] = thresholds
    summary.update(_push(store, finished.get(contract.PUSHER_ID), outputs.get(contract.PUSHER_ID, {})))
    card = outputs.get(contract.MODEL_CARD_ID, {}).get("card")
    folders = [card.uri] if card is not None else []
    folders += [summary["pushed_destination"]] if summary["pushed_destination"] else []
    summary.update(_card_figures(folders))
    dashboard = outputs.get(contract.SLICE_REPORT_ID, {}).get("dashboard")
    summary["dashboard"] = os.path.join(dashboard.uri, contract.DASHBOARD_FILE) if dashboard is not None else None
    return summary


def _int_property(artifact, key: str) -> Optional[int]:
    if artifact is None or key not in artifact.custom_properties:
        return None
    return artifact.custom_properties[key].int_value


def _string_property(artifact, key: str) -> Optional[str]:
    if artifact is None or key not in artifact.custom_properties:
        return None
    return artifact.custom_properties[key].string_value or None


def _execution_property(store: metadata_store.MetadataStore, execution_id: int, key: str) -> Optional[str]:
    """An exec property of an execution, as TFX records it (a custom property; JSON for a proto)."""
    [execution] = store.get_executions_by_id([execution_id])
    value = execution.custom_properties.get(key)
    return value.string_value if value is not None else None


def _push(store: metadata_store.MetadataStore, pusher: Optional[ExecutionRecord], outputs: dict) -> dict:
    """What the run's Pusher did (run_summary's push keys)."""
    pushed = outputs.get("pushed_model")
    found = {"pushed_version": None, "pushed_destination": None, "pusher_cached": pusher is not None and
             pusher.state == "CACHED", "already_serving_version": None, "already_serving_destination": None,
             "serving_dir": None}
    found["pushed_destination"] = verdict.pushed_to(pushed) if pushed is not None else None
    if found["pushed_destination"]:
        found["pushed_version"] = _string_property(pushed, "pushed_version")
    found["already_serving_version"] = _string_property(pushed, contract.ALREADY_SERVING_VERSION_PROPERTY)
    found["already_serving_destination"] = _string_property(pushed, contract.ALREADY_SERVING_DESTINATION_PROPERTY)
    if pusher is not None:
        destination = json.loads(_execution_property(store, pusher.id, "push_destination") or "{}")
        found["serving_dir"] = destination.get("filesystem", {}).get("base_directory")
    return found


def _card_figures(folders: List[str]) -> dict:
    """The test figures of the first model card found in `folders` (run_summary's metric keys)."""
    figures = {"accuracy": None, "top_k_accuracy": None, "test_photos": None, "baseline_accuracy": None,
               "reasons": [], "model_card": None}
    for folder in folders:
        path = Path(folder) / contract.MODEL_CARD_JSON_FILE
        if path.is_file():
            card = json.loads(path.read_text())
            metrics = card.get("metrics", {})
            overall = metrics.get("overall", {})
            photos = overall.get(contract.EXAMPLE_COUNT)
            figures.update(accuracy=overall.get(contract.ACCURACY), top_k_accuracy=overall.get(contract.TOP_K_ACCURACY),
                           test_photos=int(photos) if photos is not None else None,
                           baseline_accuracy=metrics.get("baseline", {}).get(contract.ACCURACY),
                           reasons=card.get("verdict", {}).get("reasons", []),
                           model_card=str(Path(folder) / contract.MODEL_CARD_FILE))
            break
    return figures


def lineage(store: metadata_store.MetadataStore, pushed_dir: str) -> dict:
    """What produced a pushed model: walks MLMD back from the PushedModel artifact at `pushed_dir`.

    Returns the URI of every upstream artifact by type (Examples, Schema,
    TransformGraph, Model, ModelEvaluation, ...) and the Trainer's settings.
    """
    pushed_dir = str(Path(pushed_dir).resolve())
    pushed = [a for a in store.get_artifacts_by_type("PushedModel")
              if "pushed_destination" in a.custom_properties and
              str(Path(a.custom_properties["pushed_destination"].string_value).resolve()) == pushed_dir]
    if not pushed:
        raise FileNotFoundError(f"no pushed model recorded at {pushed_dir} in this pipeline's metadata")
    artifact_types = {t.id: t.name for t in store.get_artifact_types()}
    nodes = node_ids(store)
    artifacts, settings, frontier, seen = {}, {}, [pushed[0].id], set()
    while frontier:  # breadth-first: artifact <- producing execution <- its input artifacts
        seen.update(frontier)
        producers = {e.execution_id for e in store.get_events_by_artifact_ids(frontier)
                     if e.type == metadata_store_pb2.Event.OUTPUT}
        for execution in store.get_executions_by_id(list(producers)):
            if nodes.get(execution.id) == contract.TRAINER_ID and "custom_config" in execution.custom_properties:
                settings = json.loads(execution.custom_properties["custom_config"].string_value or "{}")
        events = store.get_events_by_execution_ids(list(producers))
        inputs = {e.artifact_id for e in events if e.type == metadata_store_pb2.Event.INPUT and e.artifact_id not in seen}
        # Sibling outputs too: the Evaluator's evaluation sits beside the blessing the Pusher read.
        outputs = {e.artifact_id for e in events if e.type == metadata_store_pb2.Event.OUTPUT}
        for artifact in store.get_artifacts_by_id(sorted(inputs | outputs)):
            artifacts.setdefault(artifact_types.get(artifact.type_id, str(artifact.type_id)), artifact.uri)
        frontier = sorted(inputs)
    return {"pushed_model": pushed_dir, "artifacts": artifacts, "trainer_settings": settings}


def _finished(records: List[ExecutionRecord], component: str) -> List[ExecutionRecord]:
    """A node's finished executions, oldest first (`component`: its node id)."""
    return [e for e in records if e.component == component and e.state in FINISHED]


def _artifacts_by_key(store, execution_id: int) -> dict:
    """{(INPUT|OUTPUT, key): MLMD artifact} of one execution."""
    events = store.get_events_by_execution_ids([execution_id])
    artifacts = {a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in events])}
    return {("INPUT" if event.type == metadata_store_pb2.Event.INPUT else "OUTPUT",
             event.path.steps[0].key if event.path.steps else ""): artifacts[event.artifact_id] for event in events}


def _latest_output(store: metadata_store.MetadataStore, component: str, key: str):
    """The MLMD artifact of output `key` of a node's newest finished execution that recorded one, or None.

    The one way to find "the newest artifact" of a pipeline that ran: its ML Metadata,
    not the folder names under the pipeline root.
    """
    # A cached execution may record no events of its own; its outputs are those of an earlier one.
    for execution in reversed(_finished(executions(store), component)):
        artifact = _artifacts_by_key(store, execution.id).get(("OUTPUT", key))
        if artifact is not None and artifact.uri:
            return artifact
    return None


def latest_output_uri(store: metadata_store.MetadataStore, component: str, key: str) -> Optional[str]:
    """The URI of output `key` of a node's newest finished execution, or None if it never finished."""
    artifact = _latest_output(store, component, key)
    return artifact.uri if artifact is not None else None


def latest_output(store: metadata_store.MetadataStore, component: str, key: str):
    """Output `key` of a node's newest finished execution as a TFX Artifact (for TFX's artifact utilities), or None."""
    from tfx.types import artifact_utils

    artifact = _latest_output(store, component, key)
    if artifact is None:
        return None
    [artifact_type] = store.get_artifact_types_by_id([artifact.type_id])
    return artifact_utils.deserialize_artifact(artifact_type, artifact)


def latest_execution_inputs(store: metadata_store.MetadataStore, component: str):
    """(input artifacts {key: tfx Artifact}, execution properties) of a component's newest finished execution.

    What a benchmark needs to run that component's code again on the same inputs (e.g. an ablation of the Trainer).
    """
    from tfx.types import artifact_utils

    finished = _finished(executions(store), component)
    if not finished:
        raise FileNotFoundError(f"no finished {component} execution in this pipeline's metadata: has it run?")
    execution = store.get_executions_by_id([finished[-1].id])[0]
    types = {t.id: t for t in store.get_artifact_types()}
    inputs = {key: artifact_utils.deserialize_artifact(types[artifact.type_id], artifact)
              for (kind, key), artifact in _artifacts_by_key(store, execution.id).items() if kind == "INPUT"}
    properties = {k: v.string_value or v.int_value for k, v in execution.custom_properties.items()}
    return inputs, properties


def trainer_split_files(store: metadata_store.MetadataStore, split: str) -> list:
    """File patterns of one split of the newest Trainer's examples, as FnArgs has them for train and eval: e.g.
    the test split, which the Trainer never reads and a benchmark of its model does."""
    from tfx.types import artifact_utils
    from tfx.utils import io_utils

    inputs, _ = latest_execution_inputs(store, contract.TRAINER_ID)
    return [io_utils.all_files_pattern(artifact_utils.get_split_uri([inputs["examples"]], split))]


def trainer_fn_args(store: metadata_store.MetadataStore, work_dir: str, overrides: Optional[dict] = None):
    """FnArgs to run the Trainer module (or the Tuner's tuner_fn) again on the newest Trainer's inputs.

    Same examples, same Transform graph, the same custom_config but for
    `overrides`: what an ablation or a test of the module needs. Models and logs
    go under `work_dir`.
    """
    from tfx.components.trainer import fn_args_utils

    inputs, properties = latest_execution_inputs(store, contract.TRAINER_ID)
    inputs.pop("hyperparameters", None)  # a Tuner's output; `overrides` say what differs
    config = {**json.loads(properties.get("custom_config") or "{}"), **(overrides or {})}
    fn_args = fn_args_utils.get_common_fn_args(
        {key: [artifact] for key, artifact in inputs.items()},
        {"train_args": properties["train_args"], "eval_args": properties["eval_args"],
         "custom_config": json.dumps(config)}, work_dir)
    fn_args.serving_model_dir = os.path.join(work_dir, "serving_model")
    fn_args.model_run_dir = os.path.join(work_dir, "model_run")
    return fn_args


def latest_evaluation(store: metadata_store.MetadataStore) -> EvaluationSources:
    """The newest finished Evaluator execution's artifacts, with the Robustness report and blessing of the same model,
    and the version folder the Pusher wrote it to (None: not pushed).

    The blessing is the one the Pusher read (Robustness' own, which folds in the
    Evaluator's); the Evaluator's when Robustness did not run on that model.
    """
    from gemstone import report

    records = executions(store)
    evaluators = _finished(records, contract.EVALUATOR_ID)
    if not evaluators:
        raise FileNotFoundError("no finished evaluation in this pipeline's metadata: has a run reached the Evaluator?")
    io = _artifacts_by_key(store, evaluators[-1].id)
    # When the candidate is the baseline itself (the Trainer came from the cache and its model was blessed
    # before), ML Metadata keeps one input event for the artifact, under `baseline_model`.
    model = io.get(("INPUT", "model")) or io[("INPUT", "baseline_model")]
    robustness, blessing = None, io[("OUTPUT", "blessing")]
    for record in reversed(_finished(records, contract.ROBUSTNESS_ID)):
        candidate = _artifacts_by_key(store, record.id)
        if ("INPUT", "model") in candidate and candidate[("INPUT", "model")].uri == model.uri:
            robustness = candidate[("OUTPUT", "report")].uri
            blessing = candidate.get(("OUTPUT", "blessing"), blessing)
            break
    blessed = blessing.custom_properties.get(contract.BLESSED_PROPERTY)
    pushed = _pushed_model(store, records, model.uri, blessing.uri)
    return report.EvaluationSources(evaluation=io[("OUTPUT", "evaluation")].uri, blessing=blessing.uri,
                                    model=model.uri, examples=io[("INPUT", "examples")].uri,
                                    robustness=robustness, blessed=bool(blessed.int_value) if blessed else None,
                                    pushed_to=verdict.pushed_to(pushed) if pushed is not None else None)


def _pushed_model(store, records: List[ExecutionRecord], model_uri: str, blessing_uri: str):
    """The PushedModel of the Pusher that acted on this model and this blessing (the same run's), or None.

    Matched by its inputs, not by run: a cached Pusher records no events of its own, its output is that of the
    earlier execution with the same inputs.
    """
    for record in reversed(_finished(records, contract.PUSHER_ID)):
        io = _artifacts_by_key(store, record.id)
        if ("INPUT", "model") in io and io[("INPUT", "model")].uri == model_uri and \
                ("INPUT", "model_blessing") in io and io[("INPUT", "model_blessing")].uri == blessing_uri:
            return io.get(("OUTPUT", "pushed_model"))
    return None
