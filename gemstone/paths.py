"""Where a run's outputs live. Everything goes under GEMSTONE_HOME.

Layout (TF Serving's for the pushed models, numeric versions):

    $GEMSTONE_HOME/
      data/demo/                      generated demo data
      pipelines/<pipeline-name>/      TFX pipeline root (every artifact)
      metadata/<pipeline-name>/metadata.db   MLMD (SQLite)
      serving/<pipeline-name>/<version>/     pushed SavedModels
      reports/<pipeline-name>/        dashboards and reports
      logs/<pipeline-name>/<started>.log     the whole log of each `gemstone run-pipeline`
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import List, Optional

from gemstone.contract import SAVED_MODEL_FILE

# The folder that holds the project's packages: the checkout, or site-packages for an installed wheel.
REPO_ROOT = Path(__file__).resolve().parents[1]
# The real 88-class photos the tests and benchmarks use: beside the checkout, or where GEMSTONE_REAL_DATA says.
REAL_DATA = Path(os.environ.get("GEMSTONE_REAL_DATA") or REPO_ROOT.parent / "shared" / "data" / "gemstones-88")


def gemstone_home(home: Optional[str] = None) -> Path:
    """GEMSTONE_HOME, defaulting to `.gemstone/` in the checkout."""
    return Path(home or os.environ.get("GEMSTONE_HOME") or REPO_ROOT / ".gemstone").resolve()


def demo_data_dir(home: Optional[str] = None) -> Path:
    return gemstone_home(home) / "data" / "demo"


def pipeline_root(pipeline_name: str, home: Optional[str] = None) -> Path:
    return gemstone_home(home) / "pipelines" / pipeline_name


def metadata_path(pipeline_name: str, home: Optional[str] = None) -> Path:
    return gemstone_home(home) / "metadata" / pipeline_name / "metadata.db"


def serving_dir(pipeline_name: str, home: Optional[str] = None) -> Path:
    return gemstone_home(home) / "serving" / pipeline_name


def reports_dir(pipeline_name: str, home: Optional[str] = None) -> Path:
    return gemstone_home(home) / "reports" / pipeline_name


def run_log_path(pipeline_name: str, started: float, home: Optional[str] = None) -> Path:
    """The log file of a run of the pipeline started at `started` (seconds since the epoch), named by its local time."""
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S", time.localtime(started))
    return gemstone_home(home) / "logs" / pipeline_name / f"{stamp}.log"


def is_version_dir(folder: Path) -> bool:
    """Whether a folder is a model version: it holds a SavedModel (a base path holds versions, not one).

    The one definition of "a version", for serving, batch inference, drift and the CLI.
    """
    return (Path(folder) / SAVED_MODEL_FILE).is_file()


def versions(base: Path) -> List[Path]:
    """The complete model versions under a TF Serving base path (numeric version folders), oldest first."""
    base = Path(base)
    if not base.is_dir():
        return []
    found = [p for p in base.iterdir() if p.name.isdigit() and is_version_dir(p)]
    return sorted(found, key=lambda p: int(p.name))


def latest_version_dir(base: Path) -> Optional[Path]:
    """The newest complete version folder under a TF Serving base path, if any."""
    found = versions(base)
    return found[-1] if found else None
