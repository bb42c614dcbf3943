"""Shared by the tests that need a trained, pushed model: one real pipeline run per session.

The run goes through the real tfx CLI (`tfx pipeline create`, `tfx run create
--engine local`) on a tiny generated dataset, like `make demo` but smaller.
"""
import os
import sys
from pathlib import Path

import pytest

from gemstone import demo_data

# The helpers live beside this file.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tfx_helpers import E2E_PIPELINE, REPO, tfx_cli  # noqa: E402


@pytest.fixture(scope="session")
def demo_pipeline(tmp_path_factory):
    """(GEMSTONE_HOME, environment, data folder) after one complete run of the demo pipeline."""
    home = tmp_path_factory.mktemp("home")
    data = demo_data.make_demo_data(home / "data", per_class=12, seed=1, size=96)
    env = dict(
        os.environ,
        GEMSTONE_HOME=str(home),
        LOCAL_HOME=str(home / "tfx-cli"),
        GEMSTONE_PIPELINE_NAME=E2E_PIPELINE,
        GEMSTONE_DATA=str(Path(data.out_dir) / "manifest.csv"),
        GEMSTONE_SCHEMA=str(REPO / "schema" / "gemstone-demo" / "schema.pbtxt"),
        # The default backbone (InceptionV3, transfer learning) at its smallest input, from random
        # weights: the plumbing of the pretrained path, not its accuracy (bench/ measures that).
        GEMSTONE_BACKBONE="inception_v3",
        GEMSTONE_WEIGHTS="none",
        GEMSTONE_IMAGE_SIZE="75",
        GEMSTONE_VIEWS="2",
        GEMSTONE_EPOCHS="2",
        GEMSTONE_FINE_TUNE_EPOCHS="1",
        GEMSTONE_MIN_ACCURACY="0.0",
        # A second run must not be refused for being a little worse than the first.
        GEMSTONE_MAX_ACCURACY_DROP="1.0",
    )
    tfx_cli(env, "pipeline", "create", "--engine", "local", "--pipeline_path", "local_runner.py")
    tfx_cli(env, "run", "create", "--engine", "local", "--pipeline_name", E2E_PIPELINE)
    return home, env, Path(data.out_dir)
