"""Shared test setup: Keras 2 before TensorFlow loads, the real photos, and the two models tests run against.

- `contract_model`: a small SavedModel that follows the export contract, made
  once per session in seconds (tests/contract_model.py). The applications'
  tests use it.
- `demo_pipeline`: one real run of the whole pipeline through the tfx CLI
  (minutes). Only the tests that need a run's artifacts use it; they are
  marked `slow`, and run on one pytest-xdist worker (`pytest_collection_modifyitems`).
"""
import os

import gemstone  # noqa: F401 - first: Keras 2 before TensorFlow loads (gemstone/__init__.py)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from gemstone import demo_data  # noqa: E402
# The real photos: GEMSTONE_REAL_DATA points elsewhere when the checkout is not beside shared/.
from gemstone.paths import REAL_DATA  # noqa: E402
from gemstone.schema import SCHEMA_DIR  # noqa: E402
from tests.tfx_helpers import E2E_PIPELINE, tfx_cli  # noqa: E402


@pytest.fixture
def real_data() -> Path:
    """The real 88-class photos, or a visible skip when this machine lacks them."""
    if not REAL_DATA.is_dir():
        pytest.skip(f"real photos not found at {REAL_DATA}")
    return REAL_DATA


@pytest.fixture(scope="session")
def demo_photos(tmp_path_factory) -> Path:
    """A few generated photos per demo class: folder with images/<class>/ and manifest.csv."""
    return Path(demo_data.make_demo_data(tmp_path_factory.mktemp("photos"), per_class=4, seed=1, size=64).out_dir)


@pytest.fixture(scope="session")
def contract_model(demo_photos, tmp_path_factory) -> Path:
    """A TF Serving base folder holding version 1 of a small model that follows the export contract."""
    from tests import contract_model as builder

    base = tmp_path_factory.mktemp("contract-model") / "model"
    builder.build(demo_photos, base)
    return base


PIPELINE_RUNS = "pipeline-runs"  # the pytest-xdist group of the tests that use `demo_pipeline`


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's own hook reads the groups
def pytest_collection_modifyitems(items):
    """The tests that use `demo_pipeline` run on one pytest-xdist worker, in order: one pipeline run serves them all."""
    for item in items:
        if "demo_pipeline" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group(PIPELINE_RUNS))


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
        GEMSTONE_SCHEMA=str(SCHEMA_DIR / "gemstone-demo" / "schema.pbtxt"),
        # The pipeline's plumbing, with the small from-scratch model: it trains, exports its TFLite models
        # and is judged in seconds. The transfer-learning path (InceptionV3) has its own test from TFX's
        # FnArgs to the exported model (modules/trainer_test.py); bench/ measures its accuracy.
        GEMSTONE_BACKBONE="none",
        GEMSTONE_IMAGE_SIZE="32",
        GEMSTONE_EPOCHS="2",
        GEMSTONE_MIN_ACCURACY="0.0",
        # A second run must not be refused for being a little worse than the first.
        GEMSTONE_MAX_ACCURACY_DROP="1.0",
        # Nor a model trained for 2 epochs for flagging a few of its 13 test photos as unfamiliar (3 of them
        # was 23 %, over the 10 % the open-set gate allows): the gates have their own tests (tests/test_gates.py).
        GEMSTONE_MAX_FLAGGED_KNOWN="1.0",
    )
    tfx_cli(env, "pipeline", "create", "--engine", "local", "--pipeline_path", "local_runner.py")
    tfx_cli(env, "run", "create", "--engine", "local", "--pipeline_name", E2E_PIPELINE)
    return home, env, Path(data.out_dir)
