"""The REST server: TF Serving's routes as plain ASGI, answered from a `ModelRegistry` through a `Batcher`.

Routes (paths matched with TF Serving's own regular expressions, case-insensitive; one `TFServingRoutes` method
each, predict's work done by `predict.py`):
- GET  /v1/models/{m}[/versions/{v}|/labels/{l}]            model status (GetModelStatusResponse JSON)
- GET  /v1/models/{m}[/versions/{v}|/labels/{l}]/metadata   signature defs (GetModelMetadataResponse JSON)
- POST /v1/models/{m}[/versions/{v}|/labels/{l}]:predict    row (`instances`) or columnar (`inputs`)
- POST ...:classify, ...:regress                            TF Serving's method check (see `classify_regress`)
- GET  /monitoring/prometheus/metrics                       Prometheus text format

Errors are `{"error": message}` with TF Serving's status codes. A body above `max_body_bytes` is
refused with 413 before it is read (TF Serving's HTTP server sets no limit of its own).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import itertools
import re
import time
import urllib.parse
import uuid
from typing import Any, Callable, Optional, Protocol

from google.protobuf import json_format
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from flywheel.server import codec, errors, predict, routing
from flywheel.server.batching import Batcher
from flywheel.server.errors import BodyTooLarge, InvalidArgument, ServingError
from flywheel.server.models import ModelRegistry, Servable, run_signature
from flywheel.server.predict import PredictRequest
from flywheel.server.shadow import Shadow

PREDICTION_PATH = re.compile(
    r"(?i)/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)")
STATUS_PATH = re.compile(r"(?i)/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:\/(metadata))?")
METRICS_PATH = "/monitoring/prometheus/metrics"
REQUEST_ID_HEADER = "X-Request-Id"
DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024
INT64_MAX = 2**63 - 1
UNKNOWN_LABEL = "_unknown"  # the metrics' model label of a request naming a model this server does not serve
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


class RequestLog(Protocol):
    """Receives every predict request, after its response is sent. `log` must not block; `counters` feeds the
    metrics route; `close` runs when the server stops and must write everything logged. The keywords (role,
    status, error) are passed only when one differs from its default: during a rollout and for failed requests;
    `route` (`version` or `label`) only for a request that named its version instead of taking the default route.
    A log whose `typed_rows` attribute is true takes the rows as `codec.parse_rows` decoded them (`codec.Rows`,
    `codec.row_dicts` turns them into dicts) and a numeric single output's predictions as its numpy rows; any
    other gets {input: value} dicts and the answer's predictions as lists. A log whose `takes_body_bytes` attribute
    is true also gets an answered request's body length as `body_bytes` (its bound on waiting data is in bytes)."""

    def log(self, request_id: str, model: str, version: int, signature: str, rows: list[dict], predictions: list,
            latency_ms: float, *, role: Optional[str] = None, status: int = 200,
            error: Optional[str] = None, route: Optional[str] = None) -> None: ...

    def counters(self) -> dict[str, int]: ...

    def close(self) -> None: ...


class Metrics:
    """The server's Prometheus metrics, in their own registry (one per app)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        labels = ("model", "version", "signature")
        self.requests = Counter("flywheel_serving_requests", "Requests answered, by API.", (*labels, "api"),
                                registry=self.registry)
        self.errors = Counter("flywheel_serving_request_errors", "Requests answered with an error, by HTTP status.",
                              (*labels, "api", "code"), registry=self.registry)
        self.latency = Histogram("flywheel_serving_request_latency_seconds", "Time from request read to response "
                                 "built.", (*labels, "api"), buckets=LATENCY_BUCKETS, registry=self.registry)
        self.batch_rows = Histogram("flywheel_serving_batch_rows", "Rows per TensorFlow call.", labels,
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096),
                                    registry=self.registry)
        self.loaded = Gauge("flywheel_serving_versions_loaded", "Versions loaded and serving.", ("model",),
                            registry=self.registry)
        self.request_log = Gauge("flywheel_serving_request_log", "The request log's counters: logged_rows, "
                                 "dropped_rows (lost: queue full, write error, after close), write_errors, "
                                 "invalid_values, files_written.", ("counter",), registry=self.registry)
        self._predict: dict[tuple[str, str, str], tuple[Any, Any]] = {}

    def predict_children(self, model: str, version: str, signature: str) -> tuple[Any, Any]:
        """The requests counter and latency histogram of one (model, version, signature), made once."""
        key = (model, version, signature)
        children = self._predict.get(key)
        if children is None:
            children = self._predict[key] = (self.requests.labels(*key, "predict"),
                                             self.latency.labels(*key, "predict"))
        return children

    def batch(self, servable: Servable, signature: Any, rows: int) -> None:
        self.batch_rows.labels(servable.model, str(servable.version), signature.name).observe(rows)


class _Answer:
    """One response's status, JSON body and request id, and what to run once it is sent."""

    __slots__ = ("status", "body", "request_id", "after", "version")

    def __init__(self, status: int, body: bytes, request_id: str, after: Optional[Callable[[], None]] = None,
                 version: str = ""):
        self.status, self.body, self.request_id, self.after = status, body, request_id, after
        self.version = version  # rollout hook: the X-Model-Version header of a predict answer

    async def send(self, send: Callable) -> None:
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(self.body)).encode("latin-1")),
                   (b"x-request-id", self.request_id.encode("latin-1"))]
        if self.version:
            headers.append((b"x-model-version", self.version.encode("latin-1")))
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})


async def _read_body(receive: Callable, declared: Optional[bytes], limit: int) -> bytes:
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"Request body of {int(declared)} bytes exceeds the limit of {limit} bytes")
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client went away: nothing more will come
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"Request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _parse_path(pattern: re.Pattern, path: str) -> Optional[tuple]:
    """(model, version, label, verb or sub-resource) of a request path as sent (percent-encoded), matched as TF
    Serving matches it; the model name and label are then percent-decoded, the version read as an int64."""
    match = pattern.fullmatch(path)
    if match is None:
        return None
    name, version, label, last = match.groups()
    return _unquote(name), _version(version) if version else None, _unquote(label), last


def _unquote(part: Optional[str]) -> Optional[str]:
    return urllib.parse.unquote(part) if part and "%" in part else part


def _version(digits: str) -> int:
    """The URL's version as TF Serving reads it (safe_strto64): leading zeros allowed, beyond int64 refused."""
    significant = digits.lstrip("0") or "0"
    if len(significant) > 19 or int(significant) > INT64_MAX:
        shown = digits if len(digits) <= 40 else f"{digits[:20]}...({len(digits)} digits)"
        raise InvalidArgument(f"Failed to convert version: {shown} to numeric.")
    return int(significant)


def _metadata(servable: Servable) -> dict:
    defs = {name: json_format.MessageToDict(sig, preserving_proto_field_name=True,
                                             including_default_value_fields=True)
            for name, sig in servable.signature_defs.items()}
    return {"model_spec": {"name": servable.model, "signature_name": "", "version": str(servable.version)},
            "metadata": {"signature_def": {"signature_def": defs}}}


class ServingApp:
    """The ASGI app. TF Serving's /v1 routes are answered here, as plain ASGI: the hot predict path does no
    framework work (routing, request and response objects) beyond reading the body and sending the answer.
    Everything else (the metrics route, the lifespan that starts and stops the registry) is Starlette's."""

    def __init__(self, v1: Callable, starlette: Starlette):
        self._v1, self._starlette = v1, starlette
        self.state = starlette.state

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/v1/"):
            answer = await self._v1(scope, receive)
            await answer.send(send)
            if answer.after is not None:
                answer.after()
        else:
            await self._starlette(scope, receive, send)


class _Call:
    """One /v1 request as far as it got: what its metrics and its request-log row name when it fails."""

    __slots__ = ("request_id", "model", "version", "api", "key", "route", "role", "predict")

    def __init__(self, request_id: str, api: str, key: Optional[str]):
        self.request_id, self.api, self.key = request_id, api, key
        self.model = self.version = ""
        self.route: Optional[str] = None  # how a predict request named its version (`routing.named`)
        self.role: Optional[str] = None  # its rollout role
        self.predict: Optional[PredictRequest] = None


class TFServingRoutes:
    """TF Serving's /v1 routes, one method each, chosen by TF Serving's own path patterns (`__call__`):
    `predict`, `classify_regress`, `status` and `metadata`; a failure becomes TF Serving's answer in `failed`.
    Also the metrics route and the lifespan (registry, batcher, shadow and request log started and stopped)."""

    def __init__(self, registry: ModelRegistry, batcher: Batcher, metrics: Metrics, request_log: Optional[RequestLog],
                 shadow: Shadow, max_body_bytes: int, rollout_key_header: str):
        self.registry, self.batcher, self.metrics = registry, batcher, metrics
        self.request_log, self.shadow, self.max_body_bytes = request_log, shadow, max_body_bytes
        self._key_header = rollout_key_header.lower().encode("latin-1")  # rollout hook: routing.py chooses the version
        self._sized = getattr(request_log, "takes_body_bytes", False)  # the log counts a body's length while it waits
        self._busy = 0  # predict requests between the start of their body's read and the end of their TensorFlow call
        # Generated request ids: 32 hex digits, a random half drawn once per app and a counter (uuid4 reads the OS's
        # random source on every call, a system call per request).
        self._id_prefix, self._id_counter = uuid.uuid4().hex[:16], itertools.count()

    async def __call__(self, scope: dict, receive: Callable) -> _Answer:
        started = time.perf_counter()
        method = scope["method"]
        path = scope["raw_path"].decode("latin-1") if scope.get("raw_path") else scope["path"]
        request_id, declared, key = None, None, None
        for name, value in scope["headers"]:
            if name == self._key_header:  # may also be the request id (--rollout-key-header X-Request-Id)
                key = value.decode("latin-1")
            if name == b"x-request-id":
                request_id = value.decode("latin-1")
            elif name == b"content-length":
                declared = value
        call = _Call(request_id or f"{self._id_prefix}{next(self._id_counter):016x}",
                     "status" if method == "GET" else "unknown", key)
        try:
            if method == "POST":
                parsed = _parse_path(PREDICTION_PATH, path)
                if parsed is None:
                    raise InvalidArgument(f"Malformed request: {method} {path}")
                call.model, version, label, verb = parsed
                call.api = verb.lower()
                if call.api == "predict":
                    return await self.predict(call, receive, declared, version, label, started)
                return await self.classify_regress(call, receive, declared, version, label)
            parsed = _parse_path(STATUS_PATH, path) if method == "GET" else None
            if parsed is None:
                raise InvalidArgument(f"Malformed request: {method} {path}")
            model, version, label, sub = parsed
            call.model, call.api = model or "", "metadata" if sub else "status"
            if not model:
                raise InvalidArgument("Missing model name in request.")
            return self.metadata(call, version, label) if sub else self.status(call, version, label)
        except ServingError as e:
            error = e
        except Exception as e:  # TensorFlow's own errors: a 4xx by its code is the caller's, the rest are ours
            error = errors.from_exception(e, f"{method} {path}", call.request_id)
        return self.failed(call, error, started)

    async def predict(self, call: _Call, receive: Callable, declared: Optional[bytes], version: Optional[int],
                      label: Optional[str], started: float) -> _Answer:
        request = call.predict = PredictRequest()
        self._busy += 1
        try:
            body = await _read_body(receive, declared, self.max_body_bytes)
            call.route = routing.named(version, label)  # rollout hook: None for the default route (the split)
            route = routing.route(self.registry, call.model, version, label, call.key)
            servable, call.role = route.servable, route.role
            call.version = str(servable.version)
            # A shadow copy needs the body's document: it is parsed by the general path.
            predict.parse(servable, body, request, keep_document=route.shadow is not None)
            # alone: no other predict request is being read or run (a full batch then runs on this thread).
            outputs = await self.batcher.submit(servable, request.signature, request.columns, len(request.rows),
                                                alone=self._busy == 1, group=request.group)
        finally:
            self._busy -= 1
        data = predict.answer(request, outputs)
        latency = time.perf_counter() - started
        requests, latencies = self.metrics.predict_children(call.model, call.version, request.signature.name)
        requests.inc()
        latencies.observe(latency)
        after = None
        if self.request_log is not None:
            after = functools.partial(predict.log, self.request_log, call.request_id, call.model, servable.version,
                                      request.signature.name, request.rows,
                                      predict.logged_predictions(self.request_log, outputs), latency * 1000.0,
                                      route.role, route=call.route, body_bytes=len(body) if self._sized else None)
            if route.shadow is not None:  # rollout hook: the candidate's copy, sent after
                after = _then(after, functools.partial(self.shadow.submit, route.shadow, request.doc,
                                                       call.request_id, request.rows))
        return _Answer(200, data, call.request_id, after, call.version)

    async def classify_regress(self, call: _Call, receive: Callable, declared: Optional[bytes],
                               version: Optional[int], label: Optional[str]) -> _Answer:
        """TF Serving's Classify and Regress: the body's examples (with their context) as serialized tf.Examples fed
        to the signature's string input; one TensorFlow call per request (not joined with others)."""
        body = await _read_body(receive, declared, self.max_body_bytes)
        servable = self.registry.get(call.model, version, label)
        doc = codec.parse_json(body)
        name = codec.signature_name(doc)
        examples = codec.parse_examples(doc)
        signature, input_name = codec.example_signature(servable.signatures, name, call.api)
        outputs = await self.batcher.submit(servable, signature, {input_name: examples}, len(examples),
                                            group=object())
        encode = codec.encode_classify if call.api == codec.CLASSIFY else codec.encode_regress
        return _Answer(200, encode(outputs, len(examples)), call.request_id)

    def status(self, call: _Call, version: Optional[int], label: Optional[str]) -> _Answer:
        payload = {"model_version_status": self.registry.status(call.model, version, label)}
        return _Answer(200, codec.dumps(payload), call.request_id)

    def metadata(self, call: _Call, version: Optional[int], label: Optional[str]) -> _Answer:
        return _Answer(200, codec.dumps(_metadata(self.registry.get(call.model, version, label))), call.request_id)

    def failed(self, call: _Call, error: ServingError, started: float) -> _Answer:
        """TF Serving's answer to a failed request, counted in the metrics; a failed predict is logged too (rollout
        hook), with what it had (its version, signature and rows), and its answer names its version."""
        model = call.model if call.model == self.registry.model else UNKNOWN_LABEL
        request = call.predict
        signature = request.signature_name if request is not None else ""
        self.metrics.errors.labels(model, call.version, signature, call.api, str(error.status)).inc()
        answer = _Answer(error.status, codec.dumps({"error": error.message}), call.request_id)
        if request is None:
            return answer
        answer.version = call.version
        if self.request_log is not None:
            answer.after = functools.partial(
                predict.log, self.request_log, call.request_id, call.model,
                int(call.version) if call.version else None, signature, request.logged_rows(), None,
                (time.perf_counter() - started) * 1000.0, call.role, error.status, error.message, route=call.route)
        return answer

    async def metrics_route(self, request: Request) -> Response:
        self.metrics.loaded.labels(self.registry.model).set(len(self.registry.loaded_versions()))
        if hasattr(self.request_log, "counters"):
            for name, value in self.request_log.counters().items():
                self.metrics.request_log.labels(name).set(value)
        return Response(generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette):
        self.registry.start()
        # TensorFlow's modules and the loaded versions are hundreds of thousands of objects that live as long as
        # the server: moved out of the collector's reach, a full collection (which requests kept by the request
        # log set off) no longer walks them all, a pause of tens of milliseconds every few seconds under load.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            self.registry.stop()
            self.batcher.close()
            self.shadow.close()
            if hasattr(self.request_log, "close"):
                self.request_log.close()  # everything logged so far is written: SIGTERM loses nothing


def create_app(registry: ModelRegistry, max_batch_size: int = 512, batch_timeout_ms: float = 0.0,
               num_batch_threads: int = 2, request_log: Optional[RequestLog] = None,
               max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
               rollout_key_header: str = routing.ROLLOUT_KEY_HEADER) -> ServingApp:
    """The ASGI app. Its lifespan starts the registry (first poll, then the background scan) and stops it.
    rollout_key_header: the request header whose value keeps a client on one version during a canary."""
    metrics = Metrics()
    batcher = Batcher(run_signature, max_batch_size, batch_timeout_ms, num_batch_threads, on_batch=metrics.batch)
    routes = TFServingRoutes(registry, batcher, metrics, request_log, Shadow(request_log, run_signature),
                             max_body_bytes, rollout_key_header)
    starlette = Starlette(routes=[Route(METRICS_PATH, routes.metrics_route, methods=["GET"])],
                          lifespan=routes.lifespan)
    starlette.state.registry, starlette.state.batcher, starlette.state.metrics = registry, batcher, metrics
    return ServingApp(routes, starlette)


def _then(first: Optional[Callable[[], None]], second: Callable[[], None]) -> Callable[[], None]:
    """Runs `first` (when given), then `second`: what runs after a response is sent."""
    if first is None:
        return second

    def both() -> None:
        first()
        second()

    return both
