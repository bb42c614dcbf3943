"""A REST service speaking TF Serving's API, for the pushed model folder.

    GET  /v1/models/<name>[/versions/<v>]            model status
    POST /v1/models/<name>[/versions/<v>]:predict    {"instances": [{"b64": "..."}, ...]}
    POST /v1/models/<name>[/versions/<v>]:explain    the same, answered with where the model looked
    GET  /v1/models/<name>[/versions/<v>]/metadata   the signatures (as TF Serving), name, version, date,
                                                     varieties and reference gallery (gemstone.apps.model_info)
    GET  /v1/models/<name>[/versions/<v>]/gallery/<file>   a reference thumbnail
    GET  /monitoring/prometheus/metrics              Prometheus metrics (gemstone.apps.serving_metrics)
    GET  /                                           the upload page for people (gemstone.apps.upload_page)

Clients written for TF Serving work unchanged: each prediction carries every
output of the signature, the probabilities of all classes included. With
`?output=compact` (`:predict?output=compact`) it carries gemstone.contract's
compact record instead: label, confidence, top_k, family, needs_review (a
tenth of the size on 88 classes). `:explain` (KServe V1's verb) answers compact
records (`?output=full`: every output) with the verdict, why the answer needs
review, and per photo a PNG overlay of where the model looked over the photo
(gemstone.overlay) and the model's greyscale heatmap, as {"b64": ...}. A version
exported without the `explain` signature answers it 501.

The newest numeric version under the base folder is loaded before the server
answers (status AVAILABLE means it is ready); a new push is noticed on the next
request, reported LOADING while it loads, and served without a restart. Every
request answered by the model is logged as TF Serving's PredictionLog
(gemstone.apps.prediction_log), which `gemstone drift` reads. Each connection
has its own thread, so a slow client holds up no other; at most `max_in_flight`
requests are worked on at once, past which the answer is 503 with Retry-After.
Every answer is JSON but the page, the metrics and the thumbnails. For
production scale, serve the same folder with the real TF Serving image
(kubeflow/serving.yaml).
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
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

from gemstone import contract, images, overlay, paths, signatures
from gemstone.apps import model_info, upload_page
from gemstone.apps.model_repository import ModelRepository, RequestError
from gemstone.apps.prediction_log import PredictionLogWriter
from gemstone.apps.serving_metrics import ServingMetrics

MAX_BODY_BYTES = 20 * 1024 * 1024
MAX_INSTANCES = 64
MAX_IN_FLIGHT = 32  # requests the model works on at once; more are answered 503 with Retry-After
RETRY_AFTER_SECONDS = 1
CONNECTION_TIMEOUT_SECONDS = 60  # a client silent this long (mid-request) is let go
LISTEN_BACKLOG = 128  # connections the kernel holds before they are accepted (the library's 5 dropped bursts)
SHUTDOWN_GRACE_SECONDS = 10  # at shutdown, how long requests in flight may take to finish
METRICS_PATH = "/monitoring/prometheus/metrics"  # TF Serving's
VERBS = ("predict", "explain")


class ClientGone(Exception):
    """The client went away (or stalled past the timeout) before its request was read."""


class Response(NamedTuple):
    status: int
    body: Any  # JSON-ready, or bytes
    content_type: str = "application/json"
    headers: Dict[str, str] = {}


class InFlight:
    """Counts the requests the model is working on, and refuses one past the limit."""

    def __init__(self, limit: int):
        self.limit = limit
        self.count = 0
        self._idle = threading.Condition()

    def enter(self) -> bool:
        with self._idle:
            if self.count >= self.limit:
                return False
            self.count += 1
            return True

    def leave(self) -> None:
        with self._idle:
            self.count -= 1
            self._idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        with self._idle:
            return self._idle.wait_for(lambda: self.count == 0, timeout)


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
            photos.append(images.decode_image_bytes(raw, measure=False))
        except images.ImageRejected as e:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"instance {i}: {e.reason}: {e.detail}") from None
    return photos


def _b64(data: bytes) -> Dict[str, str]:
    return {"b64": base64.b64encode(data).decode("ascii")}


def explained(record: Dict[str, Any], photo: bytes, heatmap_png: bytes, full: bool) -> Dict[str, Any]:
    """The answer `:explain` gives for one photo: its record, the verdict, why it needs review, and the pictures."""
    return {**(record if full else contract.compact(record)), "verdict": contract.verdict(record),
            "review": overlay.review_line(record), "overlay_png": _b64(overlay.overlay_png(photo, heatmap_png)),
            contract.HEATMAP_OUTPUT: _b64(heatmap_png)}


class Server(ThreadingHTTPServer):
    """The HTTP server: a thread per connection; its model repository, prediction log, metrics and bound."""

    daemon_threads = True
    request_queue_size = LISTEN_BACKLOG

    def __init__(self, address, handler, repository: ModelRepository, log: PredictionLogWriter,
                 metrics: ServingMetrics, in_flight: InFlight):
        self.repository, self.prediction_log, self.metrics, self.in_flight = repository, log, metrics, in_flight
        super().__init__(address, handler)

    def handle_error(self, request, client_address) -> None:
        """A client that went away is counted, not reported with a traceback; other errors as the library does."""
        import sys

        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError)):
            self.metrics.disconnects.inc()
            return
        super().handle_error(request, client_address)

    def server_close(self) -> None:
        """Stops listening, lets the requests in flight finish (a while), then closes the prediction log."""
        super().server_close()
        self.in_flight.wait_idle(SHUTDOWN_GRACE_SECONDS)
        self.prediction_log.close()


def make_handler(model_name: str, api_key: Optional[str]):
    prefix = f"/v1/models/{model_name}"

    class Handler(BaseHTTPRequestHandler):
        server_version = "gemstone-serve"
        timeout = CONNECTION_TIMEOUT_SECONDS
        server: Server

        # --- Writing -------------------------------------------------------------------------

        def _write(self, response: Response) -> None:
            body = response.body
            data = body if isinstance(body, bytes) else json.dumps(body).encode("utf-8")
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("X-Content-Type-Options", "nosniff")
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def send_error(self, code, message=None, explain=None):  # noqa: A002 - the library's signature
            """The library's own errors (a malformed request line, an unknown method) as JSON, not HTML."""
            short = self.responses.get(code, ("error",))[0]
            self.log_error("code %d, message %s", code, message)
            self.close_connection = True
            try:
                self._write(Response(code, {"error": message or short}, headers={"Connection": "close"}))
            except (ConnectionError, TimeoutError):
                self.server.metrics.disconnects.inc()

        # --- Reading ---------------------------------------------------------------------------

        def _authorised(self) -> bool:
            if not api_key:
                return True
            header = self.headers.get("Authorization", "")
            given = header[7:] if header.startswith("Bearer ") else self.headers.get("x-api-key", "")
            return hmac.compare_digest(given.encode(), api_key.encode())

        def _body(self) -> bytes:
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if length < 0:  # reading -1 bytes would wait for the client to hang up
                self.close_connection = True
                raise RequestError(HTTPStatus.BAD_REQUEST, "Content-Length is not a number of bytes")
            if length > MAX_BODY_BYTES:
                self.close_connection = True  # the body is not read
                raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                                   f"request body over {MAX_BODY_BYTES // (1024 * 1024)} MB")
            try:
                data = self.rfile.read(length)
            except (ConnectionError, TimeoutError):
                raise ClientGone() from None
            if len(data) < length:
                raise ClientGone()
            return data

        def _output(self, default: str) -> str:
            """`?output=compact|full` (the default differs: :predict is TF Serving's, :explain ours)."""
            query = urllib.parse.parse_qs(self.path.partition("?")[2])
            output = query.get("output", [default])[-1]
            if output not in ("full", "compact"):
                raise RequestError(HTTPStatus.BAD_REQUEST, f"output={output}: expected output=compact or full")
            return output

        def _route(self, path: str) -> Tuple[Optional[str], str, str]:
            """(version, what, detail) of /v1/models/<name>[/versions/<v>][:verb | /metadata | /gallery/<file>].

            what: "status", a verb, "metadata" or "gallery" (detail: the file name).
            """
            if path != prefix and not path.startswith((prefix + "/", prefix + ":")):
                raise RequestError(HTTPStatus.NOT_FOUND, f"unknown path {path}; this serves {prefix}")
            rest, version = path[len(prefix):], None
            if rest.startswith("/versions/"):
                version, _, tail = rest[len("/versions/"):].partition("/")
                version, colon, verb = version.partition(":")
                if not version.isdigit():
                    raise RequestError(HTTPStatus.NOT_FOUND, f"unknown path {path}: a version is a number")
                rest = (":" + verb if colon else "") + ("/" + tail if tail else "")
            if rest in ("", "/"):
                return version, "status", ""
            if rest.startswith(":") and rest[1:] in VERBS:
                return version, rest[1:], ""
            if rest == "/metadata":
                return version, "metadata", ""
            if rest.startswith("/gallery/"):
                return version, "gallery", rest[len("/gallery/"):]
            raise RequestError(HTTPStatus.NOT_FOUND, f"unknown path {path}: expected {prefix}[/versions/<v>]"
                                                     f"[:predict | :explain | /metadata | /gallery/<file>]")

        # --- Answering -------------------------------------------------------------------------

        def _handle(self, method: str) -> None:
            started = time.perf_counter()
            self._verb, self._version = "other", ""
            try:
                response = self._dispatch(method)
            except RequestError as e:
                response = Response(e.status, {"error": e.message}, headers=e.headers)
            except ClientGone:
                self.close_connection = True
                self.server.metrics.disconnects.inc()
                self.server.metrics.request(model_name, self._version, self._verb, 499, time.perf_counter() - started)
                return
            except Exception as e:  # noqa: BLE001 - a bug must not kill the connection without an answer
                from absl import logging

                logging.exception("error answering %s %s", method, self.path)
                response = Response(HTTPStatus.INTERNAL_SERVER_ERROR,
                                    {"error": f"internal error: {type(e).__name__}: {e}"})
            # Counted before the answer leaves: a client that reads the metrics next must find its request there.
            self.server.metrics.request(model_name, self._version, self._verb, response.status,
                                        time.perf_counter() - started)
            try:
                self._write(response)
            except (ConnectionError, TimeoutError):  # the client went away mid-answer: nothing to say to it
                self.close_connection = True
                self.server.metrics.disconnects.inc()

        def _dispatch(self, method: str) -> Response:
            path = self.path.split("?", 1)[0]
            if path in ("/", "/index.html"):
                self._verb = "page"
                if method != "GET":
                    raise RequestError(HTTPStatus.METHOD_NOT_ALLOWED, f"{method} {path}: the page is GET only",
                                       {"Allow": "GET"})
                return Response(HTTPStatus.OK, upload_page.render(prefix, model_name), "text/html; charset=utf-8",
                                {"Content-Security-Policy": upload_page.CONTENT_SECURITY_POLICY,
                                 "Cache-Control": "no-store"})
            if path == METRICS_PATH:
                self._verb = "metrics"
            else:
                self._version, self._verb, detail = self._route(path)
                self._version = self._version or ""
            if not self._authorised():
                raise RequestError(HTTPStatus.UNAUTHORIZED, "missing or wrong API key",
                                   {"WWW-Authenticate": 'Bearer realm="gemstone"'})
            allowed = "POST" if self._verb in VERBS else "GET"
            if method != allowed:
                raise RequestError(HTTPStatus.METHOD_NOT_ALLOWED, f"{method} {path}: use {allowed}",
                                   {"Allow": allowed})
            if self._verb == "metrics":
                body, content_type = self.server.metrics.exposition()
                return Response(HTTPStatus.OK, body, content_type)
            if self._verb == "status":
                return Response(HTTPStatus.OK, self._status(self._version or None))
            if self._verb == "metadata":
                metadata = self.server.repository.metadata(model_name, self._version or None, prefix)
                self._version = metadata["model_spec"]["version"]
                return Response(HTTPStatus.OK, metadata)
            if self._verb == "gallery":
                return self._gallery(detail)
            return self._answer(self._verb)

        def _status(self, version: Optional[str]):
            repository = self.server.repository
            available = repository.versions()
            if version is not None and version not in available:
                raise RequestError(HTTPStatus.NOT_FOUND, f"version {version} not found; available: {available}")
            shown = [version] if version else list(reversed(available))
            if shown:
                repository.load_in_background(shown[0])  # a new push: load it now, not at the first request
            return {"model_version_status": [
                {"version": v, "state": repository.state(v), "status": {"error_code": "OK", "error_message": ""}}
                for v in shown]}

        def _gallery(self, name: str) -> Response:
            version, _ = self.server.repository.get(self._version or None)
            self._version = version
            path = model_info.gallery_file(self.server.repository.base / version, name)
            if path is None:
                raise RequestError(HTTPStatus.NOT_FOUND, f"no gallery file {name!r} in version {version}")
            return Response(HTTPStatus.OK, path.read_bytes(), model_info.GALLERY_TYPES[path.suffix.lower()],
                            {"Cache-Control": "private, max-age=3600"})

        def _answer(self, verb: str) -> Response:
            """:predict or :explain: read, check and decode the photos, ask the model, log, answer."""
            server = self.server
            full = self._output("full" if verb == "predict" else "compact") == "full"
            body = self._body()  # outside the bound: a slow upload holds no slot
            version, model = server.repository.get(self._version or None)
            self._version = version
            signature = contract.SERVING_SIGNATURE if verb == "predict" else contract.EXPLAIN_SIGNATURE
            if signature not in model.signatures:
                raise RequestError(HTTPStatus.NOT_IMPLEMENTED,
                                   f"version {version} of {model_name} was exported without the `{signature}` "
                                   f"signature: retrain it to get explanations (:predict answers as before)")
            if not server.in_flight.enter():
                server.metrics.rejected_busy.inc()
                raise RequestError(HTTPStatus.SERVICE_UNAVAILABLE,
                                   f"busy: {server.in_flight.limit} requests in flight; try again in a moment",
                                   {"Retry-After": str(RETRY_AFTER_SECONDS)})
            server.metrics.in_flight.inc()
            try:
                photos = _decode_instances(body)
                data = [photo.data for photo in photos]
                outputs = signatures.call(model, signature, data)
                records = contract.prediction_records(outputs)
                if verb == "explain":
                    predictions = [explained(record, photo, heatmap, full) for record, photo, heatmap
                                   in zip(records, data, outputs[contract.HEATMAP_OUTPUT])]
                else:
                    predictions = records if full else [contract.compact(r) for r in records]
            finally:
                server.metrics.in_flight.dec()
                server.in_flight.leave()
            self._log(version, signature, data, outputs)
            server.metrics.answered(model_name, version, records)
            return Response(HTTPStatus.OK, {"predictions": predictions, "model_version": version})

        def _log(self, version: str, signature: str, data: List[bytes], outputs: Dict[str, Any]) -> None:
            try:
                self.server.prediction_log.write(model_name, version, signature, data, outputs)
            except OSError as e:  # a full disk must not cost the client its answer
                from absl import logging

                logging.warning("could not log a prediction: %s", e)

        def do_GET(self):  # noqa: N802
            self._handle("GET")

        def do_POST(self):  # noqa: N802
            self._handle("POST")

        def do_PUT(self):  # noqa: N802 - refused in JSON (the library would answer 501 in HTML)
            self._handle(self.command)

        do_DELETE = do_PATCH = do_PUT  # noqa: N815

        def log_message(self, fmt, *args):
            from absl import logging

            logging.info("%s %s", self.address_string(), fmt % args)

    return Handler


def make_server(model: str, host: str = "127.0.0.1", port: int = 8501, model_name: Optional[str] = None,
                api_key: Optional[str] = None, log_dir: Optional[str] = None,
                preload: bool = True, notice=None, max_in_flight: int = MAX_IN_FLIGHT) -> Server:
    """Binds the port (an OSError when it is taken), then loads the newest version unless not `preload`.

    The server's `repository` attribute is the ModelRepository (release() it at shutdown), `metrics` its
    ServingMetrics, `prediction_log` its PredictionLogWriter (closed by server_close); `notice` says what a
    loaded version needs said (a model without the open-set outputs or the explain signature).
    """
    base = Path(model)
    if paths.is_version_dir(base):  # a version folder was given: serve its base
        base = base.parent
    name = model_name or base.name
    repository = ModelRepository(str(base), notice)
    server = Server((host, port), make_handler(name, api_key), repository, PredictionLogWriter(log_dir),
                    ServingMetrics(), InFlight(max_in_flight))
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
