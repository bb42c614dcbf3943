"""The tfx CLI as a child process: create or update, its output into the log, and stop() ends every process it
started (a stand-in for the tfx CLI: the real one, on a real pipeline, is tests/test_pipeline_e2e.py's)."""
import os
import signal
import time

from gemstone.apps import tfx_cli


def test_a_pipeline_is_created_the_first_time_and_updated_after(tmp_path):
    environ = {"LOCAL_HOME": str(tmp_path)}
    assert tfx_cli.register_command("demo", environ)[1:3] == ["pipeline", "create"]
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "pipeline_args.json").write_text("{}")
    assert tfx_cli.register_command("demo", environ)[1:3] == ["pipeline", "update"]
    assert not tfx_cli.registered("demo", {"HOME": str(tmp_path)})  # tfx's default: ~/tfx/local


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_stop_ends_the_child_and_what_it_started_and_its_output_is_in_the_log(tmp_path, monkeypatch):
    script, pid_file = tmp_path / "run.sh", tmp_path / "grandchild.pid"
    # A child that starts a grandchild which ignores Ctrl-C, as a worker busy in C++ may: SIGTERM ends it.
    script.write_text(f"echo started\n(trap '' INT; sleep 300) &\necho $! > {pid_file}\nwait\n")
    monkeypatch.setattr(tfx_cli, "STOP_SIGNALS", ((signal.SIGINT, 0.5), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)))
    with open(tmp_path / "run.log", "a") as log:
        process = tfx_cli.start(["sh", str(script)], log, {"PATH": os.environ["PATH"]})
        deadline = time.monotonic() + 10
        while not (pid_file.is_file() and pid_file.read_text().strip()) and time.monotonic() < deadline:
            time.sleep(0.05)
        grandchild = int(pid_file.read_text())
        assert _alive(grandchild)
        tfx_cli.stop(process)
    assert process.poll() is not None and not _alive(grandchild)
    assert (tmp_path / "run.log").read_text().splitlines() == [f"$ sh {script}", "started"]
