"""How long the command line takes to answer a mistake: seconds to a one-line error, and whether TensorFlow loaded.

Each mistake of issue #18 is made in a scratch GEMSTONE_HOME and timed as a user
meets it (`python -m gemstone.apps.cli ...`, a new process each time). The target:
under 3 s, because the mistake is seen before TensorFlow (5-15 s to import here) or
Beam loads. With BENCH_BASELINE=/path/to/another/checkout the same mistakes are
timed on that checkout's code too, side by side (e.g. the code before the issue).

    python -m bench cli_latency
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import common

REPO = Path(__file__).resolve().parents[1]
TARGET_SECONDS = 3.0
PROBE = ("import json, sys; sys.argv = ['gemstone'] + json.loads(sys.argv[1]); from gemstone.apps import cli\n"
         "try:\n    code = cli.main()\nexcept SystemExit as e:\n    code = e.code\n"
         "print(json.dumps({'code': code, 'tensorflow': 'tensorflow' in sys.modules}))")


def _scratch(home: Path) -> dict:
    """The inputs the mistakes are made with: an empty folder, photos without class folders, a bad manifest..."""
    from PIL import Image

    (home / "empty").mkdir()
    (home / "flat").mkdir()
    for i, colour in enumerate(((200, 20, 40), (20, 60, 200), (30, 160, 60))):
        Image.new("RGB", (96, 96), colour).save(home / "flat" / f"stone_{i}.jpg")
    (home / "bad-headers.csv").write_text("file,class\nflat/stone_0.jpg,Ruby\n")
    (home / "spec.json").write_text(json.dumps({"pipelineSpec": {"pipelineInfo": {"name": "gem88"}}}))
    (home / "metadata" / "gem88").mkdir(parents=True)
    (home / "model" / "1").mkdir(parents=True)
    (home / "model" / "1" / "saved_model.pb").write_bytes(b"")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return {"home": str(home), "port": port}


MISTAKES = [
    ("inspect-data on a folder that does not exist", ["inspect-data", "{home}/nope"]),
    ("inspect-data on an empty folder", ["inspect-data", "{home}/empty", "--output", "{home}/r"]),
    ("inspect-data on photos without class folders", ["inspect-data", "{home}/flat", "--output", "{home}/r"]),
    ("inspect-data on a manifest with wrong headers", ["inspect-data", "{home}/bad-headers.csv"]),
    ("batch-infer on an empty folder", ["batch-infer", "--model", "{home}/model", "--input", "{home}/empty",
                                        "--output", "{home}/o"]),
    ("batch-infer with --batch_size (a Beam-style typo)", ["batch-infer", "--model", "{home}/model", "--input",
                                                          "{home}/flat", "--output", "{home}/o", "--batch_size", "8"]),
    ("serve a mistyped model folder", ["serve", "--model", "{home}/serving/gem89"]),
    ("report on a mistyped pipeline", ["report", "--pipeline-name", "gem99"]),
    ("where on a mistyped pipeline", ["where", "--pipeline-name", "gem99"]),
    ("drift on a log folder that does not exist", ["drift", "--logs", "{home}/nope"]),
    ("kubeflow compile without its settings", ["kubeflow", "compile", "--output", "{home}/k.json"]),
    ("kubeflow schedule to an unreachable endpoint", ["kubeflow", "schedule", "--endpoint", "http://127.0.0.1:{port}",
                                                      "--cron", "0 2 * * *", "--package", "{home}/spec.json"]),
]


def _time(checkout: Path, home: Path, args, timeout: float = 120) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEMSTONE_")}
    env.update(PYTHONPATH=str(checkout), GEMSTONE_HOME=str(home))
    start = time.perf_counter()
    try:
        result = subprocess.run([sys.executable, "-c", PROBE, json.dumps(args)], env=env, capture_output=True,
                                text=True, timeout=timeout, cwd=home)
    except subprocess.TimeoutExpired:  # e.g. a server that started on nothing
        return {"seconds": f"> {timeout:g}", "exit": "still running", "tensorflow": None, "stderr_lines": None}
    seconds = time.perf_counter() - start
    try:
        probe = json.loads(result.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        probe = {"code": result.returncode, "tensorflow": None}
    return {"seconds": round(seconds, 2), "exit": probe["code"], "tensorflow": probe["tensorflow"],
            "stderr_lines": len(result.stderr.splitlines())}


def run() -> Path:
    baseline = os.environ.get("BENCH_BASELINE")
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        home = Path(scratch)
        values = _scratch(home)
        for name, template in MISTAKES:
            args = [a.format(**values) for a in template]
            now = _time(REPO, home, args)
            row = {"mistake": name, "seconds": now["seconds"], "exit": now["exit"],
                   "TensorFlow loaded": now["tensorflow"], "stderr lines": now["stderr_lines"],
                   f"under {TARGET_SECONDS:g} s": now["seconds"] < TARGET_SECONDS}
            if baseline:
                before = _time(Path(baseline), home, args, timeout=60)
                row.update({"baseline seconds": before["seconds"], "baseline exit": before["exit"],
                            "baseline stderr lines": before["stderr_lines"]})
            rows.append(row)
    notes = (f"{sys.executable}, a new process per command (Python start-up and the CLI's imports included). "
             "The model folder is a placeholder (an empty saved_model.pb): enough for the checks, which answer "
             "first; code that loads the model fails there instead"
             + (f". Baseline: the code at {baseline}" if baseline else ""))
    return common.record("cli_latency", rows, notes)


if __name__ == "__main__":
    run()
