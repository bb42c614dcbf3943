"""A REST service speaking TF Serving's API, for the pushed model folder.

    GET  /v1/models/<name>[/versions/<v>]            model status
    POST /v1/models/<name>[/versions/<v>]:predict    {"instances": [{"b64": "..."}, ...]}
    GET  /                                           an upload page for people

Clients written for TF Serving work unchanged: each prediction carries every
output of the signature, the probabilities of all classes included. With
`?output=compact` (`:predict?output=compact`) it carries gemstone.contract's
compact record instead: label, confidence, top_k, family, needs_review (a
tenth of the size on 88 classes).

The newest numeric version under the base folder is loaded before the server
answers (status AVAILABLE means it is ready); a new push is noticed on the next
request, reported LOADING while it loads, and served without a restart. Every prediction is appended to a JSON Lines log that
`gemstone drift` reads. For production scale, serve the same folder with the
real TF Serving image (kubeflow/serving.yaml).
"""
from __future__ import annotations

import base64
import binascii
import hmac
import json
import threading
import time
import urllib.parse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from gemstone import contract, images, paths

MAX_BODY_BYTES = 20 * 1024 * 1024
MAX_INSTANCES = 64


class RequestError(Exception):
    def __init__(self, status: HTTPStatus, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def open_set_notice(version: str, model) -> Optional[str]:
    """One line when a loaded version has no open-set outputs (exported before them), else None."""
    if "known" in model.signatures[contract.SERVING_SIGNATURE].structured_outputs:
        return None
    return (f"note: version {version} was exported before the open-set outputs: its answers carry no `known` or "
            f"`review_reason` (it names a variety for any photo); retrain to get them")


class ModelRepository:
    """The versions under a TF Serving base folder; loads on demand, keeps the loaded ones.

    `notice`: called with one line when a version loaded needs saying something about (open_set_notice).
    """

    def __init__(self, base_path: str, notice=None):
        self.base = Path(base_path)
        self._loaded: Dict[str, Any] = {}
        self._loading: set = set()
        self._lock = threading.Lock()
        self._notice = notice or _log_warning

    def versions(self) -> List[str]:
        return [p.name for p in paths.versions(self.base)]

    def get(self, version: Optional[str] = None) -> Tuple[str, Any]:
        available = self.versions()
        if not available:
            raise RequestError(HTTPStatus.SERVICE_UNAVAILABLE, f"no model version under {self.base} yet")
        version = version or available[-1]
        if version not in available:
            raise RequestError(HTTPStatus.NOT_FOUND, f"version {version} not found; available: {available}")
        with self._lock:
            if version not in self._loaded:
                import tensorflow as tf

                self._loading.add(version)
                try:
                    self._loaded[version] = tf.saved_model.load(str(self.base / version))
                finally:
                    self._loading.discard(version)
                notice = open_set_notice(version, self._loaded[version])
                if notice:
                    self._notice(notice)
            return version, self._loaded[version]

    def state(self, version: str) -> str:
        """TF Serving's state of a version: AVAILABLE once loaded, LOADING while it loads, else START."""
        if version in self._loaded:
            return "AVAILABLE"
        return "LOADING" if version in self._loading else "START"

    def load_in_background(self, version: str) -> None:
        """Starts loading a version that is neither loaded nor loading (a new push), without waiting."""
        if version in self._loaded or version in self._loading:
            return
        self._loading.add(version)  # reported LOADING from now on; get() loads it under the lock
        threading.Thread(target=self._quiet_get, args=(version,), daemon=True).start()

    def _quiet_get(self, version: str) -> None:
        try:
            self.get(version)
        except Exception as e:  # noqa: BLE001 - a request for it will say what went wrong
            from absl import logging

            logging.warning("could not load version %s: %s", version, e)
            self._loading.discard(version)

    def release(self) -> None:
        """Lets go of the loaded models while TensorFlow is still loaded (at shutdown: see batch_infer)."""
        import gc

        with self._lock:
            self._loaded.clear()
        gc.collect()


def _log_warning(message: str) -> None:
    from absl import logging

    logging.warning(message)


def _decode_instances(body: bytes) -> List[images.LoadedImage]:
    try:
        request = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise RequestError(HTTPStatus.BAD_REQUEST, "body is not JSON") from None
    instances = request.get("instances") if isinstance(request, dict) else None
    if instances is None and isinstance(request, dict) and isinstance(request.get("inputs"), (list, dict)):
        instances = request["inputs"]  # TF Serving's columnar format
        instances = instances.get("images", instances) if isinstance(instances, dict) else instances
    if not isinstance(instances, list) or not instances:
        raise RequestError(HTTPStatus.BAD_REQUEST, 'expected {"instances": [{"b64": "<base64 image>"}, ...]}')
    if len(instances) > MAX_INSTANCES:
        raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"at most {MAX_INSTANCES} instances per request")
    photos = []
    for i, instance in enumerate(instances):
        if isinstance(instance, dict) and "images" in instance:
            instance = instance["images"]  # named-input form: {"images": {"b64": ...}}
        if not isinstance(instance, dict) or not isinstance(instance.get("b64"), str):
            raise RequestError(HTTPStatus.BAD_REQUEST, f'instance {i}: expected {{"b64": "<base64 image>"}}')
        try:
            raw = base64.b64decode(instance["b64"], validate=True)
        except (binascii.Error, ValueError):
            raise RequestError(HTTPStatus.BAD_REQUEST, f"instance {i}: not valid base64") from None
        try:
            photos.append(images.decode_image_bytes(raw))
        except images.ImageRejected as e:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"instance {i}: {e.reason}: {e.detail}") from None
    return photos


def _predict(model, photos: List[bytes]) -> List[Dict[str, Any]]:
    import tensorflow as tf

    outputs = model.signatures[contract.SERVING_SIGNATURE](**{contract.SERVING_INPUT: tf.constant(photos)})
    return contract.prediction_records(outputs)


class PredictionLog:
    """Appends one JSON line per prediction, with the photo's image statistics (for drift checks)."""

    def __init__(self, log_dir: Optional[str]):
        self.path = Path(log_dir) / contract.PREDICTION_LOG_FILE if log_dir else None
        self._lock = threading.Lock()
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, model_name: str, version: str, photos: List[images.LoadedImage],
              predictions: List[Dict[str, Any]]):
        if not self.path:
            return
        lines = []
        for photo, prediction in zip(photos, predictions):
            stats = photo.stats  # measured once, when the request was validated
            lines.append(json.dumps({
                "time": time.time(), "model": model_name, "version": version,
                **contract.compact(prediction),
                "stats": stats.numeric(),
            }))
        with self._lock, open(self.path, "a", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")


def make_handler(repository: ModelRepository, model_name: str, api_key: Optional[str], log: PredictionLog):
    prefix = f"/v1/models/{model_name}"

    class Handler(BaseHTTPRequestHandler):
        server_version = "gemstone-serve"

        def _send(self, status: HTTPStatus, body, content_type="application/json"):
            data = body if isinstance(body, bytes) else json.dumps(body).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _authorised(self) -> bool:
            if not api_key:
                return True
            header = self.headers.get("Authorization", "")
            given = header[7:] if header.startswith("Bearer ") else self.headers.get("x-api-key", "")
            return hmac.compare_digest(given.encode(), api_key.encode())

        def _route(self) -> Tuple[str, Optional[str], str]:
            """(kind, version, action) of /v1/models/<name>[/versions/<v>][:predict]."""
            path = self.path.split("?", 1)[0]
            if not path.startswith(prefix):
                raise RequestError(HTTPStatus.NOT_FOUND, f"unknown path {path}; this serves {prefix}")
            rest, _, action = path[len(prefix):].partition(":")
            version = None
            if rest.startswith("/versions/"):
                version = rest[len("/versions/"):]
            elif rest not in ("", "/"):
                raise RequestError(HTTPStatus.NOT_FOUND, f"unknown path {path}")
            return "model", version, action

        def _compact(self) -> bool:
            """`?output=compact`: the compact record (no per-class vectors) instead of every output."""
            query = urllib.parse.parse_qs(self.path.partition("?")[2])
            output = query.get("output", ["full"])[-1]
            if output not in ("full", "compact"):
                raise RequestError(HTTPStatus.BAD_REQUEST, f"output={output}: expected output=compact or full")
            return output == "compact"

        def _handle(self, method: str):
            try:
                if method == "GET" and self.path in ("/", "/index.html"):
                    return self._send(HTTPStatus.OK, UPLOAD_PAGE.replace("MODEL_PATH", prefix).encode(),
                                      "text/html; charset=utf-8")
                if not self._authorised():
                    raise RequestError(HTTPStatus.UNAUTHORIZED, "missing or wrong API key")
                _, version, action = self._route()
                if method == "GET" and not action:
                    return self._send(HTTPStatus.OK, self._status(version))
                if method == "POST" and action == "predict":
                    compact = self._compact()
                    length = int(self.headers.get("Content-Length") or 0)
                    if length > MAX_BODY_BYTES:
                        raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                                           f"request body over {MAX_BODY_BYTES // (1024 * 1024)} MB")
                    photos = _decode_instances(self.rfile.read(length))
                    served_version, model = repository.get(version)
                    predictions = _predict(model, [photo.data for photo in photos])
                    log.write(model_name, served_version, photos, predictions)
                    if compact:
                        predictions = [contract.compact(p) for p in predictions]
                    return self._send(HTTPStatus.OK, {"predictions": predictions, "model_version": served_version})
                raise RequestError(HTTPStatus.METHOD_NOT_ALLOWED, f"{method} {self.path} is not supported")
            except RequestError as e:
                self._send(e.status, {"error": e.message})

        def _status(self, version: Optional[str]):
            available = repository.versions()
            if version is not None and version not in available:
                raise RequestError(HTTPStatus.NOT_FOUND, f"version {version} not found; available: {available}")
            shown = [version] if version else list(reversed(available))
            if shown:
                repository.load_in_background(shown[0])  # a new push: load it now, not at the first request
            return {"model_version_status": [
                {"version": v, "state": repository.state(v), "status": {"error_code": "OK", "error_message": ""}}
                for v in shown]}

        def do_GET(self):  # noqa: N802
            self._handle("GET")

        def do_POST(self):  # noqa: N802
            self._handle("POST")

        def log_message(self, fmt, *args):
            from absl import logging

            logging.info("%s %s", self.address_string(), fmt % args)

    return Handler


def make_server(model: str, host: str = "127.0.0.1", port: int = 8501, model_name: Optional[str] = None,
                api_key: Optional[str] = None, log_dir: Optional[str] = None,
                preload: bool = True, notice=None) -> ThreadingHTTPServer:
    """Binds the port (an OSError when it is taken), then loads the newest version unless not `preload`.

    The server's `repository` attribute is the ModelRepository (release() it at shutdown); `notice` says
    what a loaded version needs said (a model without the open-set outputs).
    """
    base = Path(model)
    if paths.is_version_dir(base):  # a version folder was given: serve its base
        base = base.parent
    name = model_name or base.name
    repository = ModelRepository(str(base), notice)
    handler = make_handler(repository, name, api_key, PredictionLog(log_dir))
    server = ThreadingHTTPServer((host, port), handler)
    server.repository = repository
    if preload and repository.versions():
        try:
            repository.get()
        except BaseException:
            server.server_close()
            raise
    return server


def default_log_dir(model: str) -> str:
    base = Path(model)
    name = base.parent.name if paths.is_version_dir(base) else base.name
    return str(paths.gemstone_home() / "serving-logs" / name)


UPLOAD_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>Gemstone identification</title>
<style>body{font-family:sans-serif;max-width:40em;margin:2em auto}img{max-width:16em;display:block;margin:1em 0}
.review{color:#b00;font-weight:bold}td{padding:2px 10px}</style></head><body>
<h1>Which gemstone is this?</h1>
<p><input type="file" id="photo" accept="image/*"> <input type="password" id="key" placeholder="API key (if any)"></p>
<img id="preview" alt=""><div id="result"></div>
<script>
document.getElementById('photo').addEventListener('change', function (event) {
  const file = event.target.files[0]; if (!file) return;
  const reader = new FileReader();
  reader.onload = async function () {
    document.getElementById('preview').src = reader.result;
    const b64 = reader.result.split(',')[1];
    const key = document.getElementById('key').value;
    const headers = {'Content-Type': 'application/json'};
    if (key) headers['Authorization'] = 'Bearer ' + key;
    const response = await fetch('MODEL_PATH:predict', {method: 'POST', headers: headers,
      body: JSON.stringify({instances: [{b64: b64}]})});
    const body = await response.json();
    const out = document.getElementById('result');
    if (!response.ok) { out.textContent = 'Error: ' + body.error; return; }
    const p = body.predictions[0];
    const esc = s => String(s).replace(/[&<>"]/g, c => ({'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;'}[c]));
    let html = '';
    if (p.review_reason === 'not_a_gemstone') html += '<p class="review">Not a gemstone photo (closest variety: ' + esc(p.label) + ')</p>';
    else if (p.review_reason === 'unfamiliar_variety') html += '<p class="review">Not a variety this model knows (closest: ' + esc(p.label) + ')</p>';
    html += '<table>';
    for (let i = 0; i < p.top_k_labels.length; i++) {
      html += '<tr><td>' + esc(p.top_k_labels[i]) + '</td><td>' + (100 * p.top_k_scores[i]).toFixed(1) + ' %</td></tr>';
    }
    html += '</table><p>Family: ' + esc(p.family) + '</p>';
    if (p.review_reason === 'low_confidence' || (p.needs_review && p.review_reason === undefined))
      html += '<p class="review">Low confidence: needs expert review</p>';
    out.innerHTML = html;
  };
  reader.readAsDataURL(file);
});
</script></body></html>"""
