"""`gemstone serve`: TF Serving's REST API, 4xx for garbage, 401 without the key, new pushes picked up, :explain,
metadata and gallery, Prometheus metrics, the PredictionLog, and a server that keeps answering under load and abuse."""
import base64
import http.client
import io
import json
import shutil
import socket
import struct
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
from PIL import Image

from gemstone import contract, signatures
from gemstone.apps import prediction_log, serve

KEY = "s3cret"
GALLERY = {"Emerald": ["005_0.jpg", "005_1.jpg"], "Ruby": ["006_0.jpg"]}
CREATED = "2026-11-30T08:15:00+00:00"


def add_gallery_and_card(version_dir, data):
    """What the Trainer and the ModelCard write beside a pushed model: thumbnails with gallery.json, a card."""
    folder = version_dir / contract.MODEL_ASSETS_DIR / contract.GALLERY_DIR
    folder.mkdir(parents=True, exist_ok=True)
    for variety, names in GALLERY.items():
        for name, photo in zip(names, sorted((data / "images" / variety).glob("*.jpg"))):
            shutil.copy(photo, folder / name)
    (folder / contract.GALLERY_FILE).write_text(json.dumps(GALLERY))
    (version_dir / contract.MODEL_CARD_JSON_FILE).write_text(json.dumps({"created": CREATED}))


def _start(httpd):
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{httpd.server_address[1]}"


@pytest.fixture(scope="module")
def server(contract_model, demo_photos, tmp_path_factory):
    data = demo_photos
    base = tmp_path_factory.mktemp("serving") / "gems"
    shutil.copytree(contract_model / "1", base / "1")
    add_gallery_and_card(base / "1", data)
    log_dir = tmp_path_factory.mktemp("logs")
    httpd = serve.make_server(str(base), port=0, api_key=KEY, log_dir=str(log_dir))
    yield _start(httpd), base, data, log_dir
    httpd.shutdown()
    httpd.server_close()


def _call(url, body=None, key=KEY, header="Authorization", raw=None, method=None, full=False):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(url, data=data, method=method or ("POST" if data is not None else "GET"))
    if key:
        request.add_header(header, f"Bearer {key}" if header == "Authorization" else key)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status, headers, content = response.status, response.headers, response.read()
    except urllib.error.HTTPError as e:
        status, headers, content = e.code, e.headers, e.read()
    if full:
        return status, headers, content
    return status, json.loads(content)


def _photo(data, variety="Emerald"):
    return base64.b64encode(next((data / "images" / variety).glob("*.jpg")).read_bytes()).decode()


def test_status_like_tf_serving(server):
    url, _, _, _ = server
    status, body = _call(f"{url}/v1/models/gems")
    assert status == 200
    assert body["model_version_status"][0] == {"version": "1", "state": "AVAILABLE",
                                               "status": {"error_code": "OK", "error_message": ""}}
    assert _call(f"{url}/v1/models/gems/versions/7")[0] == 404


def test_predicts_a_real_photo_and_logs_it(server):
    url, _, data, log_dir = server
    status, body = _call(f"{url}/v1/models/gems:predict", {"instances": [{"b64": _photo(data)}] * 2})
    assert status == 200 and len(body["predictions"]) == 2
    prediction = body["predictions"][0]
    assert prediction["label"] == prediction["top_k_labels"][0]
    assert abs(sum(prediction["probabilities"]) - 1) < 1e-4 and len(prediction["top_k_scores"]) == 3
    assert isinstance(prediction["needs_review"], bool)
    import tensorflow as tf

    logged = [log for log in prediction_log.read(log_dir)
              if len(log.predict_log.request.inputs[contract.SERVING_INPUT].string_val) == 2]
    request, response = logged[-1].predict_log.request, logged[-1].predict_log.response
    assert request.model_spec.name == "gems" and request.model_spec.version.value == 1
    assert request.model_spec.signature_name == contract.SERVING_SIGNATURE
    with Image.open(io.BytesIO(request.inputs[contract.SERVING_INPUT].string_val[0])) as logged_photo:
        assert logged_photo.size == (64, 64)  # the photo the model was given
    assert set(contract.PREDICTION_OUTPUTS) <= set(response.outputs)
    assert tf.make_ndarray(response.outputs["label"]).tolist() == [prediction["label"].encode()] * 2
    # The x-api-key header works as well, and the versioned path too.
    status, _ = _call(f"{url}/v1/models/gems/versions/1:predict", {"instances": [{"b64": _photo(data)}]},
                      header="x-api-key")
    assert status == 200


@pytest.mark.parametrize("raw, expected", [
    (b"this is not json", "not JSON"),
    (json.dumps({"instances": []}).encode(), "expected"),
    (json.dumps({"instances": [{"b64": "%%%"}]}).encode(), "not valid base64"),
    (json.dumps({"instances": [{"b64": base64.b64encode(b"plain text").decode()}]}).encode(), "not_an_image"),
])
@pytest.mark.parametrize("verb", serve.VERBS)
def test_garbage_gets_a_4xx_with_a_message(server, raw, expected, verb):
    url, _, _, _ = server
    status, body = _call(f"{url}/v1/models/gems:{verb}", raw=raw)
    assert 400 <= status < 500 and expected in body["error"]


@pytest.mark.parametrize("verb", serve.VERBS)
def test_oversized_request_is_refused_before_it_is_read(server, verb):
    url, _, _, _ = server
    connection = http.client.HTTPConnection(urllib.parse.urlparse(url).netloc, timeout=30)
    connection.putrequest("POST", f"/v1/models/gems:{verb}")
    connection.putheader("Authorization", f"Bearer {KEY}")
    connection.putheader("Content-Length", str(serve.MAX_BODY_BYTES + 1))
    connection.endheaders()  # the body is never sent: the server answers from the headers
    response = connection.getresponse()
    assert response.status == 413 and "MB" in json.loads(response.read())["error"]


@pytest.mark.parametrize("length", ["-1", "many"])
def test_a_length_that_is_no_number_of_bytes_is_refused_at_once(server, length):
    url, _, _, _ = server
    connection = http.client.HTTPConnection(urllib.parse.urlparse(url).netloc, timeout=30)
    connection.putrequest("POST", "/v1/models/gems:predict")
    connection.putheader("Authorization", f"Bearer {KEY}")
    connection.putheader("Content-Length", length)
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == 400 and "Content-Length" in json.loads(response.read())["error"]


def test_key_is_required(server):
    url, _, data, _ = server
    assert _call(f"{url}/v1/models/gems", key=None)[0] == 401
    assert _call(f"{url}/v1/models/gems:predict", {"instances": [{"b64": _photo(data)}]}, key="wrong")[0] == 401
    for path in (":explain", "/metadata", "/gallery/005_0.jpg", "/../../monitoring/prometheus/metrics"):
        assert _call(f"{url}/v1/models/gems{path}", {"instances": [{"b64": _photo(data)}]}, key=None)[0] in (401, 404)
    status, headers, _ = _call(f"{url}/v1/models/gems:explain", {"instances": [{"b64": _photo(data)}]}, key=None,
                               full=True)
    assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
    assert _call(f"{url}{serve.METRICS_PATH}", key=None, full=True)[0] == 401


def test_upload_page_needs_no_key_and_nothing_but_this_server(server):
    url, _, _, _ = server
    with urllib.request.urlopen(f"{url}/") as response:
        page = response.read().decode()
        policy = response.headers["Content-Security-Policy"]
    assert '"/v1/models/gems"' in page
    assert 'MODEL + ":" + verb' in page and "needs expert review" in page and 'id="key"' in page
    assert "sessionStorage" in page and "http://" not in page and "https://" not in page
    assert "connect-src 'self'" in policy and "default-src 'none'" in policy


def test_compact_output_on_request(server):
    url, _, data, _ = server
    status, body = _call(f"{url}/v1/models/gems:predict?output=compact", {"instances": [{"b64": _photo(data)}]})
    prediction = body["predictions"][0]
    assert status == 200 and set(prediction) == {"label", "confidence", "top_k", "family", "family_confidence",
                                                 "needs_review", "known", "novelty", "review_reason"}
    assert prediction["top_k"][0]["label"] == prediction["label"] and len(prediction["top_k"]) == 3
    assert _call(f"{url}/v1/models/gems:predict?output=tiny", {"instances": [{"b64": _photo(data)}]})[0] == 400


def test_explain_answers_the_records_and_an_overlay_per_photo(server):
    url, _, data, _ = server
    photos = [_photo(data, "Emerald"), _photo(data, "Ruby")]
    status, body = _call(f"{url}/v1/models/gems:explain", {"instances": [{"b64": p} for p in photos]})
    assert status == 200 and body["model_version"] == "1" and len(body["predictions"]) == 2
    _, predicted = _call(f"{url}/v1/models/gems:predict?output=compact", {"instances": [{"b64": p} for p in photos]})
    for explained, prediction in zip(body["predictions"], predicted["predictions"]):
        assert {k: explained[k] for k in prediction} == prediction  # the same answer as :predict
        assert explained["verdict"] == contract.verdict(prediction) and explained["review"]
        with Image.open(io.BytesIO(base64.b64decode(explained["overlay_png"]["b64"]))) as picture:
            assert picture.format == "PNG" and picture.mode == "RGB" and picture.size == (64, 64)
        with Image.open(io.BytesIO(base64.b64decode(explained[contract.HEATMAP_OUTPUT]["b64"]))) as heatmap:
            assert heatmap.mode == "L" and heatmap.width == heatmap.height  # square photos, square maps
    status, body = _call(f"{url}/v1/models/gems/versions/1:explain?output=full", {"instances": [{"b64": photos[0]}]})
    assert status == 200 and len(body["predictions"][0]["probabilities"]) == len(body["predictions"][0]["classes"])


def test_metadata_like_tf_serving_with_what_the_page_needs(server):
    url, _, data, _ = server
    status, body = _call(f"{url}/v1/models/gems/metadata")
    assert status == 200 and body["model_spec"] == {"name": "gems", "signature_name": "", "version": "1"}
    signatures = body["metadata"]["signature_def"]["signature_def"]
    assert signatures[contract.SERVING_SIGNATURE]["inputs"][contract.SERVING_INPUT]["dtype"] == "DT_STRING"
    assert set(contract.PREDICTION_OUTPUTS) <= set(signatures[contract.SERVING_SIGNATURE]["outputs"])
    assert contract.HEATMAP_OUTPUT in signatures[contract.EXPLAIN_SIGNATURE]["outputs"]
    page = body["gemstone"]
    _, predicted = _call(f"{url}/v1/models/gems:predict", {"instances": [{"b64": _photo(data)}]})
    assert page["classes"] == predicted["predictions"][0]["classes"] and "Emerald" in page["classes"]
    assert page["model"] == "gems" and page["version"] == "1" and page["date"] == CREATED and page["explain"]
    assert sorted(page["gallery"]) == sorted(GALLERY)
    for thumbnail in page["gallery"]["Emerald"]:
        status, headers, content = _call(f"{url}{thumbnail}", full=True)
        assert status == 200 and headers["Content-Type"] == "image/jpeg" and content[:2] == b"\xff\xd8"
    assert _call(f"{url}/v1/models/gems/versions/1/metadata")[1]["model_spec"]["version"] == "1"
    assert _call(f"{url}/v1/models/gems/versions/7/metadata")[0] == 404


@pytest.mark.parametrize("name", ["../../saved_model.pb", "..%2F..%2Fsaved_model.pb", "..", ".hidden.jpg",
                                  "nope.jpg", "a/b.jpg"])
def test_the_gallery_gives_its_own_files_only(server, name):
    url, _, _, _ = server
    status, body = _call(f"{url}/v1/models/gems/gallery/{name}")
    assert status == 404 and "error" in body


def _samples(url):
    from prometheus_client.parser import text_string_to_metric_families

    status, headers, content = _call(f"{url}{serve.METRICS_PATH}", full=True)
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(content.decode()) for sample in family.samples}


def test_metrics_count_requests_answers_and_reviews(server):
    url, _, data, _ = server
    before = _samples(url)
    _, body = _call(f"{url}/v1/models/gems:predict?output=compact", {"instances": [{"b64": _photo(data)}] * 3})
    _call(f"{url}/v1/models/gems:predict", {"instances": [{"b64": _photo(data)}]}, key="wrong")
    after = _samples(url)

    def grew(name, **labels):
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0) - before.get(key, 0)

    version = body["model_version"]
    assert grew("gemstone_requests_total", model="gems", version=version, verb="predict", status="200") == 1
    assert grew("gemstone_requests_total", model="gems", version="", verb="predict", status="401") == 1
    assert grew("gemstone_request_latency_seconds_count", model="gems", verb="predict") == 2
    label = body["predictions"][0]["label"]
    assert grew("gemstone_answers_total", model="gems", version=version, variety=label) == 3
    reason = body["predictions"][0]["review_reason"]
    if reason:  # the untrained model's answers usually need review
        assert grew("gemstone_needs_review_total", model="gems", version=version, reason=reason) == 3


@pytest.mark.parametrize("method, status", [("PUT", 405), ("DELETE", 405), ("PATCH", 405), ("BREW", 501)])
def test_unsupported_methods_get_json(server, method, status):
    url, _, _, _ = server
    connection = http.client.HTTPConnection(urllib.parse.urlparse(url).netloc, timeout=30)
    connection.request(method, "/v1/models/gems", headers={"Authorization": f"Bearer {KEY}"})
    response = connection.getresponse()
    assert response.status == status and response.headers["Content-Type"] == "application/json"
    assert json.loads(response.read())["error"]


def test_a_slow_client_holds_up_no_other(server):
    url, _, data, _ = server
    slow = socket.create_connection(urllib.parse.urlparse(url).netloc.split(":"), timeout=30)
    try:  # headers and half a body, then nothing
        slow.sendall(f"POST /v1/models/gems:predict HTTP/1.1\r\nAuthorization: Bearer {KEY}\r\n"
                     f"Content-Length: 100000\r\n\r\n{{\"instances\": [".encode())
        started = time.perf_counter()
        assert _call(f"{url}/v1/models/gems:predict", {"instances": [{"b64": _photo(data)}]})[0] == 200
        assert time.perf_counter() - started < 30
    finally:
        slow.close()


def test_a_burst_of_connections_is_taken_at_once(server):
    """64 clients connecting together: none waits for a dropped SYN to be sent again (1 s), as with a backlog of 5."""
    url, _, _, _ = server
    address = urllib.parse.urlparse(url).netloc.split(":")
    barrier, waits, sockets = threading.Barrier(64), [], []

    def connect():
        barrier.wait()
        started = time.perf_counter()
        sockets.append(socket.create_connection(address, timeout=30))
        waits.append(time.perf_counter() - started)

    threads = [threading.Thread(target=connect) for _ in range(64)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for connection in sockets:
        connection.close()
    assert len(waits) == 64 and max(waits) < 0.9, sorted(waits)[-5:]


class _Held:
    """Holds the model's calls until released, saying when one has begun (to test what happens meanwhile)."""

    def __init__(self, monkeypatch):
        self.begun, self.release = threading.Event(), threading.Event()
        original = signatures.call

        def held(*args, **kwargs):
            self.begun.set()
            assert self.release.wait(60)
            return original(*args, **kwargs)

        monkeypatch.setattr(signatures, "call", held)


@pytest.fixture
def small_server(contract_model, tmp_path):
    """A server of its own, working on at most one request at once."""
    httpd = serve.make_server(str(contract_model), port=0, log_dir=str(tmp_path / "logs"), max_in_flight=1)
    yield _start(httpd), httpd
    httpd.shutdown()
    httpd.server_close()


def test_past_the_bound_the_answer_is_503_with_retry_after(small_server, demo_photos, monkeypatch):
    url, httpd = small_server
    held = _Held(monkeypatch)
    body = {"instances": [{"b64": _photo(demo_photos)}]}
    first = {}
    worker = threading.Thread(target=lambda: first.update(answer=_call(f"{url}/v1/models/model:predict", body)))
    worker.start()
    assert held.begun.wait(60)
    status, headers, content = _call(f"{url}/v1/models/model:explain", body, full=True)
    assert status == 503 and headers["Retry-After"] == str(serve.RETRY_AFTER_SECONDS)
    assert "busy" in json.loads(content)["error"]
    held.release.set()
    worker.join(60)
    assert first["answer"][0] == 200
    assert _call(f"{url}/v1/models/model:predict", body)[0] == 200  # the slot is free again
    assert httpd.metrics.rejected_busy._value.get() == 1


def test_a_client_gone_mid_answer_is_counted_without_a_traceback(small_server, demo_photos, monkeypatch, capfd):
    url, httpd = small_server
    held = _Held(monkeypatch)
    body = json.dumps({"instances": [{"b64": _photo(demo_photos)}] * 8}).encode()
    client = socket.create_connection(urllib.parse.urlparse(url).netloc.split(":"), timeout=30)
    client.sendall(b"POST /v1/models/model:predict HTTP/1.1\r\nContent-Length: " + str(len(body)).encode()
                   + b"\r\n\r\n" + body)
    assert held.begun.wait(60)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()  # a reset: the answer has nowhere to go
    held.release.set()
    for _ in range(200):
        if httpd.metrics.disconnects._value.get() >= 1:
            break
        time.sleep(0.05)
    assert httpd.metrics.disconnects._value.get() == 1
    assert _call(f"{url}/v1/models/model:predict", json.loads(body))[0] == 200  # still answering
    captured = capfd.readouterr()
    assert "Traceback" not in captured.err and "BrokenPipe" not in captured.err and "ConnectionReset" not in captured.err


def test_a_model_without_the_explain_signature_answers_501_and_says_so(contract_model, demo_photos, tmp_path):
    import tensorflow as tf

    loaded = tf.saved_model.load(str(contract_model / "1"))
    tf.saved_model.save(loaded, str(tmp_path / "plain" / "1"),
                        signatures={contract.SERVING_SIGNATURE: loaded.signatures[contract.SERVING_SIGNATURE]})
    notices = []
    httpd = serve.make_server(str(tmp_path / "plain"), port=0, notice=notices.append)
    url = _start(httpd)
    try:
        body = {"instances": [{"b64": _photo(demo_photos)}]}
        status, answer = _call(f"{url}/v1/models/plain:explain", body, key=None)
        assert status == 501 and "without the `explain` signature" in answer["error"]
        assert _call(f"{url}/v1/models/plain:predict", body, key=None)[0] == 200
        assert _call(f"{url}/v1/models/plain/metadata", key=None)[1]["gemstone"]["explain"] is False
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert any("without the `explain` signature" in notice for notice in notices)


def test_a_new_push_is_served_without_restart(server):
    import time

    url, base, data, _ = server
    shutil.copytree(base / "1", base / "2")
    status, body = _call(f"{url}/v1/models/gems")  # notices the push: LOADING until it is ready
    assert status == 200 and body["model_version_status"][0]["version"] == "2"
    assert body["model_version_status"][0]["state"] in ("LOADING", "AVAILABLE")
    for _ in range(120):
        if _call(f"{url}/v1/models/gems")[1]["model_version_status"][0]["state"] == "AVAILABLE":
            break
        time.sleep(0.5)
    assert _call(f"{url}/v1/models/gems")[1]["model_version_status"][0]["state"] == "AVAILABLE"
    status, body = _call(f"{url}/v1/models/gems:predict", {"instances": [{"b64": _photo(data)}]})
    assert status == 200 and body["model_version"] == "2"


def test_a_model_exported_before_the_open_set_outputs_serves_with_a_one_line_notice(demo_photos, tmp_path):
    from tests import contract_model as builder

    base = tmp_path / "old"
    builder.build(demo_photos, base, open_set=False)
    notices = []
    httpd = serve.make_server(str(base), port=0, notice=notices.append)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        status, body = _call(f"http://127.0.0.1:{httpd.server_address[1]}/v1/models/old:predict",
                             {"instances": [{"b64": _photo(demo_photos)}]}, key=None)
    finally:
        httpd.shutdown()
    assert status == 200 and "known" not in body["predictions"][0] and "label" in body["predictions"][0]
    [notice] = notices
    assert notice.startswith("note: version 1 was exported before the open-set outputs") and "\n" not in notice
