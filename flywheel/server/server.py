"""The REST server: TF Serving's routes as plain ASGI, answered from a `ModelRegistry` through a `Batcher`.

Routes (paths matched with TF Serving's own regular expressions, case-insensitive):
- GET  /v1/models/{m}[/versions/{v}|/labels/{l}]            model status (GetModelStatusResponse JSON)
- GET  /v1/models/{m}[/versions/{v}|/labels/{l}]/metadata   signature defs (GetModelMetadataResponse JSON)
- POST /v1/models/{m}[/versions/{v}|/labels/{l}]:predict    row (`instances`) or columnar (`inputs`)
- POST ...:classify, ...:regress                            TF Serving's method check (see `_classify_regress`)
- GET  /monitoring/prometheus/metrics                       Prometheus text format

Errors are `{"error": message}` with TF Serving's status codes. A body above `max_body_bytes` is
refused with 413 before it is read (TF Serving's HTTP server sets no limit of its own).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import itertools
import logging
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

from flywheel.server import codec, routing
from flywheel.server.batching import Batcher
from flywheel.server.models import InvalidArgument, ModelRegistry, Servable, ServingError, run_signature
from flywheel.store import warmup

logger = logging.getLogger(__name__)

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


class BodyTooLarge(ServingError):
    status = 413


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


def _error(exc: ServingError, request_id: str) -> _Answer:
    return _Answer(exc.status, codec.dumps({"error": exc.message}), request_id)


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


def create_app(registry: ModelRegistry, max_batch_size: int = 512, batch_timeout_ms: float = 0.0,
               num_batch_threads: int = 2, request_log: Optional[RequestLog] = None,
               max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
               rollout_key_header: str = routing.ROLLOUT_KEY_HEADER) -> ServingApp:
    """The ASGI app. Its lifespan starts the registry (first poll, then the background scan) and stops it.
    rollout_key_header: the request header whose value keeps a client on one version during a canary."""
    metrics = Metrics()
    batcher = Batcher(run_signature, max_batch_size, batch_timeout_ms, num_batch_threads, on_batch=metrics.batch)
    key_header = rollout_key_header.lower().encode("latin-1")  # rollout hook: routing.py chooses the version
    shadow = routing.Shadow(request_log, run_signature)
    sized = getattr(request_log, "takes_body_bytes", False)  # the log counts a request's body length while it waits
    busy = [0]  # predict requests between the start of their body's read and the end of their TensorFlow call
    # Generated request ids: 32 hex digits, a random half drawn once per app and a counter (uuid4 reads the OS's
    # random source on every call, a system call per request).
    id_prefix, id_counter = uuid.uuid4().hex[:16], itertools.count()

    async def predict(receive: Callable, declared: Optional[bytes], request_id: str, ctx: dict,
                      version: Optional[int], label: Optional[str], started: float) -> _Answer:
        model = ctx["model"]
        busy[0] += 1
        try:
            body = await _read_body(receive, declared, max_body_bytes)
            ctx["route"] = routing.named(version, label)  # rollout hook: None for the default route (the split)
            route = routing.route(registry, model, version, label, ctx.get("key"))
            servable, ctx["role"] = route.servable, route.role
            ctx["version"] = str(servable.version)
            # The common body (rows of the default signature, of the inputs' types) decodes straight into columns;
            # any other is parsed, and accepted or refused, by the general path. A shadow copy needs the document.
            signature = servable.signatures.get(warmup.DEFAULT_SIGNATURE) if route.shadow is None else None
            parsed = codec.parse_rows(body, signature) if signature is not None else None
            doc, group = None, None
            if parsed is not None:
                fmt, (columns, rows) = codec.ROW, parsed
                ctx["signature"], ctx["rows"] = signature.name, rows
            else:
                ctx["doc"] = doc = codec.parse_json(body)
                signature = servable.signature(codec.signature_name(doc))
                ctx["signature"] = signature.name
                fmt, columns, rows = codec.parse_predict(doc, signature)
                group = codec.batch_group(columns, len(rows))  # nested or irregular inputs join only their like
            # alone: no other predict request is being read or run (a full batch then runs on this thread).
            outputs = await batcher.submit(servable, signature, columns, len(rows), alone=busy[0] == 1, group=group)
        finally:
            busy[0] -= 1
        data = codec.encode_predict(fmt, outputs)
        latency = time.perf_counter() - started
        requests, latencies = metrics.predict_children(model, ctx["version"], signature.name)
        requests.inc()
        latencies.observe(latency)
        after = None
        if request_log is not None:
            if getattr(request_log, "typed_rows", False) and len(outputs) == 1 and \
                    next(iter(outputs.values())).dtype.kind in "fiu" and next(iter(outputs.values())).ndim:
                predictions = next(iter(outputs.values()))  # a numeric output's rows, as they are
            else:
                predictions = codec.row_predictions(outputs)
            after = functools.partial(_log, request_log, request_id, model, servable.version, signature.name, rows,
                                      predictions, latency * 1000.0, route.role, route=ctx["route"],
                                      body_bytes=len(body) if sized else None)
        if route.shadow is not None and request_log is not None:  # rollout hook: the candidate's copy, sent after
            after = _then(after, functools.partial(shadow.submit, route.shadow, doc, request_id, rows))
        return _Answer(200, data, request_id, after, ctx["version"])

    async def classify_regress(receive: Callable, declared: Optional[bytes], request_id: str, model: str,
                               version: Optional[int], label: Optional[str], method: str) -> _Answer:
        """TF Serving's Classify and Regress: the body's examples (with their context) as serialized tf.Examples fed
        to the signature's string input; one TensorFlow call per request (not joined with others)."""
        body = await _read_body(receive, declared, max_body_bytes)
        servable = registry.get(model, version, label)
        doc = codec.parse_json(body)
        name = codec.signature_name(doc)
        examples = codec.parse_examples(doc)
        signature, input_name = codec.example_signature(servable.signatures, name, method)
        outputs = await batcher.submit(servable, signature, {input_name: examples}, len(examples), group=object())
        encode = codec.encode_classify if method == codec.CLASSIFY else codec.encode_regress
        return _Answer(200, encode(outputs, len(examples)), request_id)

    async def v1(scope: dict, receive: Callable) -> _Answer:
        started = time.perf_counter()
        method = scope["method"]
        path = scope["raw_path"].decode("latin-1") if scope.get("raw_path") else scope["path"]
        request_id, declared, ctx_key = None, None, None
        for name, value in scope["headers"]:
            if name == key_header:  # may also be the request id (--rollout-key-header X-Request-Id)
                ctx_key = value.decode("latin-1")
            if name == b"x-request-id":
                request_id = value.decode("latin-1")
            elif name == b"content-length":
                declared = value
        request_id = request_id or f"{id_prefix}{next(id_counter):016x}"
        ctx = {"model": "", "version": "", "signature": "", "api": "status" if method == "GET" else "unknown"}
        ctx["key"] = ctx_key
        try:
            if method == "POST":
                parsed = _parse_path(PREDICTION_PATH, path)
                if parsed is None:
                    raise InvalidArgument(f"Malformed request: {method} {path}")
                ctx["model"], version, label, verb = parsed
                ctx["api"] = verb.lower()
                if ctx["api"] == "predict":
                    return await predict(receive, declared, request_id, ctx, version, label, started)
                return await classify_regress(receive, declared, request_id, ctx["model"], version, label, ctx["api"])
            parsed = _parse_path(STATUS_PATH, path) if method == "GET" else None
            if parsed is None:
                raise InvalidArgument(f"Malformed request: {method} {path}")
            model, version, label, sub = parsed
            ctx["model"], ctx["api"] = model or "", "metadata" if sub else "status"
            if not model:
                raise InvalidArgument("Missing model name in request.")
            if sub:
                payload = _metadata(registry.get(model, version, label))
            else:
                payload = {"model_version_status": registry.status(model, version, label)}
            return _Answer(200, codec.dumps(payload), request_id)
        except ServingError as e:
            error = e
        except Exception as e:  # TensorFlow's own errors: a 4xx by its code is the caller's, the rest are ours
            error = _unexpected(e, method, path, request_id)
        model = ctx["model"] if ctx["model"] == registry.model else UNKNOWN_LABEL
        metrics.errors.labels(model, ctx["version"], ctx["signature"], ctx["api"], str(error.status)).inc()
        answer = _error(error, request_id)
        if ctx["api"] == "predict":  # rollout hook: a failed predict is logged too, and names its version
            answer.version = ctx["version"]
            if request_log is not None:
                answer.after = functools.partial(
                    _log, request_log, request_id, ctx["model"], int(ctx["version"]) if ctx["version"] else None,
                    ctx["signature"], ctx["rows"] if "rows" in ctx else routing.rows_of(ctx.get("doc")), None,
                    (time.perf_counter() - started) * 1000.0, ctx.get("role"), error.status, error.message,
                    route=ctx.get("route"))
        return answer

    async def metrics_route(request: Request) -> Response:
        metrics.loaded.labels(registry.model).set(len(registry.loaded_versions()))
        if hasattr(request_log, "counters"):
            for name, value in request_log.counters().items():
                metrics.request_log.labels(name).set(value)
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        registry.start()
        # TensorFlow's modules and the loaded versions are hundreds of thousands of objects that live as long as
        # the server: moved out of the collector's reach, a full collection (which requests kept by the request
        # log set off) no longer walks them all, a pause of tens of milliseconds every few seconds under load.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            registry.stop()
            batcher.close()
            shadow.close()
            if hasattr(request_log, "close"):
                request_log.close()  # everything logged so far is written: SIGTERM loses nothing

    starlette = Starlette(routes=[Route(METRICS_PATH, metrics_route, methods=["GET"])], lifespan=lifespan)
    starlette.state.registry, starlette.state.batcher, starlette.state.metrics = registry, batcher, metrics
    return ServingApp(v1, starlette)


_TENSORFLOW_CONTEXT = re.compile(r"\s*\[\[\{\{.*?\}\}\]\]|\{\{(?:function_)?node [^}]*\}\}", re.DOTALL)


# TF Serving's HTTP status of a TensorFlow error code (http_server.cc's ToHTTPStatusCode): the 4xx ones.
_CLIENT_ERROR_CODES = {"CANCELLED": 499, "INVALID_ARGUMENT": 400, "NOT_FOUND": 404, "ALREADY_EXISTS": 409,
                       "PERMISSION_DENIED": 403, "RESOURCE_EXHAUSTED": 429, "FAILED_PRECONDITION": 400,
                       "ABORTED": 409, "OUT_OF_RANGE": 400, "UNAUTHENTICATED": 401}


def _unexpected(e: Exception, method: str, path: str, request_id: str) -> ServingError:
    """The answer to an exception that is no ServingError: a TensorFlow error TF Serving answers with a 4xx (the
    request's values were refused: InvalidArgument, OutOfRange...) keeps its message without the graph's node
    names; anything else is a 500 naming only the request. The server's log has the detail."""
    import tensorflow as tf

    codes = {getattr(tf.errors, name): status for name, status in _CLIENT_ERROR_CODES.items()}
    status = codes.get(e.error_code, 500) if isinstance(e, tf.errors.OpError) else 500
    if status < 500:
        logger.warning("serve: %s %s (request %s) refused by TensorFlow: %s", method, path, request_id, e.message)
        error = ServingError(_tensorflow_message(e.message))
        error.status = status
        return error
    logger.warning("serve: %s %s (request %s) failed", method, path, request_id, exc_info=True)
    return ServingError(f"Internal error: the server failed to answer request {request_id}; its log has the detail")


def _tensorflow_message(message: str) -> str:
    """A TensorFlow error about the request's values, without the graph's function and node names TensorFlow
    appends (`[[{{node ParseExample/ParseExampleV2}}]]`): they name the model's internals, not the request."""
    return _TENSORFLOW_CONTEXT.sub("", message).strip()


def _log(request_log: RequestLog, request_id: str, model: str, version: int, signature: str, rows: list,
         predictions: Optional[list], latency_ms: float, role: Optional[str] = None, status: int = 200,
         error: Optional[str] = None, *, route: Optional[str] = None, body_bytes: Optional[int] = None) -> None:
    """Runs after the response is sent; a failing logger is reported, never the request's failure. route: how
    the request named its version (`routing.named`), passed on only when it named one; body_bytes: the body's
    length, passed on when given (to a log that `takes_body_bytes`)."""
    try:
        if not getattr(request_log, "typed_rows", False):
            rows = codec.row_dicts(rows)
        if role is None and status == 200 and route is None:
            if body_bytes is None:
                request_log.log(request_id, model, version, signature, rows, predictions, latency_ms)
            else:
                request_log.log(request_id, model, version, signature, rows, predictions, latency_ms,
                                body_bytes=body_bytes)
            return
        named = {} if route is None else {"route": route}
        if body_bytes is not None:
            named["body_bytes"] = body_bytes
        request_log.log(request_id, model, version, signature, rows,
                        [None] * len(rows) if predictions is None else predictions, latency_ms, role=role,
                        status=status, error=error, **named)
    except Exception:  # the logger's own errors are its business; serving goes on
        logger.exception("serve: request log failed for request %s", request_id)


def _then(first: Optional[Callable[[], None]], second: Callable[[], None]) -> Callable[[], None]:
    """Runs `first` (when given), then `second`: what runs after a response is sent."""
    if first is None:
        return second

    def both() -> None:
        first()
        second()

    return both
