"""The gemstone pipeline's DAG: the one definition every runner uses.

ImageExampleGen -> StatisticsGen -> SchemaGen | ImportSchemaGen -> ExampleValidator -> DataGate
-> Transform -> [Tuner, when `tune`] -> Trainer -> (latest blessed model) -> Evaluator -> Robustness (the blessing
the Pusher reads: the Evaluator's AND the robustness gate) -> Pusher -> ModelCard, and SliceReport (the dashboard)
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

from ml_metadata.proto import metadata_store_pb2
# TFX's modules, not its `tfx.v1` re-exports: importing tfx.v1 imports its Google Cloud extensions
# (google-cloud-aiplatform), about 8 s of every process that builds the pipeline.
from tfx import types
from tfx.components import ExampleValidator, SchemaGen, StatisticsGen, Trainer, Transform, Tuner
from tfx.dsl.components.common.resolver import Resolver
from tfx.dsl.input_resolution.strategies.latest_blessed_model_strategy import LatestBlessedModelStrategy
from tfx.orchestration.pipeline import Pipeline
from tfx.proto import pusher_pb2, trainer_pb2
from tfx.types import standard_artifacts

from components.data_gate.component import DataGate
from components.evaluator.component import Evaluator  # TFX's, but a model is never its own baseline
from components.image_example_gen.component import ImageExampleGen
from components.import_schema_gen.component import ImportSchemaGen
from components.model_card.component import ModelCard
from components.pusher.component import Pusher  # TFX's, but the model already serving is not pushed again
from components.robustness.component import Robustness
from components.slice_report.component import SliceReport
from gemstone import code_fingerprint, contract, ingestion
from pipeline import configs, evaluation


# Exec property of Transform and the Trainer (in custom_config): the fingerprint of the module code
# they run. A cache key only: TFX would otherwise reuse a cached result after that code changed.
MODULE_CODE_KEY = "module_code_sha256"


def _module_code(entry: str) -> str:
    """The fingerprint of a module in modules/ and the project code it imports (gemstone/code_fingerprint.py)."""
    return code_fingerprint.code_fingerprint(Path("modules", entry))


def create_pipeline(config: configs.PipelineConfig,
                    metadata_connection_config: Optional[metadata_store_pb2.ConnectionConfig] = None,
                    beam_pipeline_args: Optional[List[str]] = None) -> Pipeline:
    """Builds the TFX pipeline described by `config`."""
    if not config.containerised:  # in a container, the weights are the image's
        config.check_weights()
    input_base, input_pattern = ingestion.default_input_pattern(config.data)
    example_gen = ImageExampleGen(input_base=input_base, input_pattern=input_pattern)

    statistics_gen = StatisticsGen(examples=example_gen.outputs["examples"])

    if config.schema_path:
        if not config.containerised and not config.schema_sha256:
            raise FileNotFoundError(f"curated schema not found: {config.schema_path}")
        # On Kubeflow, schema_path is the container's copy and schema_sha256 that of this machine's.
        schema_gen = ImportSchemaGen(schema_file=config.schema_path, schema_sha256=config.schema_sha256 or "")
    else:
        schema_gen = SchemaGen(
            statistics=statistics_gen.outputs["statistics"], infer_feature_shape=True)

    example_validator = ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"])

    # Stops the run, saying why, when the data does not match the schema.
    data_gate = DataGate(anomalies=example_validator.outputs["anomalies"],
                         fail_on_anomalies=int(config.fail_on_anomalies))

    transform = Transform(
        examples=example_gen.outputs["examples"],
        schema=schema_gen.outputs["schema"],
        # The installed package's function, not a module file: TFX would package a module file as a
        # wheel and pip-install it at every call (5 s each, 4 times a run), for code already installed.
        preprocessing_fn="modules.transform.preprocessing_fn",
        # The Trainer applies the transform graph in its input pipeline.
        materialize=False,
        # StatisticsGen describes the raw examples already; statistics of the transformed ones
        # would cover every pixel of every resized picture, and nothing reads them.
        disable_statistics=True,
        custom_config={"image_size": config.image_size, MODULE_CODE_KEY: _module_code("transform.py")},
    )
    transform.add_upstream_node(data_gate)

    training_inputs = dict(
        examples=example_gen.outputs["examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema_gen.outputs["schema"],
        train_args=trainer_pb2.TrainArgs(splits=["train"]),
        eval_args=trainer_pb2.EvalArgs(splits=["eval"]),
        custom_config={
            "image_size": config.image_size,
            "epochs": config.epochs,
            "fine_tune_epochs": config.fine_tune_epochs,
            "fine_tune_scope": config.fine_tune_scope,
            "views": config.views,
            "edge_int8": config.edge_int8,
            "batch_size": config.batch_size,
            "review_threshold": config.review_threshold,
            "backbone": config.backbone,
            "weights": config.weights,
            # Recorded in ML Metadata with the Trainer's execution: which weights the model started from.
            "backbone_provenance": config.backbone_provenance or {},
            "tuner_trials": config.tuner_trials,
            MODULE_CODE_KEY: _module_code("trainer.py"),
        },
    )
    tuner = None
    if config.tune:
        tuner = Tuner(
            tuner_fn="modules.tuner.tuner_fn",
            **{**training_inputs, "custom_config": {**training_inputs["custom_config"],
                                                   MODULE_CODE_KEY: _module_code("tuner.py")}})

    trainer = Trainer(
        run_fn="modules.trainer.run_fn",
        hyperparameters=tuner.outputs["best_hyperparameters"] if tuner else None,
        **training_inputs)

    model_resolver = Resolver(
        strategy_class=LatestBlessedModelStrategy,
        model=types.Channel(type=standard_artifacts.Model),
        # Robustness' blessing, the one the Pusher reads: a model the Evaluator blessed but the robustness
        # gate rejected was never pushed and must not become the baseline either.
        model_blessing=types.Channel(type=standard_artifacts.ModelBlessing,
                                       producer_component_id=contract.ROBUSTNESS_ID, output_key="blessing"),
    ).with_id("latest_blessed_model_resolver")

    evaluator = Evaluator(
        examples=example_gen.outputs["examples"],
        model=trainer.outputs["model"],
        baseline_model=model_resolver.outputs["model"],
        example_splits=[evaluation.EVAL_SPLIT],
        eval_config=evaluation.eval_config(config.min_accuracy, config.max_accuracy_drop, config.review_threshold,
                                           config.num_classes),
    )

    # Blesses the model when the Evaluator did and the optional robustness gate passed: the blessing the
    # Pusher reads. A rejected model is not pushed; the run goes on to the dashboard and the model card.
    robustness = Robustness(model=trainer.outputs["model"], examples=example_gen.outputs["examples"],
                            model_blessing=evaluator.outputs["blessing"],
                            split=evaluation.EVAL_SPLIT, min_relative_accuracy=config.min_relative_robustness,
                            max_flagged_known=config.max_flagged_known)

    pusher = Pusher(
        model=trainer.outputs["model"],
        model_blessing=robustness.outputs["blessing"],
        push_destination=pusher_pb2.PushDestination(
            filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=config.serving_dir)),
    )

    model_card = ModelCard(model=trainer.outputs["model"], evaluation=evaluator.outputs["evaluation"],
                           examples=example_gen.outputs["examples"], blessing=robustness.outputs["blessing"],
                           robustness=robustness.outputs["report"], pushed_model=pusher.outputs["pushed_model"])

    slice_report = SliceReport(evaluation=evaluator.outputs["evaluation"], blessing=robustness.outputs["blessing"],
                               model=trainer.outputs["model"], examples=example_gen.outputs["examples"],
                               robustness=robustness.outputs["report"], pushed_model=pusher.outputs["pushed_model"],
                               pipeline_name=config.pipeline_name,
                               split=evaluation.EVAL_SPLIT)

    return Pipeline(
        pipeline_name=config.pipeline_name,
        pipeline_root=config.pipeline_root,
        components=[example_gen, statistics_gen, schema_gen, example_validator, data_gate, transform]
        + ([tuner] if tuner else []) + [trainer, model_resolver, evaluator, robustness, pusher, model_card,
                    slice_report],
        enable_cache=True,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=beam_pipeline_args if beam_pipeline_args is not None else config.beam_pipeline_args(),
    )
