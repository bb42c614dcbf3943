"""`gemstone serve`: TF Serving's REST API, 4xx for garbage, 401 without the key, new pushes picked up."""
import base64
import json
import shutil
import threading
import urllib.error
import urllib.request

import pytest

from gemstone import contract
from gemstone.apps import serve

KEY = "s3cret"


@pytest.fixture(scope="module")
def server(contract_model, demo_photos, tmp_path_factory):
    data = demo_photos
    base = tmp_path_factory.mktemp("serving") / "gems"
    shutil.copytree(contract_model / "1", base / "1")
    log_dir = tmp_path_factory.mktemp("logs")
    httpd = serve.make_server(str(base), port=0, api_key=KEY, log_dir=str(log_dir))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", base, data, log_dir
    httpd.shutdown()


def _call(url, body=None, key=KEY, header="Authorization", raw=None):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    if key:
        request.add_header(header, f"Bearer {key}" if header == "Authorization" else key)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _photo(data):
    return base64.b64encode(next((data / "images" / "Emerald").glob("*.jpg")).read_bytes()).decode()


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
    logged = [json.loads(line) for line in (log_dir / contract.PREDICTION_LOG_FILE).read_text().splitlines()]
    assert logged[-1]["label"] == prediction["label"] and "brightness" in logged[-1]["stats"]
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
def test_garbage_gets_a_4xx_with_a_message(server, raw, expected):
    url, _, _, _ = server
    status, body = _call(f"{url}/v1/models/gems:predict", raw=raw)
    assert 400 <= status < 500 and expected in body["error"]


def test_oversized_request_is_refused_before_it_is_read(server):
    import http.client
    import urllib.parse

    url, _, _, _ = server
    connection = http.client.HTTPConnection(urllib.parse.urlparse(url).netloc, timeout=30)
    connection.putrequest("POST", "/v1/models/gems:predict")
    connection.putheader("Authorization", f"Bearer {KEY}")
    connection.putheader("Content-Length", str(serve.MAX_BODY_BYTES + 1))
    connection.endheaders()  # the body is never sent: the server answers from the headers
    response = connection.getresponse()
    assert response.status == 413 and "MB" in json.loads(response.read())["error"]


def test_key_is_required(server):
    url, _, data, _ = server
    assert _call(f"{url}/v1/models/gems", key=None)[0] == 401
    assert _call(f"{url}/v1/models/gems:predict", {"instances": [{"b64": _photo(data)}]}, key="wrong")[0] == 401


def test_upload_page_needs_no_key(server):
    url, _, _, _ = server
    with urllib.request.urlopen(f"{url}/") as response:
        page = response.read().decode()
    assert "/v1/models/gems:predict" in page and "needs expert review" in page


def test_compact_output_on_request(server):
    url, _, data, _ = server
    status, body = _call(f"{url}/v1/models/gems:predict?output=compact", {"instances": [{"b64": _photo(data)}]})
    prediction = body["predictions"][0]
    assert status == 200 and set(prediction) == {"label", "confidence", "top_k", "family", "family_confidence",
                                                 "needs_review", "known", "novelty", "review_reason"}
    assert prediction["top_k"][0]["label"] == prediction["label"] and len(prediction["top_k"]) == 3
    assert _call(f"{url}/v1/models/gems:predict?output=tiny", {"instances": [{"b64": _photo(data)}]})[0] == 400


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
