"""Serving: the TF Serving-compatible server over a serving folder (its ASGI app, or the whole server until a
signal stops it), and what serves now."""

from __future__ import annotations

import dataclasses
import math
import signal
import sys
from typing import Any, Optional, TextIO

from flywheel import quiet
from flywheel.api.errors import UsageError, folder_argument
from flywheel.api.results import as_dict
from flywheel.server.connections import ConnectionLimits
from flywheel.server.console import ListenError, Server, bind, show_events
from flywheel.server.models import LoadRetries, ModelRegistry
from flywheel.server.request_log import DEFAULT_MAX_PENDING_BYTES, RequestLog
from flywheel.server.server import create_app
from flywheel.server.status import describe, server_status
from flywheel.store import layout

# `serve --log-dir`: megabytes of requests waiting to be written at most.
LOG_MAX_PENDING_MB = DEFAULT_MAX_PENDING_BYTES // 2**20


def serving_app(serving_dir: str, model: str = "taxi", *, max_batch_size: int = 512, batch_timeout_ms: float = 0.0,
                request_log: Any = None, poll_seconds: float = 1.0, rollout_key_header: str = "X-Rollout-Key",
                load_retries: Any = None):
    """The TF Serving-compatible ASGI app over `<serving_dir>/<model>/<version>/` (not started: its lifespan
    loads the latest version, or the versions of the model's rollout state, and polls for changes; see
    `flywheel/server/routing.py`). UsageError for a missing folder or a bad setting."""
    if not layout.filesystem(serving_dir).isdir(serving_dir):
        raise UsageError(f"serve: --serving-dir {serving_dir} is not a folder")
    if max_batch_size < 1:
        raise UsageError(f"serve: --max-batch-size must be at least 1, got {max_batch_size}")
    if batch_timeout_ms < 0:
        raise UsageError(f"serve: --batch-timeout-ms must be >= 0, got {batch_timeout_ms}")
    versions = ModelRegistry(serving_dir, model, poll_seconds=poll_seconds, load_retries=load_retries or LoadRetries())
    return create_app(versions, max_batch_size=max_batch_size, batch_timeout_ms=batch_timeout_ms,
                      request_log=request_log, rollout_key_header=rollout_key_header)


def signature_inputs(version_path: str, signature: str = "serving_default") -> dict[str, str]:
    """{input name: dtype name} of a SavedModel's signature, read from saved_model.pb without loading it."""
    import tensorflow as tf  # TensorFlow: seconds to import; only naming the dtypes needs it

    graphs = [g for g in layout.read_saved_model(version_path).meta_graphs if "serve" in g.meta_info_def.tags]
    signatures = graphs[0].signature_def if graphs else {}
    if signature not in signatures:
        raise UsageError(f"serve: {version_path} has no signature {signature!r}; it has {sorted(signatures)}")
    return {name: tf.dtypes.as_dtype(spec.dtype).name for name, spec in signatures[signature].inputs.items()}


def _request_log(serving_dir: str, model: str, log_dir: str, log_sample: float, log_max_pending_mb: float):
    """The request logger for `serve --log-dir`: one column per raw input of the latest version's default
    signature, typed from it (without a version yet, the first logged row's values type the columns); at most
    `log_max_pending_mb` megabytes of requests wait to be written."""
    served = layout.current(serving_dir, model)
    features = signature_inputs(served.path) if served is not None else None
    try:
        return RequestLog(log_dir, sample=log_sample, features=features,
                          max_pending_bytes=int(log_max_pending_mb * 2**20))
    except ValueError as e:
        raise UsageError(f"serve: --log-dir {log_dir}: {e}") from e


def serve(serving_dir: str, model: str = "taxi", host: str = "127.0.0.1", port: int = 8501,
          max_batch_size: int = 512, batch_timeout_ms: float = 0.0, log_dir: Optional[str] = None,
          log_sample: float = 1.0, *, request_log: Any = None, rollout_key_header: str = "X-Rollout-Key",
          limits: Any = None, log_max_pending_mb: float = LOG_MAX_PENDING_MB,
          verbose: bool = False, events: Optional[TextIO] = None, load_retries: Any = None) -> None:
    """Serves the model's versions over TF Serving's REST API with uvicorn until SIGINT/SIGTERM.

    log_dir: a sampled share (log_sample) of requests is written there as Parquet under span-N/ folders
    (`flywheel.server.request_log.RequestLog`, columns typed from the served model's raw-feature signature);
    it is closed, everything written, when the server stops. request_log: any object with
    `.log(request_id, model, version, signature, rows, predictions, latency_ms, *, role, status, error)` instead.
    With a rollout state (`flywheel rollout start`), the server follows it without a restart; a request's
    `rollout_key_header` value keeps it on one version during a canary. events: where a line goes per event (each
    version loaded or unloaded, each rollout change, `ready` once it answers, `stopped`; see
    `flywheel.server.console`); none when None. verbose: TensorFlow's own logs too. limits: the connections' limits
    (`flywheel.server.connections.ConnectionLimits`, its defaults when None). log_max_pending_mb: the most
    megabytes of requests (their bodies' length) the log holds until they are written; beyond, a request is not
    logged and counted in `dropped_rows`. load_retries: how a version that failed to load is tried again
    (`flywheel.server.models.LoadRetries`, TF Serving's 5 retries a minute apart when None).
    """
    if not 0.0 < log_sample <= 1.0:
        raise UsageError(f"serve: --log-sample must be in (0, 1], got {log_sample}")
    if not (math.isfinite(log_max_pending_mb) and log_max_pending_mb * 2**20 >= 1):
        raise UsageError(f"serve: --log-max-pending-mb must be a number above 0, got {log_max_pending_mb}")
    if not layout.filesystem(serving_dir).isdir(serving_dir):
        raise UsageError(f"serve: --serving-dir {serving_dir} is not a folder")
    folder_argument(log_dir, "serve: --log-dir")
    try:
        listener = bind(host, port)
    except ListenError as e:
        raise UsageError(str(e)) from None
    quiet.quiet_environment(verbose)
    undo = show_events(lambda: events, verbose) if events is not None else (lambda: None)
    try:
        _serve_on(listener, serving_dir, model, host, port, max_batch_size, batch_timeout_ms, log_dir, log_sample,
                  request_log, rollout_key_header, limits, events, verbose, log_max_pending_mb,
                  load_retries=load_retries)
    finally:
        undo()
        listener.close()


def _serve_on(listener: Any, serving_dir: str, model: str, host: str, port: int, max_batch_size: int,
              batch_timeout_ms: float, log_dir: Optional[str], log_sample: float, request_log: Any,
              rollout_key_header: str, limits: Any, events: Optional[TextIO], verbose: bool,
              log_max_pending_mb: float, *, load_retries: Any = None) -> None:
    """`serve` once the address is bound: the app, uvicorn on the bound socket, the ready and stopped lines."""
    import uvicorn  # uvicorn: only a server that really starts needs it

    quiet.install(verbose, sys.stderr)  # TensorFlow's Python logger (deprecations at load) at ERROR unless verbose
    if log_dir is not None and request_log is None:
        request_log = _request_log(serving_dir, model, log_dir, log_sample, log_max_pending_mb)
    app = serving_app(serving_dir, model, max_batch_size=max_batch_size, batch_timeout_ms=batch_timeout_ms,
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
    said_log = _log_outcome(request_log, log_dir) if log_dir else ""
    say(f"stopped ({server.stop_signal or 'the server exited'}){said_log}")


def _log_outcome(request_log: Any, log_dir: str) -> str:
    """The request log's account at the server's stop: where it is, and the rows it could not keep, if any."""
    counts = request_log.counters() if hasattr(request_log, "counters") else {}
    lost = [f"{counts[key]:,} {words}" for key, words in (("dropped_rows", "rows dropped"),
                                                          ("write_errors", "failed writes")) if counts.get(key)]
    return f"; request log written to {log_dir}" + (f" ({', '.join(lost)})" if lost else "")


# ---- status --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class StatusResult:
    """What serves now (`flywheel status`): the versions in the serving folder, oldest first, each with its role
    (stable, canary, ..., rolled back) and what its push.json recorded (pushed_at, auc, spans, blessed,
    evaluation_report, baseline_profile); the version served by default; the rollout (None: none); and, with a
    URL, the running server's own model status (`server`: versions and states, or `error`)."""

    model: str
    serving_dir: str
    serving_version: Optional[int]
    versions: list[dict[str, Any]]
    rollout: Optional[dict[str, Any]] = None
    server: Optional[dict[str, Any]] = None

    def to_dict(self) -> dict[str, Any]:
        return as_dict(self)


def status(serving_dir: str, model: str = "taxi", *, url: Optional[str] = None) -> StatusResult:
    """What serves now: versions with their roles and push records, the rollout and, with `url` (a model URL,
    e.g. http://127.0.0.1:8501/v1/models/taxi), the running server's model status. Nothing is written."""
    fs = layout.filesystem(serving_dir)
    if not fs.isdir(serving_dir):
        raise UsageError(f"status: --serving-dir {serving_dir}: expected a serving folder, found "
                         f"{'a file' if fs.exists(serving_dir) else 'nothing there'}")
    try:
        found = describe(serving_dir, model)
    except ValueError as e:
        raise UsageError(str(e)) from e
    return StatusResult(**found, server=server_status(url) if url else None)
