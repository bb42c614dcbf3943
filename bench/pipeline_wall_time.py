"""Wall time of the demo pipeline, end to end and per component, from a cold cache.

Runs the same thing as `make demo` (the tfx CLI, LocalDagRunner) in a fresh
GEMSTONE_HOME so nothing is cached, then reads each component's start and end
from ML Metadata.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import common
from gemstone import demo_data
from gemstone.apps import metadata

REPO = Path(__file__).resolve().parents[1]
PIPELINE_NAME = "gemstone-demo"


def run() -> Path:
    home = Path(tempfile.mkdtemp(prefix="gemstone-bench-"))
    env = dict(os.environ, GEMSTONE_HOME=str(home), LOCAL_HOME=str(home / "tfx-cli"),
               GEMSTONE_PIPELINE_NAME=PIPELINE_NAME,
               GEMSTONE_DATA=str(home / "data" / "demo" / "manifest.csv"))
    tfx = str(Path(sys.executable).parent / "tfx")
    started = time.time()
    summary = demo_data.make_demo_data(home / "data" / "demo")
    data_seconds = time.time() - started
    subprocess.run([tfx, "pipeline", "create", "--engine", "local", "--pipeline_path", "local_runner.py"],
                   cwd=REPO / "pipeline", env=env, check=True, capture_output=True)
    run_started = time.time()
    subprocess.run([tfx, "run", "create", "--engine", "local", "--pipeline_name", PIPELINE_NAME],
                   cwd=REPO / "pipeline", env=env, check=True, capture_output=True)
    total = time.time() - run_started
    rows = [{"step": "make-demo-data", "seconds": round(data_seconds, 1), "state": f"{summary.n_images} images"}]
    for e in metadata.executions(metadata.open_store(PIPELINE_NAME, str(home))):
        rows.append({"step": e.component, "seconds": round(e.seconds, 1), "state": e.state})
    rows.append({"step": "pipeline run (tfx run create)", "seconds": round(total, 1), "state": ""})
    return common.record("pipeline_wall_time", rows,
                         notes=f"Demo pipeline from a cold cache on {os.cpu_count()} cores.")


if __name__ == "__main__":
    run()
