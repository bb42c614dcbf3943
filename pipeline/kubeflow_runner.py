"""Compiles the pipeline for Kubeflow Pipelines (KFP v2 PipelineSpec JSON).

The very same `dag.create_pipeline` as the local runner: only where
things live (object storage or a volume) and which container runs them differ.
The tfx CLI can use this file too:

    tfx pipeline create --engine kubeflow --pipeline_path pipeline/kubeflow_runner.py --endpoint URL
"""
import dataclasses
import os

import gemstone  # noqa: F401 - before TensorFlow: Keras 2 (gemstone/__init__.py)
# (not tfx.v1: see dag.py)
from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner

from gemstone import backbones, contract
from pipeline import configs, dag  # (see local_runner.py: nothing in this folder hides the package)

DEFAULT_IMAGE = "ghcr.io/gemstone-tfx/gemstone-pipeline:0.1.0"
# Where kubeflow/Dockerfile puts the project inside the image.
CONTAINER_REPO_ROOT = "/opt/gemstone"
# GEMSTONE_HOME inside the image (kubeflow/Dockerfile), where its build fetched the backbone weights.
CONTAINER_HOME = "/opt/gemstone/home"


def in_container(path):
    """A path inside the project (this checkout, or the folder an installed wheel's packages are in, where the
    curated schemas are package data), as the container sees it (other paths are left alone)."""
    if path and os.path.isabs(path) and path.startswith(str(configs.REPO_ROOT) + os.sep):
        return CONTAINER_REPO_ROOT + path[len(str(configs.REPO_ROOT)):]
    return path


def trainer_resources(config: configs.PipelineConfig):
    """The Trainer pod's ResourceSpec (KFP v2), or None when the config asks for nothing in particular."""
    from kfp.pipeline_spec import pipeline_spec_pb2

    if not (config.trainer_accelerator or config.trainer_memory or config.trainer_cpu):
        return None
    spec = pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec(
        cpu_limit=config.trainer_cpu or 0.0, memory_limit=config.trainer_memory or 0.0)
    if config.trainer_accelerator:
        kind, _, count = config.trainer_accelerator.partition(":")
        spec.accelerator.type, spec.accelerator.count = kind, int(count or 1)
    return spec


def compile_pipeline(output_file: str, config: configs.PipelineConfig = None, image: str = None) -> str:
    """Writes the KFP v2 pipeline spec to `output_file` and returns its path."""
    config = config or configs.PipelineConfig.from_env()
    weights = config.weights
    if config.backbone in backbones.BACKBONES and weights == str(backbones.weights_path(config.home, config.backbone)):
        weights = str(backbones.weights_path(CONTAINER_HOME, config.backbone))  # the image has its own copy
    config = dataclasses.replace(config, containerised=True, schema_path=in_container(config.schema_path),
                                 weights=weights, setup_file=in_container(config.setup_file))
    image = image or os.environ.get("GEMSTONE_IMAGE", DEFAULT_IMAGE)
    runner = kubeflow_v2_dag_runner.KubeflowV2DagRunner(
        config=kubeflow_v2_dag_runner.KubeflowV2DagRunnerConfig(default_image=image),
        output_dir=os.path.dirname(os.path.abspath(output_file)),
        output_filename=os.path.basename(output_file),
    )
    # On Kubeflow, MLMD is the cluster's; no local SQLite connection config.
    pipeline = dag.create_pipeline(config)
    resources = trainer_resources(config)
    if resources is not None:
        next(node for node in pipeline.components if node.id == contract.TRAINER_ID).with_platform_config(resources)
    runner.run(pipeline, write_out=True)
    return output_file


if __name__ == "__main__":
    compile_pipeline(os.environ.get("GEMSTONE_KFP_OUTPUT", "pipeline.json"))
