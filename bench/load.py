"""`gemstone serve` under load, on loopback: throughput, latency, errors and memory, 1 to 16 clients at once.

Starts `gemstone serve` as people do (a process of its own) on the newest pushed demo model
(BENCH_MODEL: another base or version folder), warms it up, then sends `:predict` requests of
one photo each from 1, 4 and 16 concurrent clients, each level bounded by BENCH_REQUESTS
requests (default 200) and BENCH_SECONDS seconds (default 60): requests per second, p50 and
p99 latency, errors (target: none), and the server's resident memory after warm-up and at the
end (target: grows under 10 %). Then `:explain` from one client, BENCH_EXPLAIN_REQUESTS
requests (default 30), its p50 beside `:predict`'s (target: at most 1 s a photo).

    python -m bench load
"""
from __future__ import annotations

import base64
import http.client
import json
import math
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from bench import common
from gemstone import paths

PIPELINE_NAME = "gemstone-demo"
LEVELS = (1, 4, 16)
REQUESTS = int(os.environ.get("BENCH_REQUESTS", "200"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "60"))
EXPLAIN_REQUESTS = int(os.environ.get("BENCH_EXPLAIN_REQUESTS", "30"))
RSS_GROWTH_LIMIT, EXPLAIN_TARGET_SECONDS = 0.10, 1.0


def percentile(values: Sequence[float], share: float) -> float:
    """The value `share` of the way up the sorted values (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))]


def rss_mb(pid: int) -> float:
    """Resident memory of a process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise ValueError(f"no VmRSS for process {pid}")


def post(address: tuple, path: str, body: bytes, timeout: float = 120) -> int:
    """One request on a connection of its own (the server speaks HTTP/1.0); its status."""
    connection = http.client.HTTPConnection(*address, timeout=timeout)
    try:
        connection.request("POST", path, body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def load(address: tuple, path: str, bodies: Sequence[bytes], clients: int, requests: int,
         seconds: float) -> Dict[str, object]:
    """`clients` threads send `requests` requests in all (stopping at `seconds`): throughput, latency, errors."""
    latencies: List[float] = []
    errors: List[str] = []
    lock = threading.Lock()
    sent = [0]
    deadline = time.perf_counter() + seconds

    def client():
        while time.perf_counter() < deadline:
            with lock:
                if sent[0] >= requests:
                    return
                index = sent[0]
                sent[0] += 1
            started = time.perf_counter()
            try:
                status = post(address, path, bodies[index % len(bodies)])
                failure = None if status == 200 else f"HTTP {status}"
            except OSError as e:
                failure = type(e).__name__
            with lock:
                latencies.append(time.perf_counter() - started)
                if failure:
                    errors.append(failure)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    return {"clients": clients, "requests": len(latencies), "requests_per_s": round(len(latencies) / wall, 2),
            "p50_ms": round(1000 * statistics.median(latencies)),
            "p99_ms": round(1000 * percentile(latencies, 0.99)), "errors": len(errors),
            "error_kinds": ", ".join(sorted(set(errors)))}


def _photos() -> List[Path]:
    photos = sorted(paths.demo_data_dir().rglob("*.jpg"))
    if not photos:
        from gemstone import demo_data

        folder = demo_data.make_demo_data(tempfile.mkdtemp(), per_class=5, seed=3).out_dir
        photos = sorted(Path(folder).rglob("*.jpg"))
    return photos


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(model: Path, port: int, log_dir: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "GEMSTONE_API_KEY"}
    server = subprocess.Popen([sys.executable, "-m", "gemstone.apps.cli", "serve", "--model", str(model), "--port",
                               str(port), "--log-dir", log_dir, "--max-in-flight", str(2 * max(LEVELS))],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = server.stdout.readline()  # "Serving ..." once the model is loaded
    if not line.startswith("Serving"):
        server.kill()
        raise RuntimeError(f"gemstone serve did not start: {line}{server.stderr.read()[-2000:]}")
    return server


def measure(model: Path, levels: Sequence[int] = LEVELS, requests: int = REQUESTS, seconds: float = SECONDS,
            explain_requests: int = EXPLAIN_REQUESTS) -> List[Dict[str, object]]:
    base = model.parent if paths.is_version_dir(model) else model
    version = paths.latest_version_dir(base) if not paths.is_version_dir(model) else model
    port, log_dir = _free_port(), tempfile.mkdtemp(prefix="bench-load-")
    bodies = [json.dumps({"instances": [{"b64": base64.b64encode(p.read_bytes()).decode()}]}).encode()
              for p in _photos()]
    address, prefix = ("127.0.0.1", port), f"/v1/models/{base.name}"
    server = _start_server(model, port, log_dir)
    try:
        has_explain = post(address, f"{prefix}:explain", bodies[0]) != 501
        load(address, f"{prefix}:predict", bodies, 4, 40, seconds)  # warm-up: every code path traced
        if has_explain:
            load(address, f"{prefix}:explain", bodies, 2, 6, seconds)
        warm = rss_mb(server.pid)
        rows = []
        for clients in levels:
            row = {"verb": ":predict", **load(address, f"{prefix}:predict", bodies, clients, requests, seconds)}
            row["rss_mb"] = round(rss_mb(server.pid), 1)
            rows.append(row)
        if has_explain:
            row = {"verb": ":explain", **load(address, f"{prefix}:explain", bodies, 1, explain_requests, seconds)}
            row["rss_mb"] = round(rss_mb(server.pid), 1)
            rows.append(row)
        end = rss_mb(server.pid)
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.communicate()
    for row in rows:
        row.update(model=f"{base.name}/{version.name}", rss_after_warmup_mb=round(warm, 1),
                   rss_growth_at_end=f"{(end - warm) / warm:+.1%}")
    if not has_explain:
        rows.append({"verb": ":explain", "model": f"{base.name}/{version.name}",
                     "error_kinds": "not measured: the model was exported without the explain signature"})
    return rows


def verdicts(rows: List[Dict[str, object]]) -> str:
    """The targets, met or not, in words."""
    predict = [r for r in rows if r.get("verb") == ":predict"]
    explain = next((r for r in rows if r.get("verb") == ":explain" and "p50_ms" in r), None)
    warm = predict[0]["rss_after_warmup_mb"]
    growth = (max(r["rss_mb"] for r in rows if "rss_mb" in r) - warm) / warm
    lines = [f"errors: {sum(r['errors'] for r in predict)} (target 0)",
             f"server memory: {warm:.0f} MB after warm-up, at most {growth:+.1%} since (target under "
             f"{RSS_GROWTH_LIMIT:.0%})"]
    if explain:
        lines.append(f":explain p50 {explain['p50_ms'] / 1000:.2f} s a photo against :predict's "
                     f"{predict[0]['p50_ms'] / 1000:.3f} s, one client (target at most {EXPLAIN_TARGET_SECONDS:g} s)")
    return "; ".join(lines)


def run() -> Optional[Path]:
    model = Path(os.environ.get("BENCH_MODEL") or paths.serving_dir(PIPELINE_NAME))
    if not (paths.is_version_dir(model) or paths.latest_version_dir(model)):
        print(f"load: skipped, no pushed model at {model} (`make demo` first, or BENCH_MODEL=...)")
        return None
    rows = measure(model)
    notes = (f"`gemstone serve` on loopback, one photo a request, {os.cpu_count()} cores; each level at most "
             f"{REQUESTS} requests and {SECONDS:g} s. " + verdicts(rows))
    return common.record("load", rows, notes)
