"""Rollout analysis: the candidate version against the stable one on logged traffic, one decision with its evidence.

    analyze(log_dir, stable, candidate, since=..., labels=..., config=AnalysisConfig()) -> AnalysisResult

Input is a request log (`flywheel.server.request_log`: `span-N/*.parquet`, one row per instance with
`request_id`, `time`, `model_version`, `prediction`, `latency_ms`, ...) and, optionally, the same log with
labels joined (`flywheel logs join` output: the log's columns plus the label). Rows are grouped by
`model_version`; rows of other versions, and rows logged at or before `since`, are left out and counted.
When the log has them, four columns written by the rollout routing are read:

- `status` — the HTTP status of the answer (200 on success). A log without it counts every row as 200
  (the result's notes say so): the request log written before rollouts only held answered requests.
- `error` — the error text, or null.
- `rollout_role` — "stable" | "canary" | "shadow" | null; only used to count shadow requests, whose answers
  were logged but never returned to a client.
- `request_route` — "default" | "version" | "label": how the request found its version. Only the default route's
  requests are judged: the split chose their side. A request that named its version (`/versions/N`) or label
  (`/labels/canary`) chose its side itself, so any client could load one side with bad input; those requests
  are counted per route kind (`named_routes`), shown apart, never judged. A log without the column (written
  before it existed) is judged whole, and a note says so.

Per side: requests (distinct `request_id`), rows, model errors (a request with status >= 500, or an error
that is not a 4xx), client errors (4xx, reported apart: bad input is not the model's failure), latency p50/p90/p99
of the successful requests (status < 400, one value per request), the predictions' summary and, with labels, the
AUC (`flywheel.monitoring.monitor.auc`).

Checks, each with its value and threshold from `AnalysisConfig`:
- `error_rate`: candidate's model-error rate minus stable's, at most `max_error_rate_increase`.
- `client_error_rate`: the same for 4xx answers, at most `max_client_error_rate_increase`. Bad input is the
  client's, but both sides draw from the same traffic: a candidate that refuses what stable accepts (a retrained
  model whose signature wants a feature the clients do not send) fails here, not in `error_rate`.
  Both rate checks fail only when the increase is also beyond chance: a one-sided two-proportion z-test at
  `significance` (two errors in 100 requests against none in 400 are; one in 100 is not).
- `latency_p99`: candidate's p99 over stable's, at most `max_p99_latency_ratio` (a slower p99 within
  `min_p99_latency_increase_ms` of stable's passes: a fraction of a millisecond is not a regression).
- `prediction_drift`: the drift monitor's own numeric test (`flywheel.monitoring.drift.compare_column` on
  profiles of both sides' predictions: KS, PSI, Jensen–Shannon, Wasserstein), with the monitor's thresholds
  (`prediction_drift`, default `drift.Thresholds()`). A metric fails only when it is also above what chance
  alone reaches between the two sides at their sizes, over `resamples` random re-splits of the pooled requests
  (whole requests, so the rows of one batched request stay together) into groups of the same sizes. The metrics
  are tested together, as one test at `significance` (the min-p permutation test): a re-split's statistic is
  the smallest share of re-splits reaching one of its metric values, and a metric's floor is its value that
  this statistic's `significance` quantile allows. (A quantile per metric would give each of the four its own
  chance, and a copy of stable would fail up to four times as often.) A candidate answering exactly
  like stable differs from it only by which requests each side drew; on a few hundred requests that alone moves
  the KS distance past 0.1.
- `constant_output`: candidate's prediction standard deviation over stable's, at least `min_prediction_std_ratio`
  (a candidate that answers the same value for every row while stable's answers vary).
- `auc`: stable's AUC minus candidate's, at most `max_auc_drop`; only when both sides have at least
  `min_labelled_rows` labelled rows holding both classes (otherwise not evaluated, and a note says why). It fails
  only when the data shows a drop beyond the limit with confidence `1 - significance`: the `significance`
  quantile of the drop over `resamples` bootstrap resamples of each side's labelled rows is above
  `max_auc_drop`. (500 labelled rows a side give AUCs that differ by 0.04 between a model and a better one.)

Decision: `wait` while either side has fewer than `min_requests` requests; else `rollback` when any check
fails (the reasons name each failed check with its value and threshold); else `promote`.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import statistics
import time
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import yaml

from flywheel import storage
from flywheel.monitoring import drift, monitor, profile

STATUS, ERROR, ROLE, ROUTE = "status", "error", "rollout_role", "request_route"
DEFAULT_ROUTE = "default"  # the request took the split; `version` / `label`: it named its version
REQUEST_ID, TIME, MODEL, MODEL_VERSION, PREDICTION, LATENCY_MS = (
    "request_id", "time", "model", "model_version", "prediction", "latency_ms")
SHADOW = "shadow"
PROMOTE, ROLLBACK, WAIT = "promote", "rollback", "wait"
RESULT_FILE, REPORT_FILE = "analysis.json", "report.html"
LATENCY_PERCENTILES = (50, 90, 99)


class AnalysisError(ValueError):
    """Input the analysis cannot use: a missing log folder, a bad config, a log without the columns it needs."""


# ---- the decision rule's thresholds -----------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class AnalysisConfig:
    """The decision rule's thresholds (see the module docstring); `load(path)` reads them from JSON or YAML."""

    min_requests: int = 100
    max_error_rate_increase: float = 0.01
    max_client_error_rate_increase: float = 0.01
    max_p99_latency_ratio: float = 1.5
    min_p99_latency_increase_ms: float = 10.0
    min_prediction_std_ratio: float = 0.1
    max_auc_drop: float = 0.02
    min_labelled_rows: int = 100
    label_column: str = "label"
    prediction_drift: drift.Thresholds = drift.Thresholds()
    significance: float = 0.01
    resamples: int = 200

    def __post_init__(self) -> None:
        for name in ("min_requests", "min_labelled_rows"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise AnalysisError(f"rollout analysis: config {name}: expected an integer >= 1, got {value!r}")
        for name in ("max_error_rate_increase", "max_client_error_rate_increase", "max_p99_latency_ratio",
                     "min_p99_latency_increase_ms",
                     "min_prediction_std_ratio", "max_auc_drop"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise AnalysisError(f"rollout analysis: config {name}: expected a number >= 0, got {value!r}")
        if (isinstance(self.significance, bool) or not isinstance(self.significance, (int, float))
                or not 0.0 < self.significance < 1.0):
            raise AnalysisError(f"rollout analysis: config significance: expected a number between 0 and 1 "
                                f"(exclusive), got {self.significance!r}")
        if (isinstance(self.resamples, bool) or not isinstance(self.resamples, int)
                or self.resamples < 0):
            raise AnalysisError(f"rollout analysis: config resamples: expected an integer >= 0 (0: the limits "
                                f"alone, no test against chance), got {self.resamples!r}")
        if not isinstance(self.label_column, str) or not self.label_column:
            raise AnalysisError(f"rollout analysis: config label_column: expected a column name, got "
                                f"{self.label_column!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "config") -> "AnalysisConfig":
        """From {field: value}; unknown keys are an error naming the known ones."""
        if not isinstance(data, Mapping):
            raise AnalysisError(f"rollout analysis: {source}: expected a mapping of thresholds, got "
                                f"{type(data).__name__}")
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise AnalysisError(f"rollout analysis: {source}: unknown key(s) {unknown}; expected some of {known}")
        values = dict(data)
        if "prediction_drift" in values:
            thresholds = values["prediction_drift"]
            names = [f.name for f in dataclasses.fields(drift.Thresholds)]
            if not isinstance(thresholds, Mapping) or set(thresholds) - set(names):
                raise AnalysisError(f"rollout analysis: {source}: prediction_drift: expected a mapping with keys "
                                    f"among {names}, got {thresholds!r}")
            values["prediction_drift"] = drift.Thresholds(**{k: float(v) for k, v in thresholds.items()})
        return cls(**values)

    @classmethod
    def load(cls, path: str) -> "AnalysisConfig":
        """A config file: .json, or .yaml/.yml (an empty YAML file: every default)."""
        try:
            yaml_file = path.lower().endswith((".yaml", ".yml"))
            text = storage.read_file(path, "rollout analysis: config", empty_ok=yaml_file)
        except storage.FileArgumentError as e:
            raise AnalysisError(str(e)) from None
        if path.lower().endswith((".yaml", ".yml")):
            try:
                data = yaml.safe_load(text)
            except yaml.YAMLError as e:
                raise AnalysisError(f"rollout analysis: config {path}: not YAML ({e})") from None
        elif path.lower().endswith(".json"):
            try:
                data = json.loads(text)
            except json.JSONDecodeError as e:
                raise AnalysisError(f"rollout analysis: config {path}: not JSON ({e})") from None
        else:
            raise AnalysisError(f"rollout analysis: config {path}: expected a .json, .yaml or .yml file")
        return cls.from_dict(data if data is not None else {}, path)


# ---- the result -------------------------------------------------------------------------------------------------

# What each check's value measures, and whether it fails above its threshold (True) or below it (False).
MEASURES = {
    "error_rate": ("model-error rate increase, candidate's minus stable's", True),
    "client_error_rate": ("client-error rate increase, candidate's minus stable's", True),
    "latency_p99": ("p99 latency ratio, candidate's over stable's", True),
    "prediction_drift": ("the drift metric furthest over its limit (its threshold or what chance reaches, "
                         "whichever is higher)", True),
    "constant_output": ("prediction std ratio, candidate's over stable's", False),
    "auc": ("AUC drop, stable's minus candidate's (below 0: the candidate's AUC is higher)", True),
}


@dataclasses.dataclass(frozen=True)
class Check:
    """One check of the rule: passed True/False, or None when it could not be evaluated (`rule` says why).
    `overruled`: why a failed check does not block the release (None when it blocks, or passed)."""

    name: str
    passed: Optional[bool]
    value: Optional[float]
    threshold: Optional[float]
    rule: str
    detail: str
    overruled: Optional[str] = None

    @property
    def measure(self) -> str:
        return MEASURES[self.name][0]

    @property
    def fails_above(self) -> bool:
        return MEASURES[self.name][1]

    @property
    def blocks(self) -> bool:
        return self.passed is False and self.overruled is None

    def limit(self) -> str:
        """The threshold with its direction: "fails above 0.02", "fails below 0.1"."""
        if self.threshold is None:
            return "n/a"
        return f"fails {'above' if self.fails_above else 'below'} {self.threshold:g}"

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "measure": self.measure, "fails_above": self.fails_above}

    def reason(self) -> str:
        return f"{self.name}: {self.detail}; {self.rule}"


@dataclasses.dataclass(frozen=True)
class SideStats:
    """One version's traffic: counts, error rates, latency percentiles (ms), prediction summary, AUC."""

    version: int
    requests: int
    rows: int
    shadow_requests: int
    model_errors: int
    client_errors: int
    error_rate: Optional[float]
    client_error_rate: Optional[float]
    latency_ms: dict[str, float]
    predictions: dict[str, float]
    labelled_rows: int = 0
    auc: Optional[float] = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# How often `flywheel serve` writes its request log (RequestLog's flush_interval_s; serve has no flag for it).
SERVER_FLUSH_INTERVAL_S = 5.0


@dataclasses.dataclass(frozen=True)
class LogFreshness:
    """How recent the request log is: its newest row's time against the time it was read. The server writes the
    log every `flush_interval_s`, so requests answered since its last write are not in it yet."""

    newest_row: Optional[str]
    read_at: str
    age_s: Optional[float]
    flush_interval_s: float = SERVER_FLUSH_INTERVAL_S

    @property
    def maybe_incomplete(self) -> bool:
        """True while traffic may still be waiting in the server: the newest row is younger than two writes."""
        return self.age_s is not None and 0 <= self.age_s < 2 * self.flush_interval_s

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "maybe_incomplete": self.maybe_incomplete}

    def words(self) -> str:
        if self.newest_row is None:
            return f"no rows yet (read at {self.read_at})"
        when = (f"{self.age_s:,.1f} s before it was read" if self.age_s >= 0 else
                f"{-self.age_s:,.1f} s after it was read (the server's clock is ahead of this one)")
        said = (f"newest row logged at {self.newest_row}, {when} ({self.read_at}); flywheel serve writes its log "
                f"every {self.flush_interval_s:g} s")
        if self.maybe_incomplete:
            said += (f", so requests answered in the last {self.flush_interval_s:g} s may not be in it yet: run "
                     f"the analysis again {2 * self.flush_interval_s:g} s after the traffic stops to judge them all")
        return said


def log_freshness(table: pa.Table, now: Optional[datetime.datetime] = None,
                  flush_interval_s: float = SERVER_FLUSH_INTERVAL_S) -> LogFreshness:
    """The newest row's time in a request log (all its rows) against `now` (default: the clock)."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    newest = None
    if table.num_rows and TIME in table.column_names:
        times = table.column(TIME)
        if not pa.types.is_timestamp(times.type):
            times = pc.cast(times, pa.timestamp("us", tz="UTC"))
        newest = pc.max(times).as_py()
    if newest is None:
        return LogFreshness(None, now.isoformat(timespec="seconds"), None, flush_interval_s)
    if newest.tzinfo is None:
        newest = newest.replace(tzinfo=datetime.timezone.utc)
    return LogFreshness(newest.isoformat(timespec="milliseconds"), now.isoformat(timespec="seconds"),
                        round((now - newest).total_seconds(), 3), flush_interval_s)


def wait_for_settled_log(log_dir: str, timeout_s: float, flush_interval_s: float = SERVER_FLUSH_INTERVAL_S,
                         sleep: Callable[[float], None] = time.sleep) -> LogFreshness:
    """Waits, up to `timeout_s`, until the request log has settled: its newest row at least two flush intervals
    old, so what the server held when the traffic stopped has been written. Re-reads the log when the newest row
    it saw would be that old (a new row moves the time on); returns the last freshness read, still
    `maybe_incomplete` when the deadline came first (traffic that goes on)."""
    deadline = time.monotonic() + timeout_s
    while True:
        fresh = log_freshness(read_log(log_dir, "request log", ()), flush_interval_s=flush_interval_s)
        left = deadline - time.monotonic()
        if not fresh.maybe_incomplete or left <= 0:
            return fresh
        sleep(min(max(2 * flush_interval_s - fresh.age_s, 0.05), left))


@dataclasses.dataclass(frozen=True)
class AnalysisResult:
    """The decision (promote | rollback | wait), its reasons, every check and both sides' evidence."""

    decision: str
    reasons: tuple[str, ...]
    stable: SideStats
    candidate: SideStats
    checks: tuple[Check, ...]
    config: AnalysisConfig
    log_dir: str
    since: Optional[str] = None
    labels: Optional[str] = None
    notes: tuple[str, ...] = ()
    report: Optional[str] = None
    prediction_drift: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False)
    freshness: Optional["LogFreshness"] = None
    # Requests that named their version or label (not judged): {route kind: {"stable", "candidate", "failed"}}.
    named_routes: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)

    def check(self, name: str) -> Check:
        return next(c for c in self.checks if c.name == name)

    def to_dict(self) -> dict[str, Any]:
        return {"decision": self.decision, "reasons": list(self.reasons), "stable": self.stable.to_dict(),
                "candidate": self.candidate.to_dict(), "checks": [c.to_dict() for c in self.checks],
                "prediction_drift": {k: v for k, v in self.prediction_drift.items() if k != "chart"},
                "config": self.config.to_dict(), "log_dir": self.log_dir, "since": self.since,
                "labels": self.labels, "notes": list(self.notes), "report": self.report,
                "log_freshness": self.freshness.to_dict() if self.freshness else None,
                "named_routes": {k: dict(v) for k, v in self.named_routes.items()}}

    def decision_reason(self) -> str:
        """The reason recorded with the decision in the rollout state: the reasons, joined."""
        return "; ".join(self.reasons) or f"analysis: {self.decision}"

    def decision_evidence(self) -> dict[str, Any]:
        """The evidence recorded with the decision in the rollout state: the checks, both sides' requests and the
        report."""
        return {"decision": self.decision, "checks": [c.to_dict() for c in self.checks],
                "requests": {"stable": self.stable.requests, "candidate": self.candidate.requests},
                "report": self.report}

    def lines(self) -> list[str]:
        s, c = self.stable, self.candidate
        out = [f"flywheel rollout analyze: {self.decision.upper()} candidate {c.version} vs stable {s.version} "
               f"({c.requests:,} vs {s.requests:,} requests)"]
        out += [f"  - {reason}" for reason in self.reasons]
        if self.named_routes:
            out.append(f"  not judged: {named_route_words(self.named_routes, s.version, c.version)}")
        if self.freshness:
            out.append(f"  log: {self.freshness.words()}")
        out += [f"  note: {note}" for note in self.notes]
        if self.report:
            out.append(f"  report: {self.report}")
        return out


# ---- reading the log ------------------------------------------------------------------------------------------

_COLUMNS = (REQUEST_ID, TIME, MODEL, MODEL_VERSION, PREDICTION, LATENCY_MS, STATUS, ERROR, ROLE, ROUTE)


def _since(since: Union[None, str, datetime.datetime]) -> Optional[datetime.datetime]:
    if since is None or isinstance(since, datetime.datetime):
        found = since
    else:
        try:
            found = datetime.datetime.fromisoformat(since.replace("Z", "+00:00"))
        except ValueError:
            raise AnalysisError(f"rollout analysis: since: expected an ISO 8601 time (2026-11-27T10:00:00Z), got "
                                f"{since!r}") from None
    if found is not None and found.tzinfo is None:
        found = found.replace(tzinfo=datetime.timezone.utc)
    return found


def read_log(path: str, what: str, extra: Sequence[str] = ()) -> pa.Table:
    """The request-log columns the analysis uses (those present) from every Parquet/CSV file under `path`; an
    existing folder with no files yet is an empty log."""
    if not storage.exists(path):
        raise AnalysisError(f"rollout analysis: {what} {path}: no such folder")
    if storage.isdir(path) and not [f for f in storage.walk_files(path)
                                    if f.lower().endswith((".parquet", ".csv"))
                                    and not os.path.basename(f).startswith((".", "_"))]:
        return pa.table({})
    try:
        table = profile.read_table(path, [*_COLUMNS, *extra])
    except profile.MonitorError as e:
        raise AnalysisError(f"rollout analysis: {what} {str(e).removeprefix('monitor: ')}") from None
    needed = [REQUEST_ID, MODEL_VERSION, PREDICTION, LATENCY_MS, *extra]
    absent = [c for c in needed if c not in table.column_names]
    if absent:
        raise AnalysisError(f"rollout analysis: {what} {path}: no column(s) {absent}; expected a request log "
                            f"(flywheel serve --log-dir) with {needed}, got {table.column_names}")
    return table


def _select(table: pa.Table, versions: Sequence[int], model: Optional[str],
            since: Optional[datetime.datetime]) -> tuple[dict[int, pa.Table], dict[str, int]]:
    """{version: its rows} and the counts of rows left out (other models, other versions, before `since`)."""
    left_out = {"other_model": 0, "other_version": 0, "before_since": 0}
    if table.num_rows == 0:
        return {v: pa.table({}) for v in versions}, left_out
    if model is not None and MODEL in table.column_names:
        keep = pc.fill_null(pc.equal(table.column(MODEL), model), False)
        left_out["other_model"] = table.num_rows - (pc.sum(keep).as_py() or 0)
        table = table.filter(keep)
    if since is not None:
        if TIME not in table.column_names:
            raise AnalysisError("rollout analysis: a start time was given but the log has no 'time' column")
        times = table.column(TIME)
        if not pa.types.is_timestamp(times.type):
            times = pc.cast(times, pa.timestamp("us", tz="UTC"))
        elif times.type.tz is None:
            times = pc.assume_timezone(times, "UTC")
        keep = pc.fill_null(pc.greater(times, pa.scalar(since, pa.timestamp("us", tz="UTC"))), False)
        left_out["before_since"] = table.num_rows - (pc.sum(keep).as_py() or 0)
        table = table.filter(keep)
    version_column = pc.cast(table.column(MODEL_VERSION), pa.int64())
    sides = {}
    for version in versions:
        keep = pc.fill_null(pc.equal(version_column, version), False)
        sides[version] = table.filter(keep)
    left_out["other_version"] = table.num_rows - sum(t.num_rows for t in sides.values())
    return sides, left_out


def split_routes(table: pa.Table) -> tuple[pa.Table, pa.Table]:
    """(the rows of requests the split routed, the rows of requests that named their version or label). A row
    without a route (a log written before the column, or a log that leaves it null) took the default route."""
    if table.num_rows == 0 or ROUTE not in table.column_names:
        return table, table.slice(0, 0)
    default = pc.fill_null(pc.equal(table.column(ROUTE), DEFAULT_ROUTE), True)
    return table.filter(default), table.filter(pc.invert(default))


def named_route_counts(sides: Mapping[str, pa.Table]) -> dict[str, dict[str, int]]:
    """{route kind: {"stable": requests, "candidate": requests, "failed": requests not answered}} of the requests
    that named their version or label, per side ({"stable": rows, "candidate": rows})."""
    counts: dict[str, dict[str, int]] = {}
    for side, table in sides.items():
        if table.num_rows == 0:
            continue
        failed, client = _row_flags(table)
        frame = pa.table({"route": pc.cast(table.column(ROUTE), pa.string()),
                          "id": pc.cast(table.column(REQUEST_ID), pa.string()), "failed": pc.or_(failed, client)})
        for route in sorted(set(frame.column("route").to_pylist())):
            rows = frame.filter(pc.equal(frame.column("route"), route))
            count = counts.setdefault(route, {"stable": 0, "candidate": 0, "failed": 0})
            count[side] += len(set(rows.column("id").to_pylist()))
            count["failed"] += len(set(rows.filter(rows.column("failed")).column("id").to_pylist()))
    return counts


def named_route_words(counts: Mapping[str, Mapping[str, int]], stable: int, candidate: int) -> str:
    """The requests that named their version or label, in words (for the CLI's output and the report)."""
    parts = [f"{c['stable'] + c['candidate']:,} named a {route} (stable {stable}: {c['stable']:,}, candidate "
             f"{candidate}: {c['candidate']:,}; {c['failed']:,} not answered)" for route, c in sorted(counts.items())]
    return ("; ".join(parts) + ": they bypassed the split, so they are counted here and not judged") if parts else ""


def _predictions(table: pa.Table, where: str) -> pa.ChunkedArray:
    """The prediction column as float64 (a list of one value per row unwrapped); raises for multi-output."""
    column = table.column(PREDICTION)
    if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
        extremes = pc.min_max(pc.list_value_length(column))
        if extremes["max"].as_py() not in (None, 1) or extremes["min"].as_py() not in (None, 1):
            raise AnalysisError(f"rollout analysis: {where}: column 'prediction' holds lists of several values "
                                "(a multi-output model); the analysis compares one score per row")
        column = pc.list_element(column, 0)
    try:
        return pc.cast(column, pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
        raise AnalysisError(f"rollout analysis: {where}: column 'prediction': expected numbers, got {column.type} "
                            f"({e})") from None


def _row_flags(table: pa.Table) -> tuple[pa.Array, pa.Array]:
    """(model error, client error) per row: status >= 500 or an error that is not a 4xx; a 4xx."""
    n = table.num_rows
    status = (pc.fill_null(pc.cast(table.column(STATUS), pa.int64()), 200) if STATUS in table.column_names
              else pa.array(np.full(n, 200, dtype=np.int64)))
    client = pc.and_(pc.greater_equal(status, 400), pc.less(status, 500))
    failed = pc.greater_equal(status, 500)
    if ERROR in table.column_names:
        has_error = pc.is_valid(table.column(ERROR))
        failed = pc.or_(failed, pc.and_(has_error, pc.invert(client)))
    return failed, client


def _numpy(values: pa.Array | pa.ChunkedArray, dtype: Any, fill: Any) -> np.ndarray:
    """An Arrow column as a numpy array of `dtype`, nulls as `fill`."""
    values = pc.fill_null(values, fill)
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    return np.asarray(values.to_numpy(zero_copy_only=False), dtype=dtype)


def side_stats(version: int, table: pa.Table, where: str) -> tuple[SideStats, np.ndarray, np.ndarray]:
    """One side's evidence, its successful rows' predictions and, for each of those, the index of its request."""
    if table.num_rows == 0:
        empty = np.array([], dtype=np.float64)
        return SideStats(version, 0, 0, 0, 0, 0, None, None, {}, {}), empty, empty.astype(np.int64)
    failed, client = _row_flags(table)
    row_failed, row_client = _numpy(failed, bool, False), _numpy(client, bool, False)
    row_shadow = (_numpy(pc.equal(table.column(ROLE), SHADOW), bool, False) if ROLE in table.column_names
                  else np.zeros(table.num_rows, dtype=bool))
    row_latency = _numpy(pc.cast(table.column(LATENCY_MS), pa.float64()), np.float64, math.nan)
    ids = _numpy(pc.cast(table.column(REQUEST_ID), pa.string()), object, "")
    _, request_of_row = np.unique(ids.astype(str), return_inverse=True)
    n = int(request_of_row.max()) + 1

    def per_request(values: np.ndarray) -> np.ndarray:
        out = np.zeros(n, dtype=bool)
        np.logical_or.at(out, request_of_row, values)
        return out

    req_failed = per_request(row_failed)
    req_client = per_request(row_client) & ~req_failed
    latency = np.full(n, -math.inf)
    np.maximum.at(latency, request_of_row, np.where(np.isnan(row_latency), -math.inf, row_latency))
    latency = latency[~req_failed & ~req_client]
    latency = latency[np.isfinite(latency)]
    latency_ms = ({f"p{q}": round(float(np.percentile(latency, q)), 3) for q in LATENCY_PERCENTILES}
                  if latency.size else {})
    answered = pa.array(~row_failed & ~row_client)
    values = _numpy(_predictions(table, where).filter(answered), np.float64, math.nan)
    groups = request_of_row[~row_failed & ~row_client]
    finite = np.isfinite(values)
    values, groups = values[finite], groups[finite]
    summary = ({"count": int(values.size), "mean": round(float(values.mean()), 6),
                "std": round(float(values.std()), 6), "min": round(float(values.min()), 6),
                "max": round(float(values.max()), 6)} if values.size else {"count": 0})
    stats = SideStats(version=version, requests=n, rows=table.num_rows,
                      shadow_requests=int(per_request(row_shadow).sum()), model_errors=int(req_failed.sum()),
                      client_errors=int(req_client.sum()), error_rate=round(float(req_failed.sum()) / n, 6),
                      client_error_rate=round(float(req_client.sum()) / n, 6), latency_ms=latency_ms,
                      predictions=summary)
    return stats, values, groups


def _labelled_auc(table: pa.Table, label: str, where: str) -> tuple[int, Optional[float], np.ndarray, np.ndarray]:
    """(labelled rows with a prediction, AUC or None when a class is absent, the labels, the scores)."""
    if table.num_rows == 0:
        return 0, None, np.array([], dtype=np.int64), np.array([], dtype=np.float64)
    failed, client = _row_flags(table)
    frame = pa.table({"label": pc.cast(table.column(label), pa.float64()), "score": _predictions(table, where)})
    frame = frame.filter(pc.invert(pc.or_(failed, client))).drop_null()
    labels = _numpy(frame.column("label"), np.float64, math.nan)
    scores = _numpy(frame.column("score"), np.float64, math.nan)
    value = monitor.auc(labels.astype(np.int64), scores) if frame.num_rows else float("nan")
    return frame.num_rows, (round(value, 6) if math.isfinite(value) else None), labels.astype(np.int64), scores


def auc_drop_bound(stable: tuple[np.ndarray, np.ndarray], candidate: tuple[np.ndarray, np.ndarray],
                   cfg: AnalysisConfig) -> Optional[float]:
    """The AUC drop (stable's minus candidate's) that the data shows at least, with confidence 1 - significance: the
    `significance` quantile of the drop over `resamples` bootstrap resamples of each side's labelled rows. None with
    no resamples or when a resample cannot hold both classes."""
    if cfg.resamples == 0:
        return None
    rng = np.random.default_rng(0)
    drops = []
    for _ in range(cfg.resamples):
        pair = []
        for labels, scores in (stable, candidate):
            pick = rng.integers(0, labels.size, labels.size)
            pair.append(monitor.auc(labels[pick], scores[pick]))
        drops.append(pair[0] - pair[1])
    drops_arr = np.asarray(drops)
    if not np.isfinite(drops_arr).all():
        return None
    return round(float(np.quantile(drops_arr, cfg.significance, method="lower")), 6)


# ---- checks ----------------------------------------------------------------------------------------------------

def _pct(x: Optional[float]) -> str:
    return "n/a" if x is None else f"{x:.2%}"


def _beyond_chance(c_hits: int, c_n: int, s_hits: int, s_n: int, significance: float) -> bool:
    """One-sided two-proportion z-test: is the candidate's rate above stable's by more than chance at `significance`?"""
    pooled = (c_hits + s_hits) / (c_n + s_n)
    if pooled in (0.0, 1.0):
        return False
    se = math.sqrt(pooled * (1.0 - pooled) * (1.0 / c_n + 1.0 / s_n))
    return (c_hits / c_n - s_hits / s_n) / se > statistics.NormalDist().inv_cdf(1.0 - significance)


def _rate_check(name: str, words: str, c_hits: int, c_rate: Optional[float], s_hits: int, s_rate: Optional[float],
                s: SideStats, c: SideStats, limit: float, cfg: AnalysisConfig, also: str = "") -> Check:
    rule = (f"fails when the candidate's {words} rate exceeds stable's by more than {limit:.2%} and by more than "
            f"chance (one-sided two-proportion z-test at {cfg.significance:g})")
    if s_rate is None or c_rate is None:
        return Check(name, None, None, limit, rule, "no requests on one side")
    increase = c_rate - s_rate
    failed = increase > limit + 1e-12 and _beyond_chance(c_hits, c.requests, s_hits, s.requests, cfg.significance)
    return Check(name, not failed, round(increase, 6), limit, rule,
                 f"candidate {_pct(c_rate)} ({c_hits:,} of {c.requests:,} requests) vs stable {_pct(s_rate)} "
                 f"({s_hits:,} of {s.requests:,}){also}")


def error_rate_check(s: SideStats, c: SideStats, cfg: AnalysisConfig) -> Check:
    return _rate_check("error_rate", "model-error (5xx)", c.model_errors, c.error_rate, s.model_errors, s.error_rate,
                       s, c, cfg.max_error_rate_increase, cfg)


def client_error_check(s: SideStats, c: SideStats, cfg: AnalysisConfig) -> Check:
    return _rate_check("client_error_rate", "client-error (4xx)", c.client_errors, c.client_error_rate,
                       s.client_errors, s.client_error_rate, s, c, cfg.max_client_error_rate_increase, cfg,
                       also=": the same traffic, refused by one side only")


def latency_check(s: SideStats, c: SideStats, cfg: AnalysisConfig) -> Check:
    rule = (f"fails when the candidate's p99 is more than {cfg.max_p99_latency_ratio:g}x stable's and more than "
            f"{cfg.min_p99_latency_increase_ms:g} ms above it")
    if "p99" not in s.latency_ms or "p99" not in c.latency_ms:
        return Check("latency_p99", None, None, cfg.max_p99_latency_ratio, rule,
                     "no successful requests on one side: latency not compared")
    sp, cp = s.latency_ms["p99"], c.latency_ms["p99"]
    ratio = cp / sp if sp > 0 else (math.inf if cp > 0 else 1.0)
    slower = ratio > cfg.max_p99_latency_ratio and cp - sp > cfg.min_p99_latency_increase_ms
    return Check("latency_p99", not slower, round(ratio, 4) if math.isfinite(ratio) else None,
                 cfg.max_p99_latency_ratio, rule,
                 f"p99 candidate {cp:.2f} ms vs stable {sp:.2f} ms (ratio {ratio:.2f})")


def noise_floor(stable: tuple[np.ndarray, np.ndarray], candidate: tuple[np.ndarray, np.ndarray],
                cfg: AnalysisConfig) -> dict[str, Any]:
    """What the prediction-drift metrics reach by chance between two sides of these sizes, tested together: the
    pooled requests (values, request index per value, for each side) are re-split at random `resamples` times
    into a stable and a candidate group of the original request counts; `metrics` holds each metric's floor
    (`joint_floors`). A copy of stable exceeds some metric's floor with probability about `significance`, however
    many metrics there are."""
    (s_values, s_groups), (c_values, c_groups) = stable, candidate
    if cfg.resamples == 0:
        return {"permutations": 0, "significance": cfg.significance, "metrics": {}}
    values = np.concatenate([s_values, c_values])
    s_requests = int(s_groups.max()) + 1 if s_groups.size else 0
    groups = np.concatenate([s_groups, c_groups + s_requests])
    requests = s_requests + (int(c_groups.max()) + 1 if c_groups.size else 0)
    c_requests = requests - s_requests
    rng = np.random.default_rng(0)
    reached: dict[str, list[float]] = {}
    for _ in range(cfg.resamples):
        to_candidate = np.zeros(requests, dtype=bool)
        to_candidate[rng.choice(requests, size=c_requests, replace=False)] = True
        rows = to_candidate[groups]
        found, _ = drift.numeric_checks(profile.numeric_column(values[~rows]), profile.numeric_column(values[rows]),
                                        cfg.prediction_drift)
        for check in found:
            if check["metric"] != "missing_rate_change":
                reached.setdefault(check["metric"], []).append(check["value"])
    return {"permutations": cfg.resamples, "significance": cfg.significance,
            "metrics": joint_floors(reached, cfg.significance)}


def joint_floors(reached: dict[str, list[float]], significance: float) -> dict[str, float]:
    """Per metric, the value chance reaches when the metrics are tested together (min-p, Westfall and Young):
    `reached` holds each metric's values over the same re-splits. A value's count is how many re-splits reach
    it (at or above) on its metric; a re-split's statistic is the smallest count over its metrics; `k` is that
    statistic's `significance` quantile; a metric's floor is its k-th largest value. A value above its floor is
    reached by fewer than k re-splits. Counts, not values, make metrics on different scales comparable."""
    raw = {m: np.asarray(v, dtype=np.float64) for m, v in reached.items()}
    if not raw:
        return {}
    ordered = {m: np.sort(v) for m, v in raw.items()}
    n = len(next(iter(raw.values())))
    counts = np.vstack([n - np.searchsorted(ordered[m], v, side="left") for m, v in raw.items()])
    k = int(np.quantile(counts.min(axis=0), significance, method="lower"))
    return {m: round(float(v[n - k]), 6) for m, v in ordered.items()}


def drift_check(found: dict[str, Any], cfg: AnalysisConfig) -> Check:
    floor = (found.get("noise_floor") or {}).get("metrics", {})
    rule = ("fails when any of the drift monitor's numeric checks crosses its threshold (the monitor's thresholds) "
            f"and what chance reaches at these sample sizes (the metrics tested together at {cfg.significance:g} "
            f"over {cfg.resamples} random re-splits of the pooled requests)")
    checks = found.get("checks") or []
    compared = [c for c in checks if c["metric"] != "missing_rate_change"]
    if not compared:
        return Check("prediction_drift", None, None, None, rule, "no predictions on one side: not compared")

    def bar(c: dict[str, Any]) -> float:
        return max(c["threshold"], floor.get(c["metric"], 0.0))

    crossed = [c for c in compared if c["drift"] and c["value"] > floor.get(c["metric"], -math.inf)]
    worst = max(crossed or compared, key=lambda c: c["value"] / bar(c) if bar(c) else 0.0)
    shown = crossed or [worst]

    def words(c: dict[str, Any]) -> str:
        chance = f"; chance reaches {floor[c['metric']]:.4f}" if c["metric"] in floor else ""
        return f"{c['metric']} {c['value']:.4f} (threshold {c['threshold']:g}{chance})"

    return Check("prediction_drift", not crossed, worst["value"], bar(worst), rule,
                 ("prediction distribution changed: " if crossed else "largest relative to its threshold: ")
                 + "; ".join(words(c) for c in shown))


def constant_check(s: SideStats, c: SideStats, cfg: AnalysisConfig) -> Check:
    rule = (f"fails when the candidate's prediction standard deviation is below {cfg.min_prediction_std_ratio:g} "
            "of stable's")
    s_std, c_std = s.predictions.get("std"), c.predictions.get("std")
    if s_std is None or c_std is None:
        return Check("constant_output", None, None, cfg.min_prediction_std_ratio, rule,
                     "no predictions on one side: not compared")
    if s_std <= 0:
        return Check("constant_output", None, None, cfg.min_prediction_std_ratio, rule,
                     "stable's predictions are constant too: nothing to compare the spread with")
    ratio = c_std / s_std
    return Check("constant_output", ratio >= cfg.min_prediction_std_ratio, round(ratio, 6),
                 cfg.min_prediction_std_ratio, rule,
                 f"prediction std candidate {c_std:.4g} vs stable {s_std:.4g} (ratio {ratio:.3g}); candidate "
                 f"range {c.predictions['min']:.4g}..{c.predictions['max']:.4g}")


def auc_check(s: SideStats, c: SideStats, cfg: AnalysisConfig, labels: Optional[str],
              bound: Optional[float] = None) -> Check:
    """`bound`: the drop the labelled rows show at least (`auc_drop_bound`), when the observed drop is over the
    limit."""
    rule = (f"fails when the candidate's AUC is more than {cfg.max_auc_drop:g} below stable's, with confidence "
            f"{1 - cfg.significance:.0%} (a bootstrap of each side's labelled rows, {cfg.resamples} resamples)")
    if labels is None:
        return Check("auc", None, None, cfg.max_auc_drop, rule, "no joined labels given")
    short = [f"{name} {side.labelled_rows:,}" for name, side in (("stable", s), ("candidate", c))
             if side.labelled_rows < cfg.min_labelled_rows]
    if short:
        return Check("auc", None, None, cfg.max_auc_drop, rule,
                     f"too few labelled rows to compare ({', '.join(short)}; at least {cfg.min_labelled_rows:,} "
                     "per side)")
    if s.auc is None or c.auc is None:
        return Check("auc", None, None, cfg.max_auc_drop, rule,
                     "the labels of one side hold one class only: its AUC is undefined")
    drop = s.auc - c.auc
    beyond = drop > cfg.max_auc_drop + 1e-12 and (bound is None and cfg.resamples == 0
                                                    or bound is not None and bound > cfg.max_auc_drop)
    chance = (f"; with {1 - cfg.significance:.0%} confidence the drop is at least {bound:.4f}"
              if bound is not None else "")
    return Check("auc", not beyond, round(drop, 6), cfg.max_auc_drop, rule,
                 f"AUC candidate {c.auc:.4f} ({c.labelled_rows:,} labelled rows) vs stable {s.auc:.4f} "
                 f"({s.labelled_rows:,}): drop {drop:.4f}{chance}")


# ---- the analysis ---------------------------------------------------------------------------------------------

OVERRULED_BY_AUC = ("the candidate's AUC on joined labels is no worse than stable's (the auc check passed): a "
                    "changed distribution that ranks as well is not a reason to roll back")
RULE = ("waits until each side has {min_requests:,} requests, then rolls back when a check fails, except "
        "prediction_drift when the auc check passed on joined labels, and promotes otherwise")


def promote_reasons(checks: Sequence[Check]) -> tuple[str, ...]:
    """What a promotion stands on: the checks that passed, those that failed without blocking (and why), those
    not evaluated."""
    passed = [ch.name for ch in checks if ch.passed]
    overruled = [ch for ch in checks if ch.passed is False and ch.overruled]
    skipped = [ch.name for ch in checks if ch.passed is None]
    head = "passed" if overruled else "every check passed"
    out = [f"{head}: {', '.join(passed)}" + (f"; not evaluated: {', '.join(skipped)}" if skipped else "")]
    out += [f"{ch.name} failed but does not block: {ch.detail}; {ch.overruled}" for ch in overruled]
    return tuple(out)

def analyze(log_dir: str, stable: int, candidate: int, *, since: Union[None, str, datetime.datetime] = None,
            labels: Optional[str] = None, config: AnalysisConfig = AnalysisConfig(), model: Optional[str] = None
            ) -> AnalysisResult:
    """Candidate vs stable on the request log under `log_dir` (rows after `since`, of `model` when given);
    `labels`: the log with labels joined. `flywheel.rollout.report.write` writes the result's files."""
    if int(stable) == int(candidate):
        raise AnalysisError(f"rollout analysis: stable and candidate are the same version ({stable})")
    stable, candidate = int(stable), int(candidate)
    start = _since(since)
    log = read_log(log_dir, "request log")
    freshness = log_freshness(log)
    notes = []
    if log.num_rows and STATUS not in log.column_names:
        notes.append("the log has no 'status' column (written before rollout routing): every logged row counts as "
                     "status 200")
    if log.num_rows and ROLE not in log.column_names:
        notes.append("the log has no 'rollout_role' column: shadow requests cannot be told apart")
    if log.num_rows and ROUTE not in log.column_names:
        notes.append(f"the log has no '{ROUTE}' column: requests that named a version or label cannot be told "
                     "apart from those the split routed, and are judged with them")
    log, named = split_routes(log)
    sides, left_out = _select(log, (stable, candidate), model, start)
    named_sides, _ = _select(named, (stable, candidate), model, start)
    named_routes = named_route_counts({"stable": named_sides[stable], "candidate": named_sides[candidate]})
    for key, words in (("other_version", "of other versions"), ("other_model", f"of models other than {model!r}"),
                       ("before_since", f"logged at or before {start.isoformat() if start else ''}")):
        if left_out[key]:
            notes.append(f"{left_out[key]:,} rows {words} left out")
    s, s_values, s_groups = side_stats(stable, sides[stable], f"stable version {stable}")
    c, c_values, c_groups = side_stats(candidate, sides[candidate], f"candidate version {candidate}")
    if c.shadow_requests:
        notes.append(f"{c.shadow_requests:,} candidate requests were shadow copies: answered and logged, never "
                     "returned to a client")
    auc_bound: Optional[float] = None
    if labels is not None:
        labelled, _ = _select(split_routes(read_log(labels, "labels", (config.label_column,)))[0],
                              (stable, candidate), model, start)
        rows_s, auc_s, *stable_labelled = _labelled_auc(labelled[stable], config.label_column,
                                                        f"labels, stable version {stable}")
        rows_c, auc_c, *candidate_labelled = _labelled_auc(labelled[candidate], config.label_column,
                                                           f"labels, candidate version {candidate}")
        s = dataclasses.replace(s, labelled_rows=rows_s, auc=auc_s)
        c = dataclasses.replace(c, labelled_rows=rows_c, auc=auc_c)
        if auc_s is not None and auc_c is not None and auc_s - auc_c > config.max_auc_drop:
            auc_bound = auc_drop_bound(tuple(stable_labelled), tuple(candidate_labelled), config)
    found: dict[str, Any] = {}
    if s_values.size and c_values.size:
        found = drift.compare_column(PREDICTION, profile.numeric_column(s_values), profile.numeric_column(c_values),
                                     config.prediction_drift)
        if any(c["drift"] for c in found.get("checks", ())):
            found["noise_floor"] = noise_floor((s_values, s_groups), (c_values, c_groups), config)
    checks = (error_rate_check(s, c, config), client_error_check(s, c, config), latency_check(s, c, config),
              drift_check(found, config), constant_check(s, c, config), auc_check(s, c, config, labels, auc_bound))
    by_name = {check.name: check for check in checks}
    few = [f"{name} version {side.version} has {side.requests:,}" for name, side in (("stable", s), ("candidate", c))
           if side.requests < config.min_requests]
    if few:
        decision = WAIT
        reasons = (f"min_requests: {' and '.join(few)} requests, fewer than the {config.min_requests:,} per side "
                   "needed to decide",)
    else:
        if by_name["auc"].passed and by_name["prediction_drift"].passed is False:
            # A retrained model is expected to answer differently; joined labels saying it ranks no worse outrank
            # the shift of its distribution (a constant output still fails on its own check).
            checks = tuple(dataclasses.replace(ch, overruled=OVERRULED_BY_AUC) if ch.name == "prediction_drift"
                           else ch for ch in checks)
        failed = [ch for ch in checks if ch.blocks]
        decision = ROLLBACK if failed else PROMOTE
        reasons = tuple(ch.reason() for ch in failed) or promote_reasons(checks)
    return AnalysisResult(decision=decision, reasons=reasons, stable=s, candidate=c, checks=checks, config=config,
                          log_dir=log_dir, since=start.isoformat() if start else None, labels=labels,
                          notes=tuple(notes), prediction_drift=found, freshness=freshness, named_routes=named_routes)
