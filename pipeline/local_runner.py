"""Runs the pipeline locally with LocalDagRunner. This is the file the tfx CLI runs:

    tfx pipeline create --engine local --pipeline_path pipeline/local_runner.py
    tfx run create --engine local --pipeline_name gemstone-demo

Settings come from GEMSTONE_* environment variables (see pipeline/configs.py);
`make demo` and `make run` set them.
"""
import os
import sys

# Run as a script, Python puts this folder first on sys.path, where
# `pipeline.py` would hide the `pipeline` package: put the repository there instead.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path = [os.path.dirname(_HERE)] + [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import gemstone  # noqa: E402,F401 - before TensorFlow: Keras 2 (gemstone/__init__.py)
from absl import logging  # noqa: E402
# (not tfx.v1: see pipeline.py)
from tfx.orchestration import metadata  # noqa: E402
from tfx.orchestration.local.local_dag_runner import LocalDagRunner  # noqa: E402

from pipeline import configs  # noqa: E402
from pipeline import pipeline as gemstone_pipeline  # noqa: E402


def run(config: configs.PipelineConfig = None) -> None:
    config = config or configs.PipelineConfig.from_env()
    os.makedirs(os.path.dirname(config.metadata_path), exist_ok=True)
    LocalDagRunner().run(
        gemstone_pipeline.create_pipeline(
            config,
            metadata_connection_config=metadata.sqlite_metadata_connection_config(
                config.metadata_path),
        ))


if __name__ == "__main__":
    logging.set_verbosity(logging.INFO)
    run()
