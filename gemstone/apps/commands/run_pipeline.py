"""`gemstone run-pipeline`: runs the pipeline through the real tfx CLI and reports it in a screenful.

The tfx CLI registers the pipeline (`tfx pipeline create`, or `update` once it is known) and runs it with its local
engine (`tfx run create --engine local`), as a child process (gemstone/apps/tfx_cli.py): its whole log, thousands
of lines, goes to a file under $GEMSTONE_HOME/logs/<pipeline>/. Meanwhile the terminal shows each component as
ML Metadata records it finished (ran or cached, and how long), then what the run made of its model, read from ML
Metadata and the run's model card (gemstone/apps/metadata.py's run_summary; the words: gemstone/apps/run_report.py).

Exit status: 0 when the run finished (blessed or not: a model that is not blessed is an answer, not a failure);
3 when it failed (the failing component and the end of the log are shown); 130 on Ctrl-C, once every process of
the run has ended.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Callable, List, Optional, Set

from gemstone import paths
from gemstone.apps import checks
from gemstone.apps.commands import FAILED, INTERRUPTED, OK

POLL_SECONDS = 1.0  # how often ML Metadata is read for components that finished
# How often a component that is still running says how long it has run and what it is at (the Trainer can take an
# hour): often enough to show the run is alive, seldom enough to keep the screenful.
PROGRESS_SECONDS = 120.0


def _pipeline_name(given: Optional[str]) -> str:
    name = given or os.environ.get("GEMSTONE_PIPELINE_NAME", "").strip()
    if not name:
        raise checks.UsageError("say which pipeline: --pipeline-name NAME (or GEMSTONE_PIPELINE_NAME)")
    return name


class _Progress:
    """Prints each execution of this run once ML Metadata records it finished (or failed), in order, and every
    PROGRESS_SECONDS what a component that is still running is at (read from the run's log)."""

    def __init__(self, pipeline_name: str, log_path: Path):
        self.pipeline_name = pipeline_name
        self.log_path = log_path
        self.last_progress = time.time()
        self._opened = None  # the store, once the run has made it: one connection for every poll
        self.before = self._last_id()  # executions up to this one belong to earlier runs
        self.shown: Set[int] = set()
        self.records = []

    def _store(self):
        from gemstone.apps import metadata

        if self._opened is None and paths.metadata_path(self.pipeline_name).is_file():
            self._opened = metadata.open_store(self.pipeline_name)
        return self._opened

    def _last_id(self) -> int:
        from gemstone.apps import metadata

        store = self._store()
        return max((e.id for e in metadata.executions(store)), default=0) if store else 0

    def poll(self) -> None:
        from gemstone.apps import metadata, run_report

        try:
            store = self._store()
            records = [e for e in metadata.executions(store) if e.id > self.before] if store else []
        except Exception:  # noqa: BLE001 - the store is being written by the run: read it again next time
            return
        self.records = records
        for record in records:
            if record.id not in self.shown and record.state not in ("NEW", "RUNNING", "UNKNOWN"):
                self.shown.add(record.id)
                if run_report.is_component(record):
                    print(run_report.component_line(record), flush=True)
        self._show_progress()

    def _show_progress(self) -> None:
        from gemstone.apps import run_report

        now = time.time()
        if now - self.last_progress < PROGRESS_SECONDS:
            return
        running = [r for r in self.records
                   if r.state == "RUNNING" and run_report.is_component(r) and now - r.started >= PROGRESS_SECONDS]
        if running:
            self.last_progress = now
            log_text = self.log_path.read_text(errors="replace")
            for record in running:
                print(run_report.progress_line(record.component, now - record.started, log_text), flush=True)


def _run_tfx(command: List[str], log, environ, while_running: Callable[[], None]) -> int:
    """Runs one tfx command to its end, calling `while_running` every POLL_SECONDS; its exit status."""
    from gemstone.apps import tfx_cli

    process = tfx_cli.start(command, log, environ)
    try:
        while process.poll() is None:
            while_running()
            time.sleep(POLL_SECONDS)
    except KeyboardInterrupt:
        import signal

        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not leave processes behind
        try:
            tfx_cli.stop(process)
        finally:
            signal.signal(signal.SIGINT, previous)
        raise
    while_running()
    return process.returncode


def run_pipeline(args) -> int:
    from gemstone.apps import metadata, run_report, tfx_cli

    name = _pipeline_name(args.pipeline_name)
    environ = dict(os.environ, GEMSTONE_PIPELINE_NAME=name)  # the name local_runner.py gives the pipeline
    started, clock = time.time(), time.monotonic()
    log_path = paths.run_log_path(name, started)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    print(f"Running pipeline '{name}' with the tfx CLI (local engine); its whole log:\n"
          f"  {run_report.shown(str(log_path))}", flush=True)
    progress = _Progress(name, log_path)
    with open(log_path, "a") as log:
        try:
            status = _run_tfx(tfx_cli.register_command(name, environ), log, environ, lambda: None)
            if status == 0:
                status = _run_tfx(tfx_cli.run_command(name), log, environ, progress.poll)
        except KeyboardInterrupt:
            log.write("\n[gemstone run-pipeline] interrupted (Ctrl-C): the run's processes were stopped\n")
            running = [r.component for r in progress.records if r.state == "RUNNING"]
            print(f"Interrupted{' during ' + running[-1] if running else ''}: the run was stopped. Its log: "
                  f"{run_report.shown(str(log_path))}", file=sys.stderr)
            return INTERRUPTED
    seconds = time.monotonic() - clock
    if status != 0:
        log_text = log_path.read_text(errors="replace")
        component = run_report.failed_component(progress.records, log_text)
        print("\n".join(run_report.failure_lines(component, log_text, str(log_path), seconds, status)),
              file=sys.stderr)
        return FAILED
    store = metadata.open_store(name)  # the run has ended: read once more, and let an error be seen
    records = [e for e in metadata.executions(store) if e.id > progress.before]
    print(run_report.finished_line(records, seconds))
    summary = metadata.run_summary(store, metadata.RunRecord(run_id="", started=started, executions=records))
    print()
    print("\n".join(run_report.summary_lines(name, summary, str(log_path), _program())))
    return OK


def _program() -> str:
    """How the user ran `gemstone` (e.g. .venv/bin/gemstone), for the commands the summary suggests."""
    from gemstone.apps import run_report

    return run_report.shown(sys.argv[0]) if os.path.basename(sys.argv[0]) == "gemstone" else "gemstone"
