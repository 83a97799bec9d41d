"""Serving: the TF Serving-compatible server over a serving folder (its ASGI app, or the whole server until a
signal stops it), and what serves now."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Optional, TextIO

from flywheel import quiet
from flywheel.api.errors import UsageError, folder_argument
from flywheel.api.results import as_dict
from flywheel.server.console import ListenError, bind, show_events
from flywheel.server.request_log import DEFAULT_MAX_PENDING_BYTES
from flywheel.server.run import ServeError, build_app, serve_on
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
    try:
        return build_app(serving_dir, model, max_batch_size=max_batch_size, batch_timeout_ms=batch_timeout_ms,
                         request_log=request_log, poll_seconds=poll_seconds, rollout_key_header=rollout_key_header,
                         load_retries=load_retries)
    except ServeError as e:
        raise UsageError(str(e)) from e


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
        serve_on(listener, serving_dir, model, host, max_batch_size=max_batch_size, batch_timeout_ms=batch_timeout_ms,
                 log_dir=log_dir, log_sample=log_sample, log_max_pending_bytes=int(log_max_pending_mb * 2**20),
                 request_log=request_log, rollout_key_header=rollout_key_header, limits=limits, events=events,
                 verbose=verbose, load_retries=load_retries)
    except ServeError as e:
        raise UsageError(str(e)) from e
    finally:
        undo()
        listener.close()


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
