"""The real tfx CLI, run as a child process with its local engine: what `gemstone run-pipeline` runs the pipeline with.

Its output (and that of everything it starts: the pipeline's Python process, Beam's workers) goes to a log file.
It runs in a session of its own, so that Ctrl-C reaches it through stop(), which waits for every process of that
session to end: none is left writing after `gemstone` has exited.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, List, Mapping

from gemstone import paths

TFX = str(Path(sys.executable).parent / "tfx")
# The folder of the file the tfx CLI runs (pipeline/local_runner.py), and its working folder, as the Makefile had it.
RUNNER_DIR = paths.REPO_ROOT / "pipeline"
RUNNER = "local_runner.py"
# Ctrl-C, then SIGTERM, then SIGKILL: how long each is given to end the run's processes, in seconds.
STOP_SIGNALS = ((signal.SIGINT, 30.0), (signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0))


def registered(pipeline_name: str, environ: Mapping[str, str]) -> bool:
    """Whether the tfx CLI's local engine knows the pipeline: its registry, $LOCAL_HOME (tfx's default ~/tfx/local)."""
    home = environ.get("LOCAL_HOME") or os.path.join(environ.get("HOME", "~"), "tfx", "local")
    return (Path(home) / pipeline_name / "pipeline_args.json").is_file()


def register_command(pipeline_name: str, environ: Mapping[str, str]) -> List[str]:
    """`tfx pipeline create` the first time, `tfx pipeline update` after."""
    action = "update" if registered(pipeline_name, environ) else "create"
    return [TFX, "pipeline", action, "--engine", "local", "--pipeline_path", RUNNER]


def run_command(pipeline_name: str) -> List[str]:
    return [TFX, "run", "create", "--engine", "local", "--pipeline_name", pipeline_name]


def start(command: List[str], log: IO, environ: Mapping[str, str]) -> subprocess.Popen:
    """Starts a tfx command in its own session, its output and errors into `log`."""
    log.write(f"$ {' '.join(command)}\n")
    log.flush()
    return subprocess.Popen(command, cwd=RUNNER_DIR, env=dict(environ), stdin=subprocess.DEVNULL, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)


def _session_alive(process: subprocess.Popen) -> bool:
    """Whether any process of the child's session (its process group) is still running."""
    process.poll()  # reaps the child itself once it has ended
    try:
        os.killpg(process.pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def stop(process: subprocess.Popen) -> None:
    """Ends the child and every process it started, as Ctrl-C would, then harder, and waits for them to end."""
    for number, grace in STOP_SIGNALS:
        if not _session_alive(process):
            return
        try:
            os.killpg(process.pid, number)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and _session_alive(process):
            time.sleep(0.2)
