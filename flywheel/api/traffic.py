"""Request traffic: a span replayed against a TF Serving REST endpoint, and labels joined to a request log."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Optional

import flywheel.traffic.replay
from flywheel.api.errors import UsageError, folder_argument
from flywheel.api.results import as_dict
from flywheel.data.parsing import columns_from_schema, load_schema
from flywheel.monitoring.drift import Policy
from flywheel.pipelines import registry
from flywheel.rollout.analysis import log_freshness, read_log, wait_for_settled_log
from flywheel.traffic.join import join


@dataclasses.dataclass(frozen=True)
class ReplayResult:
    """A replay's counts: rows read, skipped (as Ingest would quarantine them, or lacking a model input) and
    sent; requests sent, ok (2xx), failed and by status (HTTP code, or the client's error name); the achieved
    rate (requests/s) and latency percentiles (ms)."""

    url: str
    features: list[str]
    rows_read: int
    rows_skipped: int
    rows_sent: int
    requests_sent: int
    ok: int
    failed: int
    by_status: dict[str, int]
    achieved_rate: float
    elapsed_s: float
    latency_ms: dict[str, float]
    first_skipped: list[str] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return as_dict(self)


def replay(pipeline: str, data: str, url: str, *, rate: Optional[float] = None, id_column: Optional[str] = None,
           batch: int = 1, concurrency: int = 8, features: Optional[tuple[str, ...]] = None,
           wait_s: float = 60.0) -> ReplayResult:
    """Sends the latest span of `data` (rows typed by the pipeline's schema, label left out) to a TF Serving REST
    endpoint (`url`, e.g. http://127.0.0.1:8501/v1/models/taxi) as `:predict` requests, waiting up to wait_s
    seconds for a server whose connections are still refused (one started a moment ago)."""
    entry = registry.get(pipeline)
    try:
        found = flywheel.traffic.replay.replay(data, url, entry.schema_path(), features=features, rate=rate,
                                               id_column=id_column, batch=batch, concurrency=concurrency,
                                               wait_s=wait_s)
    except (ValueError, OSError) as e:
        raise UsageError(str(e)) from e
    return ReplayResult(**{f.name: found[f.name] for f in dataclasses.fields(ReplayResult)})


@dataclasses.dataclass(frozen=True)
class JoinResult:
    """A join's counts (see flywheel.traffic.join): rows joined, unmatched logs and labels, duplicates, rows
    without key or label value, per span; the first unmatched keys."""

    output: str
    key: str
    log_key: str
    log_rows: int
    label_rows: int
    joined_rows: int
    unmatched_logs: int
    unmatched_labels: int
    duplicate_logs: int
    skipped_logs: int
    duplicate_labels: int
    conflicting_labels: int
    logs_without_key: int
    labels_without_key: int
    labels_without_value: int
    spans: dict[int, dict[str, Any]]
    first_unmatched_logs: list[str] = dataclasses.field(default_factory=list)
    first_unmatched_labels: list[str] = dataclasses.field(default_factory=list)
    # How fresh the request log was when joined (`flywheel.rollout.analysis.LogFreshness.to_dict`): with
    # maybe_incomplete, the server may still hold requests it answered in its last seconds.
    log_freshness: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return as_dict(self)

    @property
    def log_maybe_incomplete(self) -> bool:
        return bool(self.log_freshness.get("maybe_incomplete"))


def _freshness(logs: str) -> dict[str, Any]:
    """How fresh the request log is now (`LogFreshness.to_dict`); {"unknown": why} when its rows carry no times
    the analysis reads (a log written by something other than flywheel serve)."""
    try:
        return log_freshness(read_log(logs, "request log", ())).to_dict()
    except (ValueError, OSError) as e:
        return {"unknown": str(e)}


def logs_join(logs: str, labels: str, key: str, output: str, *, pipeline: str = "taxi",
              label_column: Optional[str] = None, log_key: Optional[str] = None,
              span: Optional[int] = None, wait_for_log: float = 0.0) -> JoinResult:
    """Joins labels that arrived later to a request log by `key` (the labels' column; matched with the log's
    `log_key`, by default `key` when the log has it, else `request_id`) into `<output>/span-N/` (the log's spans) that
    Ingest, `flywheel retrain --data` and `flywheel monitor` read; nothing is written when the joined rows would
    lack a column the pipeline's schema requires.

    wait_for_log: seconds to wait, at most, for the request log to settle (its newest row two of the server's
    flush intervals old) before joining, e.g. right after a replay; the result's `log_freshness` says how fresh
    it was either way."""
    if not 0 <= wait_for_log < math.inf:
        raise UsageError(f"logs join: --wait-for-log: expected seconds >= 0, got {wait_for_log}")
    entry = registry.get(pipeline)
    schema = entry.schema_path()
    labels_in_schema = Policy.from_schema(schema).labels
    label = label_column or (labels_in_schema[0] if labels_in_schema else "label")
    required = [c.name for c in columns_from_schema(load_schema(schema)) if c.required]
    folder_argument(output, "logs join: --output")
    try:
        if wait_for_log > 0:
            wait_for_settled_log(logs, wait_for_log)
        found = join(logs, labels, key, output, label_column=label, required=required,
                     binary_label=entry.label_rule(), log_key=log_key, span=span)
    except (ValueError, OSError) as e:
        raise UsageError(str(e).replace("rollout analysis: ", "logs join: ", 1)) from e
    return JoinResult(output=output, key=key, log_freshness=_freshness(logs),
                      **{f.name: found[f.name] for f in dataclasses.fields(JoinResult)
                         if f.name not in ("output", "key", "log_freshness")})
