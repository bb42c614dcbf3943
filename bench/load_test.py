"""The load benchmark's own parts: percentiles, memory, bounded concurrent clients, and a short run of it."""
import base64
import json
import os
import threading

import pytest

from bench import load
from gemstone.apps import serve


def test_percentiles_by_nearest_rank():
    values = list(range(1, 101))
    assert load.percentile(values, 0.5) == 50 and load.percentile(values, 0.99) == 99
    assert load.percentile(values, 1.0) == 100 and load.percentile([7.0], 0.99) == 7.0


def test_memory_of_a_process():
    assert 1 < load.rss_mb(os.getpid()) < 100_000


def test_clients_send_the_requests_asked_and_count_errors(contract_model, demo_photos, tmp_path):
    httpd = serve.make_server(str(contract_model), port=0, log_dir=str(tmp_path), max_in_flight=1)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        photo = next((demo_photos / "images" / "Ruby").glob("*.jpg")).read_bytes()
        good = json.dumps({"instances": [{"b64": base64.b64encode(photo).decode()}]}).encode()
        address = ("127.0.0.1", httpd.server_address[1])
        row = load.load(address, "/v1/models/model:predict", [good], clients=3, requests=9, seconds=120)
        assert row["requests"] == 9 and row["clients"] == 3 and row["p99_ms"] >= row["p50_ms"] > 0
        # With one request in flight at most, 3 clients at once are sometimes turned away: counted as errors.
        assert row["errors"] == 0 or "HTTP 503" in row["error_kinds"]
        row = load.load(address, "/v1/models/model:predict", [b"not json"], clients=2, requests=4, seconds=120)
        assert row["requests"] == 4 and row["errors"] == 4 and row["error_kinds"] in ("HTTP 400", "HTTP 400, HTTP 503")
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.mark.slow  # starts `gemstone serve` in a process of its own (TensorFlow: 10-25 s)
def test_a_short_run_on_the_contract_model(contract_model):
    rows = load.measure(contract_model, levels=(1, 2), requests=6, seconds=120, explain_requests=2)
    assert [(r["verb"], r["clients"]) for r in rows] == [(":predict", 1), (":predict", 2), (":explain", 1)]
    assert all(r["errors"] == 0 and r["requests"] for r in rows)
    assert all(r["rss_mb"] > r["rss_after_warmup_mb"] * 0.5 for r in rows)
    assert "errors: 0" in load.verdicts(rows)
