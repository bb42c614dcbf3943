"""Runs the pipeline locally with LocalDagRunner. This is the file the tfx CLI runs:

    tfx pipeline create --engine local --pipeline_path pipeline/local_runner.py
    tfx run create --engine local --pipeline_name gemstone-demo

Settings come from GEMSTONE_* environment variables (see pipeline/configs.py);
`make demo` and `make run` set them.
"""
import os

import gemstone  # noqa: F401 - before TensorFlow: Keras 2 (gemstone/__init__.py)
from absl import logging
# (not tfx.v1: see dag.py)
from tfx.orchestration import metadata
from tfx.orchestration.local.local_dag_runner import LocalDagRunner

# Run as a script, Python puts this folder first on sys.path: no module here is named like a package
# of the project (the DAG is dag.py, not pipeline.py), so `pipeline` is the installed package.
from pipeline import configs, dag


def run(config: configs.PipelineConfig = None) -> None:
    config = config or configs.PipelineConfig.from_env()
    os.makedirs(os.path.dirname(config.metadata_path), exist_ok=True)
    LocalDagRunner().run(
        dag.create_pipeline(
            config,
            metadata_connection_config=metadata.sqlite_metadata_connection_config(
                config.metadata_path),
        ))


if __name__ == "__main__":
    logging.set_verbosity(logging.INFO)
    run()
