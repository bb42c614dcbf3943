"""`gemstone run-pipeline` around a stand-in for the tfx CLI: the log file, a failure's report and exit status,
Ctrl-C. (On a real pipeline, through the real tfx CLI: tests/test_pipeline_e2e.py.)"""
import argparse
import os
import signal
import time

import pytest

from gemstone.apps import tfx_cli
from gemstone.apps.commands import FAILED, INTERRUPTED, run_pipeline

FAKE_TFX = """#!/bin/sh
case "$1 $2" in
  "pipeline create") echo "Pipeline created"; exit 0 ;;
  "run create")
    echo "INFO:absl:Component ImageExampleGen is running."
    echo "INFO:absl:Component ImageExampleGen is finished."
    echo "INFO:absl:Component Trainer is running."
    {run}
esac
exit 2
"""


@pytest.fixture
def fake_tfx(tmp_path, monkeypatch):
    """fake_tfx(shell lines of `tfx run create` after the Trainer starts): the tfx CLI run-pipeline runs."""
    monkeypatch.setenv("GEMSTONE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LOCAL_HOME", str(tmp_path / "tfx-cli"))

    def make(run: str):
        script = tmp_path / "tfx"
        script.write_text(FAKE_TFX.replace("{run}", run))
        script.chmod(0o755)
        monkeypatch.setattr(tfx_cli, "TFX", str(script))

    return make


def _log(home):
    [log] = (home / "logs" / "demo").glob("*.log")
    return log


def test_a_failed_run_names_the_component_shows_the_end_of_the_log_and_exits_3(fake_tfx, tmp_path, capsys):
    fake_tfx('echo "Traceback (most recent call last):"; echo "ValueError: Batch size must be greater than zero"; '
             'exit 1')
    assert run_pipeline.run_pipeline(argparse.Namespace(pipeline_name="demo")) == FAILED
    out, err = capsys.readouterr()
    log = _log(tmp_path / "home")
    assert str(log) in out and "Pipeline created" in log.read_text()  # the tfx CLI's output: in the log only
    assert "Pipeline created" not in out + err
    assert err.startswith("FAILED at Trainer, after ")
    assert err.splitlines()[-1] == "    ValueError: Batch size must be greater than zero"
    assert "ImageExampleGen" not in err  # the end of the failing component's part of the log


def test_ctrl_c_stops_the_run_says_so_in_the_log_and_exits_130(fake_tfx, tmp_path, monkeypatch, capsys):
    pid_file = tmp_path / "pipeline.pid"
    fake_tfx(f"sleep 300 & echo $! > {pid_file}; wait")

    def interrupt(self):
        if pid_file.is_file() and pid_file.read_text().strip():
            raise KeyboardInterrupt  # Ctrl-C, while the pipeline's process runs

    monkeypatch.setattr(run_pipeline._Progress, "poll", interrupt)
    monkeypatch.setattr(run_pipeline, "POLL_SECONDS", 0.05)
    # sh's background job ignores Ctrl-C: SIGTERM ends it, after Ctrl-C's grace (shortened here).
    monkeypatch.setattr(tfx_cli, "STOP_SIGNALS", ((signal.SIGINT, 1.0), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)))
    assert run_pipeline.run_pipeline(argparse.Namespace(pipeline_name="demo")) == INTERRUPTED
    pipeline = int(pid_file.read_text())
    time.sleep(0.2)
    with pytest.raises(ProcessLookupError):
        os.kill(pipeline, 0)
    assert _log(tmp_path / "home").read_text().rstrip().endswith("interrupted (Ctrl-C): the run's processes were "
                                                                 "stopped")
    assert "Interrupted" in capsys.readouterr().err


def test_a_pipeline_name_is_needed(monkeypatch):
    from gemstone.apps import checks

    monkeypatch.delenv("GEMSTONE_PIPELINE_NAME", raising=False)
    with pytest.raises(checks.UsageError, match="--pipeline-name"):
        run_pipeline.run_pipeline(argparse.Namespace(pipeline_name=None))


def test_a_component_still_running_says_every_few_minutes_what_its_log_is_at(tmp_path, monkeypatch, capsys):
    from ml_metadata.proto import metadata_store_pb2

    from gemstone import paths
    from tests import mlmd_store

    monkeypatch.setenv("GEMSTONE_HOME", str(tmp_path))
    log = tmp_path / "run.log"
    log.write_text("INFO:absl:Component Trainer is running.\n"
                   "INFO:absl:Stage 1: the head on frozen features, 7368 samples, 50 epochs.\nEpoch 7/50\n")
    progress = run_pipeline._Progress("demo", log)
    mlmd = mlmd_store.store(paths.metadata_path("demo", str(tmp_path)))
    mlmd_store.execution(mlmd, "demo", "Transform", mlmd_store.COMPLETE)
    mlmd_store.execution(mlmd, "demo", "Trainer", metadata_store_pb2.Execution.RUNNING)

    monkeypatch.setattr(run_pipeline, "PROGRESS_SECONDS", 3600.0)
    progress.poll()
    [finished] = capsys.readouterr().out.splitlines()  # not the Trainer yet: it has not run that long
    assert finished.startswith("  Transform         ran in")

    monkeypatch.setattr(run_pipeline, "PROGRESS_SECONDS", 0.0)
    progress.poll()
    [running] = capsys.readouterr().out.splitlines()  # only the component still running, and once
    assert running.startswith("  Trainer           running for ")
    assert running.endswith(": Stage 1: the head on frozen features, 7368 samples, 50 epochs. (epoch 7 of 50)")
