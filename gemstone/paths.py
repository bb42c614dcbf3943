"""Where a run's outputs live. Everything goes under GEMSTONE_HOME.

Layout (TF Serving's for the pushed models, numeric versions):

    $GEMSTONE_HOME/
      data/demo/                      generated demo data
      pipelines/<pipeline-name>/      TFX pipeline root (every artifact)
      metadata/<pipeline-name>/metadata.db   MLMD (SQLite)
      serving/<pipeline-name>/<version>/     pushed SavedModels
      reports/<pipeline-name>/        dashboards and reports
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

REPO_ROOT = Path(__file__).resolve().parents[1]


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


def latest_version_dir(base: Path) -> Optional[Path]:
    """The newest numeric version folder under a TF Serving base path, if any."""
    base = Path(base)
    if not base.is_dir():
        return None
    versions = [p for p in base.iterdir() if p.is_dir() and p.name.isdigit()]
    return max(versions, key=lambda p: int(p.name)) if versions else None
