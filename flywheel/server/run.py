"""`flywheel serve` once its address is bound: the app over a serving folder, its request log, uvicorn on the bound
socket until SIGINT/SIGTERM, and the `ready` and `stopped` lines (`console`). A setting the server refuses raises
ServeError naming it."""

from __future__ import annotations

import signal
import sys
from typing import Any, Optional, TextIO

from flywheel import quiet
from flywheel.server import routing, signatures
from flywheel.server.connections import ConnectionLimits
from flywheel.server.console import Server
from flywheel.server.models import LoadRetries, ModelRegistry
from flywheel.server.request_log import RequestLog
from flywheel.server.server import ServingApp, create_app
from flywheel.store import layout, warmup


class ServeError(ValueError):
    """A setting of `serve` the server refuses (a missing serving folder, a batch size below 1, a request log's)."""


def build_app(serving_dir: str, model: str = "taxi", *, max_batch_size: int = 512, batch_timeout_ms: float = 0.0,
              request_log: Any = None, poll_seconds: float = 1.0,
              rollout_key_header: str = routing.ROLLOUT_KEY_HEADER,
              load_retries: Optional[LoadRetries] = None) -> ServingApp:
    """The ASGI app over `<serving_dir>/<model>/<version>/`, not started (its lifespan loads the versions)."""
    if not layout.filesystem(serving_dir).isdir(serving_dir):
        raise ServeError(f"serve: --serving-dir {serving_dir} is not a folder")
    if max_batch_size < 1:
        raise ServeError(f"serve: --max-batch-size must be at least 1, got {max_batch_size}")
    if batch_timeout_ms < 0:
        raise ServeError(f"serve: --batch-timeout-ms must be >= 0, got {batch_timeout_ms}")
    versions = ModelRegistry(serving_dir, model, poll_seconds=poll_seconds, load_retries=load_retries or LoadRetries())
    return create_app(versions, max_batch_size=max_batch_size, batch_timeout_ms=batch_timeout_ms,
                      request_log=request_log, rollout_key_header=rollout_key_header)


def signature_inputs(version_path: str, signature: str = warmup.DEFAULT_SIGNATURE) -> dict[str, str]:
    """{input name: dtype name} of a SavedModel's signature, read from saved_model.pb without loading it."""
    import tensorflow as tf  # TensorFlow: seconds to import; only naming the dtypes needs it

    graph = signatures.serve_meta_graph(version_path)
    defs = graph.signature_def if graph is not None else {}
    if signature not in defs:
        raise ServeError(f"serve: {version_path} has no signature {signature!r}; it has {sorted(defs)}")
    return {name: tf.dtypes.as_dtype(spec.dtype).name for name, spec in defs[signature].inputs.items()}


def open_request_log(serving_dir: str, model: str, log_dir: str, sample: float, max_pending_bytes: int) -> RequestLog:
    """The request log of `serve --log-dir`: one column per raw input of the latest version's default signature,
    typed from it (without a version yet, the first logged row's values type the columns)."""
    served = layout.current(serving_dir, model)
    features = signature_inputs(served.path) if served is not None else None
    try:
        return RequestLog(log_dir, sample=sample, features=features, max_pending_bytes=max_pending_bytes)
    except ValueError as e:
        raise ServeError(f"serve: --log-dir {log_dir}: {e}") from e


def serve_on(listener: Any, serving_dir: str, model: str, host: str, *, max_batch_size: int = 512,
             batch_timeout_ms: float = 0.0, log_dir: Optional[str] = None, log_sample: float = 1.0,
             log_max_pending_bytes: int, request_log: Any = None,
             rollout_key_header: str = routing.ROLLOUT_KEY_HEADER, limits: Optional[ConnectionLimits] = None,
             events: Optional[TextIO] = None, verbose: bool = False,
             load_retries: Optional[LoadRetries] = None) -> None:
    """Serves on a bound socket until SIGINT/SIGTERM: the app (with a request log under `log_dir` unless one is
    given), uvicorn on the socket, a `ready` line to `events` once it answers and a `stopped` line after."""
    # uvicorn: only a server that really starts needs it
    import uvicorn

    quiet.install(verbose, sys.stderr)  # TensorFlow's Python logger (deprecations at load) at ERROR unless verbose
    if log_dir is not None and request_log is None:
        request_log = open_request_log(serving_dir, model, log_dir, log_sample, log_max_pending_bytes)
    app = build_app(serving_dir, model, max_batch_size=max_batch_size, batch_timeout_ms=batch_timeout_ms,
                    request_log=request_log, rollout_key_header=rollout_key_header, load_retries=load_retries)

    def stopped(signum, frame):
        raise SystemExit(0)

    # uvicorn shuts down gracefully on SIGINT/SIGTERM (requests in flight finish, the app's shutdown runs),
    # then re-raises the signal to the handler it found: this one, so the process ends with status 0.
    previous = {sig: signal.signal(sig, stopped) for sig in (signal.SIGINT, signal.SIGTERM)}

    def say(line: str) -> None:
        if events is not None:
            print(f"flywheel: serve: {line}", file=events, flush=True)

    def ready() -> None:
        versions = ", ".join(str(v) for v in app.state.registry.loaded_versions()) or "none yet"
        bound = listener.getsockname()[1]  # the port asked for, or the one the system chose for --port 0
        say(f"ready: {model} from {serving_dir} on http://{host}:{bound}/v1/models/{model} (versions loaded: "
            f"{versions})")

    config = uvicorn.Config(app, log_level="warning", access_log=False,
                            **(limits or ConnectionLimits()).uvicorn_options())
    server = Server(config, ready)
    try:
        server.run(sockets=[listener])
    except SystemExit as e:
        if e.code not in (0, None):
            raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    said_log = log_outcome(request_log, log_dir) if log_dir else ""
    say(f"stopped ({server.stop_signal or 'the server exited'}){said_log}")


def log_outcome(request_log: Any, log_dir: str) -> str:
    """The request log's account at the server's stop: where it is, and the rows it could not keep, if any."""
    counts = request_log.counters() if hasattr(request_log, "counters") else {}
    lost = [f"{counts[key]:,} {words}" for key, words in (("dropped_rows", "rows dropped"),
                                                          ("write_errors", "failed writes")) if counts.get(key)]
    return f"; request log written to {log_dir}" + (f" ({', '.join(lost)})" if lost else "")
