"""The project as a wheel: built from setup.py, installed (not editable) where the checkout is out of reach.

The wheel goes into a fresh virtual environment that reuses the dependencies
installed in this one (a .pth file names its site-packages, whose own .pth
files, the checkout's editable finder among them, are not read), and its
commands run from another directory: what they need must come with the wheel.
"""
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.tfx_helpers import REPO

pytestmark = pytest.mark.slow  # builds and installs a wheel, loads TFX (about half a minute)

PACKAGES = ("gemstone", "pipeline", "components", "modules")


def _run(args, **kwargs):
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=600, **kwargs)
    assert done.returncode == 0, f"{' '.join(map(str, args))} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(the environment's bin folder, the wheel) of the project installed non-editable."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"  # a copy: the build's own folders (build/, *.egg-info) stay out of the checkout
    for package in PACKAGES:
        shutil.copytree(REPO / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "setup.py", source)
    uv = Path(sys.executable).parent / "uv"
    _run([uv, "build", "--wheel", "--no-build-isolation", "--python", sys.executable, "--out-dir", root / "dist",
          source])
    [wheel] = (root / "dist").glob("*.whl")

    env = root / "env"
    _run([sys.executable, "-m", "venv", "--without-pip", env])
    python = env / "bin" / "python"
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site_packages = Path(_run([python, "-c", purelib]).stdout.strip())
    (site_packages / "project-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([uv, "pip", "install", "--python", python, "--no-deps", "--offline", wheel])
    return env / "bin", wheel


def _environment(home: Path, **settings) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEMSTONE_") and k != "PYTHONPATH"}
    return dict(env, GEMSTONE_HOME=str(home), **settings)


def test_the_wheel_carries_the_curated_schemas_and_the_family_map(installed):
    _, wheel = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    for data in ("gemstone/schema/families.csv", "gemstone/schema/gem88/schema.pbtxt",
                 "gemstone/schema/gemstone-demo/schema.pbtxt"):
        assert data in names, sorted(n for n in names if "schema" in n)


def test_the_installed_package_is_the_one_that_runs(installed, tmp_path):
    bin_dir, _ = installed
    where = _run([bin_dir / "python", "-c", "import gemstone.schema, pipeline; "
                  "print(gemstone.schema.SCHEMA_DIR); print(pipeline.__file__)"], cwd=tmp_path).stdout.split()
    for path in where:
        assert str(bin_dir.parent) in path and str(REPO) not in path, where


def test_inspect_data_runs_from_the_wheel_with_its_family_map(installed, demo_photos, tmp_path):
    bin_dir, _ = installed
    _run([bin_dir / "gemstone", "inspect-data", demo_photos / "images", "--output", "report"], cwd=tmp_path,
         env=_environment(tmp_path / "home"))
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["counts"]["accepted"] == report["counts"]["files"] > 0
    assert {f["family"] for f in report["files"]} >= {"Corundum", "Beryl"}  # from the wheel's families.csv


def test_the_pipeline_compiles_for_kubeflow_from_the_wheel_with_its_curated_schema(installed, tmp_path):
    bin_dir, _ = installed
    env = _environment(tmp_path / "home", GEMSTONE_PIPELINE_NAME="gem88", GEMSTONE_DATA="/mnt/photos/gem88",
                       GEMSTONE_PIPELINE_ROOT="gs://b/pipelines/gem88", GEMSTONE_SERVING_DIR="gs://b/serving/gem88",
                       GEMSTONE_IMAGE="registry.example/gemstone:1")
    _run([bin_dir / "gemstone", "kubeflow", "compile", "--output", "spec/pipeline.json"], cwd=tmp_path, env=env)
    text = (tmp_path / "spec" / "pipeline.json").read_text()
    tasks = json.loads(text)["pipelineSpec"]["root"]["dag"]["tasks"]
    assert "ImportSchemaGen" in tasks and "SchemaGen" not in tasks  # the curated schema was found
    assert "/opt/gemstone/gemstone/schema/gem88/schema.pbtxt" in text  # the image's copy of it
    assert str(bin_dir.parent) not in text  # nothing points into this environment
