"""Request logs: what production sent and what the model answered, as Parquet spans Ingest and the monitor read.

`RequestLog.log(...)` is called by the server after it has answered; it takes the request's values, one row per
instance, and returns: it never blocks, never raises on I/O, and wakes the writer thread only when nothing was
waiting or a flush is due at once (`max_rows_per_file` rows, or half of `max_pending_requests` requests or of
`max_pending_bytes`), not once per request. The server's common request (one row, answered, one numeric prediction)
costs one append of a tuple of its plain values; any other is typed into the columns of the waiting requests
(numbers into typed arrays), after the queued tuples, which go in a column at a time. Either way a waiting request
holds none of the objects the server made for it (its decoded rows, the batch's output). A background thread takes
the columns at each flush, turns them into Arrow arrays without a pass over the requests (typed arrays without a
copy; pyarrow encodes and compresses without the GIL), and writes them in batches:

    <log_dir>/span-<N>/part-<UTC time>-<writer>-<seq>.parquet

- **Span.** N = the request's UTC time (from `clock`) // `span_seconds`; with the default 86,400 s, N is the
  UTC day counted from 1970-01-01 (2026-11-27 is span-20784), so consecutive days are consecutive spans and
  `--num-spans 3` / `retrain --window 3` read the last three days.
- **Columns.** `request_id`, `row_index` (the instance's position in its request), `time` (UTC, microseconds),
  `model`, `model_version`, `signature_name`, `latency_ms`, `rollout_role` (stable | canary | shadow while a
  rollout runs, else null), `request_route` (`default`; `version` or `label` for a request that named one and
  so bypassed a rollout's split), `status` (the HTTP status), `error` (its message, null when answered), one column
  per input feature, `prediction` (float64; a list of float64 for a multi-output model; null for a failed
  request). Failed predict requests are logged too, with their features where the body had them (a failed
  request before any answered one, with no `features` given, is dropped and counted). Feature columns are
  fixed when the log is created:
  `features` ({name: INT|FLOAT|BYTES}, e.g. `features_from_schema(schema, names)`); without it, from the
  first logged row (numbers as FLOAT, text as BYTES). Keys a row has beyond them are not logged; a feature a
  row lacks is null; a value of the wrong type is null and counted in `invalid_values`. So every file of a log
  has the same feature column types (the prediction column is float64 until a first list prediction is logged).
  Features typed from a first row leave out its keys that are request-log columns or cannot name a column.
- **A value costs its own cell, never its neighbours' rows.** Text with a lone surrogate (`"\\ud800"` in a JSON
  body, which Python's parser keeps and no UTF-8 can hold), in a feature, the signature name, the model name,
  the request id or the error message, is stored with U+FFFD in place of each; a value a column cannot hold
  otherwise (a version beyond int64) is null; either is counted in `invalid_values`. These are found only when
  a column's conversion fails, so a flush without them pays nothing. A file that still cannot be written loses
  its own rows (counted), not the other files of its flush.
- **Whole files only.** On a local disk a file is written under a hidden temporary name (`.part-...tmp`,
  which Ingest and the monitor pass over), fsynced, then renamed into place; on object storage (gs://, s3://,
  through `tfx.dsl.io.fileio`) the object is written once under its final name, which appears only when
  complete.
- **What can be lost.** Rows are written `flush_interval_s` (default 5 s) after the first row of a batch arrives, or
  as soon as `max_rows_per_file` rows or half of `max_pending_requests` (default 100,000) requests are waiting. A
  killed server (SIGKILL, OOM) loses at most the requests of the last flush interval plus a file being written;
  `close()` (the server calls it on shutdown and SIGTERM) writes everything first. A full set of waiting requests
  (`max_pending_requests`, or `max_pending_bytes` (default 256 MiB) counting what waits and what is being written,
  each request at its body's length: a writer that cannot keep up, or bodies too large for memory), a full disk or
  any write error never reaches serving: the rows are dropped and counted (`dropped_rows`, `write_errors`, for the
  server's metrics) and the first error of a run of failures is logged, then its end.
- **Sampling** is per request and deterministic: a request is kept when the hash of its id falls below
  `sample`, so a replay of the same ids samples the same requests.
"""

from __future__ import annotations

import array
import datetime
import hashlib
import logging
import operator
import os
import re
import threading
import time
import uuid
from typing import Any, Callable, Mapping, Optional, Sequence

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from flywheel import storage
from flywheel.data import parsing
from flywheel.monitoring import drift
from flywheel.server.log_columns import (
    DEFAULT_ROUTE,
    ERROR,
    LATENCY_MS,
    MODEL,
    MODEL_VERSION,
    PREDICTION,
    REQUEST_ID,
    REQUEST_LOG_COLUMNS,
    REQUEST_ROUTE,
    ROLLOUT_COLUMNS,
    ROLLOUT_ROLE,
    ROW_INDEX,
    SIGNATURE_NAME,
    STATUS,
    TIME,
)

logger = logging.getLogger(__name__)

INT, FLOAT, BYTES = "INT", "FLOAT", "BYTES"
SPAN_SECONDS = 86_400
# Log data waiting to be written (and being written) at most, in bytes: beyond it requests are dropped and counted.
DEFAULT_MAX_PENDING_BYTES = 256 * 2**20
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
# Lone surrogates: a JSON body may carry them as escapes (`"\ud800"`), Python's parser keeps them, no UTF-8 holds them.
_SURROGATES = re.compile("[\ud800-\udfff]")
# A waiting request's bytes when the caller gives none (see `RequestLog.log`): per row, its request-level fields and
# each feature's cell, plus the length of its text.
_ROW_BYTES, _CELL_BYTES = 64, 8
_ARROW = {INT: pa.int64(), FLOAT: pa.float64(), BYTES: pa.string()}
_LOG_COLUMNS = frozenset((*REQUEST_LOG_COLUMNS, *ROLLOUT_COLUMNS, PREDICTION))
_DTYPE_KINDS = {"int8": INT, "int16": INT, "int32": INT, "int64": INT, "uint8": INT, "uint16": INT, "uint32": INT,
                "float16": FLOAT, "float32": FLOAT, "float64": FLOAT, "double": FLOAT, "string": BYTES, "str": BYTES,
                "bytes": BYTES, "DT_INT64": INT, "DT_INT32": INT, "DT_FLOAT": FLOAT, "DT_DOUBLE": FLOAT,
                "DT_STRING": BYTES}


def feature_kind(kind: str) -> str:
    """INT, FLOAT or BYTES from Ingest's kinds or a dtype name (int64, float32, string, DT_FLOAT...)."""
    if kind in _ARROW:
        return kind
    if kind in _DTYPE_KINDS:
        return _DTYPE_KINDS[kind]
    raise ValueError(f"request log: feature kind {kind!r}: expected INT, FLOAT, BYTES or a dtype name "
                     f"({', '.join(sorted(_DTYPE_KINDS))})")


def features_from_schema(schema_path: str, names: Optional[Sequence[str]] = None) -> dict[str, str]:
    """{name: INT|FLOAT|BYTES} of a TFDV schema's serving features (`names` only, in that order, when given)."""
    kinds = {c.name: c.kind for c in parsing.columns_from_schema(parsing.load_schema(schema_path))}
    policy = drift.Policy.from_schema(schema_path)
    serving_features = [n for n in kinds if n not in policy.labels]
    unknown = [n for n in names or () if n not in serving_features]
    if unknown:
        raise ValueError(f"request log: features {unknown} are not serving features of {schema_path}; it has "
                         f"{serving_features}")
    return {n: kinds[n] for n in (names if names is not None else serving_features)}


def sampled(request_id: str, share: float) -> bool:
    """True when the request is in the sample: the first 8 bytes of sha256(id), as a fraction, below `share`."""
    if share >= 1.0:
        return True
    if share <= 0.0:
        return False
    digest = hashlib.sha256(request_id.encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64 < share


def span_of(timestamp: float, span_seconds: int = SPAN_SECONDS) -> int:
    """The span a request's UTC Unix time falls in: whole `span_seconds` windows since 1970-01-01."""
    return int(timestamp // span_seconds)


def _scalar(value: Any) -> Any:
    """A one-element list (a [1]-shaped feature in an `instances` row) as its element."""
    if isinstance(value, (list, tuple)) and len(value) == 1:
        return value[0]
    return value


def _typed(value: Any, kind: str) -> Any:
    """The value as the column stores it, or raises ValueError."""
    value = _scalar(value)
    if value is None:
        return None
    if kind == BYTES:
        if isinstance(value, bytes):
            return value.decode("utf-8", "replace")
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ValueError(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(value)
    if kind == INT:
        if isinstance(value, float) and not value.is_integer() or not _INT64_MIN <= value <= _INT64_MAX:
            raise ValueError(value)
        return int(value)
    try:
        return float(value)
    except OverflowError:  # an int beyond float's range
        raise ValueError(value) from None


def _column_name(name: Any) -> bool:
    """True for a name a Parquet column can have: text with no lone surrogate."""
    return isinstance(name, str) and not _SURROGATES.search(name)


def _inferred(row: Mapping) -> dict[str, str]:
    """The feature columns typed from a first row: text as BYTES, anything else FLOAT; a key that is a request-log
    column or cannot name a column is left out, as keys beyond declared features are."""
    return {name: BYTES if isinstance(_scalar(value), (str, bytes)) else FLOAT for name, value in row.items()
            if _column_name(name) and name not in _LOG_COLUMNS}


def _typed_names(rows: Any) -> Optional[list[str]]:
    """The inputs of typed rows (`codec.Rows`: their fields f0, f1... in this order), None for {feature: value} rows."""
    return getattr(rows, "names", None)


def _row_dict(rows: Any, i: int) -> dict:
    names = _typed_names(rows)
    return rows[i] if names is None else dict(zip(names, msgspec.structs.astuple(rows[i]), strict=True))


# Typed rows' field types that a column of each kind takes as they are (the decoder admits nothing else).
_AS_IS = {FLOAT: (float, int), INT: (int,), BYTES: (str,)}
_NUMERIC = {INT: ("q", np.int64), FLOAT: ("d", np.float64)}
_PLACEHOLDER = {INT: 0, FLOAT: 0.0}
_NO_PLAN = object()


class _Staged(msgspec.Struct, gc=False):
    """One request's row-level values, typed off the lock: `columns` in the log's feature order (a null numeric
    cell holds a placeholder, listed in `nulls` as (feature position, row)), `invalid` the rows of its cells stored
    as null for a wrong type (one entry per cell), the predictions as flat float values with each row's count of
    values (0 for a null prediction, its row listed in `null_predictions`); `is_list`: a list per row (None when
    every prediction is null)."""

    columns: Sequence[Sequence]
    nulls: list
    invalid: list
    predictions: list
    lengths: list
    null_predictions: list
    is_list: Optional[bool]
    row: Optional[tuple] = None


def _stage_values(features: Mapping[str, str], rows: Sequence, count: int) -> _Staged:
    """The general path: each value typed (`_typed`), a missing one null, a wrong one null and counted."""
    dicts = rows if _typed_names(rows) is None else [_row_dict(rows, i) for i in range(count)]
    columns, nulls, invalid = [], [], []
    for position, (name, kind) in enumerate(features.items()):
        column = []
        for row, values in enumerate(dicts):
            try:
                value = _typed(values.get(name), kind)
            except ValueError:
                value = None
                invalid.append(row)
            if value is None and kind != BYTES:
                value = _PLACEHOLDER[kind]
                nulls.append((position, row))
            column.append(value)
        columns.append(column)
    return _Staged(columns, nulls, invalid, [], [], [], None)


class _Buffer:
    """The requests logged since the last flush, as columns (answered one-row requests first queued as tuples of
    their values, see `add_one`). A waiting request holds none of the objects the server made for it (its decoded
    rows, the batch's output), and a flush builds its Arrow columns from these buffers without a pass over the
    requests."""

    def __init__(self, features: Mapping[str, str]):
        self.kinds = features  # the log's own {feature: kind}, fixed once set
        self.requests = self.rows = 0  # every request logged since the flush: in the columns or in `answered`
        self.bytes = 0  # their size, as the callers gave it or estimated (`RequestLog.log`)
        self.at, self.latency = array.array("d"), array.array("d")
        self.status, self.counts = array.array("i"), array.array("q")
        self.request_id: list = []
        self.model: list = []
        self.version: list = []
        self.signature: list = []
        self.role: list = []
        self.route: list = []  # None: the default route
        self.error: list = []
        self.features = [array.array(_NUMERIC[kind][0]) if kind in _NUMERIC else [] for kind in features.values()]
        self.nulls: list[list[int]] = [[] for _ in features]
        self.invalid: list[int] = []  # the row of each cell stored as null for a wrong type
        self.predictions, self.lengths = array.array("d"), array.array("q")
        self.null_predictions: list[int] = []
        # Answered one-row requests not yet in the columns, in order: (time, request id, model, version, signature,
        # latency, prediction, *feature values), one flat tuple of plain values each (which the collector stops
        # tracking at its first pass), one append on the server's side; `settle` moves them into the columns all at
        # once, a column at a time, before any other request goes in and before the flush.
        self.answered: list[tuple] = []

    def add(self, at: float, request_id: str, model: str, version: Optional[int], signature: str, latency_ms: float,
            role: Optional[str], status: int, error: Optional[str], count: int, staged: _Staged, size: int,
            route: Optional[str] = None) -> None:
        """Appends one request of `size` bytes; on any failure (a value an array cannot take) every buffer is cut
        back to where it was, so the columns stay aligned, and the error is raised."""
        self.settle()
        self._add(at, request_id, model, version, signature, latency_ms, role, status, error, count, staged, route)
        self.requests += 1
        self.rows += count
        self.bytes += size

    def add_one(self, entry: tuple, size: int) -> None:
        """Queues an answered one-row request with one numeric prediction, (time, request id, model, version,
        signature, latency, prediction, *its values in the features' order, of the columns' own types), of `size`
        bytes: the server's common request, spared `add`'s generality until `settle`."""
        self.answered.append(entry)
        self.requests += 1
        self.rows += 1
        self.bytes += size

    def settle(self) -> None:
        """Moves the queued one-row requests into the columns, a column at a time. A value a column cannot take
        (an int beyond int64 in a typed row built by hand) sends them back one by one, each typed as `add` types
        a row it cannot take as is."""
        entries, self.answered = self.answered, []
        if not entries:
            return
        count = len(entries)
        at, ids, models, versions, signatures, latencies, predictions, *features = zip(*entries, strict=True)
        rows, start = len(self.lengths), len(self.at)
        try:
            for buffer, column in zip(self.features, features, strict=True):
                buffer.extend(column)
        except (OverflowError, TypeError, ValueError):
            self._cut(rows, len(self.predictions), start)
            for entry in entries:
                staged = _stage_values(self.kinds, [dict(zip(self.kinds, entry[7:], strict=True))], 1)
                staged.predictions, staged.lengths = [entry[6]], [1]
                self._add(*entry[:6], None, 200, None, 1, staged)
            return
        self.predictions.extend(predictions)
        ones = array.array("q", [1]) * count
        self.lengths.extend(ones)
        self.counts.extend(ones)
        self.at.extend(at)
        self.latency.extend(latencies)
        self.status.extend(array.array("i", [200]) * count)
        self.request_id.extend(ids)
        self.model.extend(models)
        self.version.extend(versions)
        self.signature.extend(signatures)
        self.role.extend([None] * count)
        self.route.extend([None] * count)
        self.error.extend([None] * count)

    def _add(self, at: float, request_id: str, model: str, version: Optional[int], signature: str, latency_ms: float,
             role: Optional[str], status: int, error: Optional[str], count: int, staged: _Staged,
             route: Optional[str] = None) -> None:
        """Appends one request to the columns (cut back to where they were, and the error raised, on failure)."""
        rows, values, requests = len(self.lengths), len(self.predictions), len(self.at)
        try:
            if staged.row is not None:
                for buffer, value in zip(self.features, staged.row, strict=True):
                    buffer.append(value)
            else:
                for buffer, column in zip(self.features, staged.columns, strict=True):
                    buffer.extend(column)
            for feature, row in staged.nulls:
                self.nulls[feature].append(rows + row)
            if staged.invalid:
                self.invalid.extend(rows + row for row in staged.invalid)
            if staged.null_predictions:
                self.null_predictions.extend(rows + row for row in staged.null_predictions)
            self.predictions.extend(staged.predictions)
            self.lengths.extend(staged.lengths)
            self.at.append(at)
            self.latency.append(latency_ms)
            self.status.append(status)
        except Exception:
            self._cut(rows, values, requests)
            raise
        self.counts.append(count)
        self.request_id.append(request_id)
        self.model.append(model)
        self.version.append(version)
        self.signature.append(signature)
        self.role.append(role)
        self.route.append(route)
        self.error.append(error)

    def _cut(self, rows: int, values: int, requests: int) -> None:
        """Drops whatever a failed append left: rows from `rows` on, prediction values from `values` on, request
        fields from `requests` on."""
        for buffer in (*self.features, self.lengths):
            del buffer[rows:]
        del self.predictions[values:]
        for positions in (*self.nulls, self.invalid, self.null_predictions):
            while positions and positions[-1] >= rows:
                positions.pop()
        for buffer in (self.at, self.latency, self.status):
            del buffer[requests:]


class RequestLog:
    """Logs requests to `<log_dir>/span-N/*.parquet` off the response path (see the module docstring).

    Counters (read them for metrics): `logged_rows` (written), `dropped_rows` (lost: queue full, write errors,
    after close), `write_errors` (files that could not be written), `invalid_values` (cells stored as null),
    `files_written`.
    """

    def __init__(self, log_dir: str, *, features: Optional[Mapping[str, str]] = None, sample: float = 1.0,
                 flush_interval_s: float = 5.0, max_rows_per_file: int = 100_000, span_seconds: int = SPAN_SECONDS,
                 max_pending_requests: int = 100_000, max_pending_bytes: int = DEFAULT_MAX_PENDING_BYTES,
                 clock: Callable[[], float] = time.time):
        if not 0.0 <= sample <= 1.0:
            raise ValueError(f"request log: sample: expected a share from 0 to 1, got {sample}")
        if flush_interval_s <= 0 or min(max_rows_per_file, span_seconds, max_pending_requests,
                                        max_pending_bytes) < 1:
            raise ValueError(f"request log: expected flush_interval_s > 0, max_rows_per_file, span_seconds, "
                             f"max_pending_requests and max_pending_bytes >= 1; got {flush_interval_s}, "
                             f"{max_rows_per_file}, {span_seconds}, {max_pending_requests}, {max_pending_bytes}")
        self.log_dir = log_dir
        self.sample = sample
        self.flush_interval_s = flush_interval_s
        self.max_rows_per_file = max_rows_per_file
        self.span_seconds = span_seconds
        self._clock = clock
        self._features: Optional[dict[str, str]] = None
        self._buffer: Optional[_Buffer] = None  # requests waiting to be written (guarded by _lock)
        self._plans: dict[type, Optional[Callable]] = {}  # typed rows' type -> getter of the features' values
        self._last_plan: tuple = (None, None)  # (the row type looked up last, its plan), read and set as one
        if features is not None:
            self._set_features({name: feature_kind(kind) for name, kind in features.items()})
        self._prediction_list: Optional[bool] = None
        self.logged_rows = self.dropped_rows = self.write_errors = self.invalid_values = self.files_written = 0
        self._failing = False
        self._lock = threading.Lock()
        self._closed = self._stopping = False
        self.max_pending_requests = max_pending_requests
        self.max_pending_bytes = max_pending_bytes
        self._early_bytes = (max_pending_bytes + 1) // 2  # waiting bytes that start the writer at once
        self._byte_limit = max_pending_bytes  # the bytes that may wait: less those being written (guarded by _lock)
        self._flushes: list[threading.Event] = []  # flush() calls waiting for the next write
        self._wake = threading.Event()
        self._writer = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._seq = 0
        self._thread = threading.Thread(target=self._run, name="flywheel-request-log", daemon=True)
        self._thread.start()

    # ---- the server's side: never blocks, never raises on I/O ----------------------------------------------

    # The server hands this log the rows as `codec.parse_rows` decoded them and the single output's numpy rows
    # instead of {feature: value} dicts and lists; their values are taken out of them at once.
    typed_rows = True
    # ...and the length of the request's body as `body_bytes`, its size while it waits.
    takes_body_bytes = True

    def log(self, request_id: str, model: str, version: int, signature: str, rows: Sequence,
            predictions: Any, latency_ms: float, *, role: Optional[str] = None, status: int = 200,
            error: Optional[str] = None, body_bytes: Optional[int] = None, route: Optional[str] = None) -> None:
        """Takes one request's values for the next flush (rows: its instances as {feature: value}, or
        `codec.Rows`; one prediction per row, as a list or a numpy array of the output's rows, None for a failed
        request); role, status and error: its rollout role, HTTP status and error message; route: `version` or
        `label` for a request that named one (None: the default route); body_bytes: its size
        as received, which counts against `max_pending_bytes` while it waits (None: estimated from its rows, a
        fixed cost per row and cell plus the length of its text). A request with no rows is not logged; one whose
        predictions do not match its rows, or beyond the waiting limits, is lost, counted."""
        count = len(rows)
        if not count or not sampled(request_id, self.sample):
            return
        if count == 1 and status == 200 and role is None and route is None and self._prediction_list is False and \
                type(predictions) is np.ndarray and predictions.size == 1 and predictions.dtype.kind in "fiu" and \
                self._log_one(request_id, model, version, signature, rows, predictions.item(), latency_ms,
                              body_bytes):
            return
        if self._features is None:  # typed from the first answered request's row
            if status != 200:
                with self._lock:
                    self._lose(count, f"request {request_id!r} failed before any answered request typed the feature "
                                      "columns")
                return
            with self._lock:
                if self._features is None:
                    self._set_features(_inferred(_row_dict(rows, 0)))
        staged = self._stage(rows, predictions, count)
        at = self._clock()
        size = body_bytes if body_bytes is not None or staged is None else self._estimate(staged, count)
        with self._lock:
            if staged is None:
                given = "no predictions" if predictions is None else f"{len(predictions)} prediction(s)"
                self._lose(count, f"request {request_id!r}: {given} for {count} row(s)")
                return
            if self._closed:
                self._lose(count, "the request log is closed")
                return
            if self._buffer.requests >= self.max_pending_requests:
                self._lose(count, f"the queue of {self.max_pending_requests:,} requests waiting to be written "
                                  "is full")
                return
            if self._buffer.bytes + size > self._byte_limit:
                self._lose(count, f"request {request_id!r} of {size:,} bytes: the log data waiting to be written "
                                  f"would exceed max_pending_bytes ({self.max_pending_bytes:,}); "
                                  f"{self._buffer.bytes + self.max_pending_bytes - self._byte_limit:,} bytes wait")
                return
            if staged.is_list is not None and staged.is_list != self._prediction_list:
                if self._prediction_list is None:
                    self._prediction_list = staged.is_list
                else:  # a scalar among lists or a list among scalars: stored as null
                    staged = self._null_predictions(staged, count)
            try:
                self._buffer.add(at, request_id, model, version, signature, latency_ms, role, status, error, count,
                                 staged, size, route)
            except (OverflowError, TypeError, ValueError):  # a typed row's value its column cannot take as is
                # (an int beyond int64 in a hand-built row): one by one
                typed = _stage_values(self._features, rows, count)
                typed.invalid.extend(staged.invalid)
                typed.predictions, typed.lengths = staged.predictions, staged.lengths
                typed.null_predictions, typed.is_list = staged.null_predictions, staged.is_list
                self._buffer.add(at, request_id, model, version, signature, latency_ms, role, status, error, count,
                                 typed, size, route)
            wake = self._buffer.requests == 1 or self._full(self._buffer)
        if wake:
            self._wake.set()

    def _log_one(self, request_id: str, model: str, version: int, signature: str, rows: Sequence, prediction: float,
                 latency_ms: float, body_bytes: Optional[int]) -> bool:
        """`log` of an answered one-row request with one numeric prediction, once predictions are known to be
        scalars; False when its row needs typing (or the log is closed or full): `log`'s general path then takes
        it."""
        getter = self._plan(rows)
        if getter is None:
            return False
        values = getter(rows[0])
        if len(self._features) == 1:
            values = (values,)
        entry = (float(self._clock()), request_id, model, version, signature, float(latency_ms), prediction) + values
        size = body_bytes if body_bytes is not None else self._estimate_row(values)
        with self._lock:
            buffer = self._buffer
            if self._closed or buffer.requests >= self.max_pending_requests or buffer.bytes + size > self._byte_limit:
                return False  # lost and counted by the general path
            buffer.add_one(entry, size)
            wake = buffer.requests == 1 or self._full(buffer)
        if wake:
            self._wake.set()
        return True

    def _estimate_row(self, values: Sequence) -> int:
        """The bytes of one row of these feature values, when the caller gave none: see `log`."""
        return _ROW_BYTES + _CELL_BYTES * len(values) + sum(len(v) for v in values if isinstance(v, str))

    def _estimate(self, staged: _Staged, count: int) -> int:
        """The bytes of a request's staged rows, when the caller gave none: see `log`."""
        if staged.row is not None:
            return self._estimate_row(staged.row)
        text = sum(len(v) for kind, column in zip(self._features.values(), staged.columns, strict=True)
                   if kind == BYTES for v in column if isinstance(v, str))
        return count * (_ROW_BYTES + _CELL_BYTES * len(self._features)) + text

    def _stage(self, rows: Sequence, predictions: Any, count: int) -> Optional[_Staged]:
        """The request's values typed for the columns; None when its predictions do not match its rows."""
        if predictions is None or len(predictions) != count:
            return None
        getter = self._plan(rows)
        if getter is None:
            staged = _stage_values(self._features, rows, count)
        elif count == 1:  # typed rows whose fields the columns take as they are
            value = getter(rows[0])
            staged = _Staged((), [], [], [], [], [], None, value if len(self._features) > 1 else (value,))
        else:
            columns = list(zip(*map(getter, rows), strict=True)) if len(self._features) > 1 else \
                [list(map(getter, rows))]
            staged = _Staged(columns, [], [], [], [], [], None)
        self._stage_predictions(staged, predictions, count)
        return staged

    def _plan(self, rows: Sequence) -> Optional[Callable]:
        """For typed rows holding every feature with a type its column takes as is: a getter of a row's values in
        the features' order (made once per row type); else None."""
        names = _typed_names(rows)
        if names is None or not rows or not self._features:
            return None
        row_type = type(rows[0])
        last_type, plan = self._last_plan  # the common case: the row type of the request before
        if last_type is row_type:
            return plan
        plan = self._plans.get(row_type, _NO_PLAN)
        if plan is _NO_PLAN:
            if len(self._plans) >= 16:  # one row type per signature served: old versions' types are let go
                self._plans.clear()
            fields = {name: info for name, info in zip(names, msgspec.structs.fields(row_type), strict=True)}
            ok = all(name in fields and fields[name].type in _AS_IS[kind] for name, kind in self._features.items())
            plan = self._plans[row_type] = operator.attrgetter(
                *[fields[name].name for name in self._features]) if ok else None
        self._last_plan = (row_type, plan)
        return plan

    def _stage_predictions(self, staged: _Staged, predictions: Any, count: int) -> None:
        """Copies the predictions in: a numeric numpy array of the output's rows (what the server hands over) in
        one piece, one value per row or a list per row when the output has several; anything else value by
        value (None: a failed request's row, null; a value that is not a number, or a list of numbers, null and
        counted)."""
        if isinstance(predictions, np.ndarray) and predictions.dtype.kind in "fiu" and predictions.ndim in (1, 2) \
                and (predictions.ndim == 1 or predictions.shape[1] >= 1):
            width = 1 if predictions.ndim == 1 else predictions.shape[1]
            staged.predictions = [predictions.item()] if predictions.size == 1 else predictions.ravel().tolist()
            staged.lengths = [width] * count
            staged.is_list = width > 1
            return
        if isinstance(predictions, np.ndarray):
            predictions = predictions.tolist()
        for row, value in enumerate(predictions):
            value = _scalar(value)
            if value is None:
                staged.lengths.append(0)
                staged.null_predictions.append(row)
                continue
            is_list = isinstance(value, (list, tuple))
            expected = self._prediction_list if self._prediction_list is not None else staged.is_list
            try:
                if expected is not None and is_list != expected:
                    raise ValueError(value)
                floats = [float(v) for v in value] if is_list else [float(value)]
            except (TypeError, ValueError, OverflowError):
                staged.lengths.append(0)
                staged.null_predictions.append(row)
                staged.invalid.append(row)
                continue
            staged.is_list = is_list
            staged.predictions.extend(floats)
            staged.lengths.append(len(floats))

    @staticmethod
    def _null_predictions(staged: _Staged, count: int) -> _Staged:
        """The request with every prediction null, each not null already counted as invalid."""
        already = set(staged.null_predictions)
        bad = [row for row in range(count) if row not in already]
        return _Staged(staged.columns, staged.nulls, [*staged.invalid, *bad], [], [0] * count, list(range(count)),
                       None, staged.row)

    def _full(self, buffer: _Buffer) -> bool:
        """True when the waiting requests are written at once: a file's worth of rows, or half the requests that
        may wait (so that a burst is written before any is dropped)."""
        return buffer.rows >= self.max_rows_per_file or 2 * buffer.requests >= self.max_pending_requests or \
            buffer.bytes >= self._early_bytes

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Writes every request logged so far; True when done within `timeout` seconds (None: wait)."""
        done = threading.Event()
        with self._lock:
            if self._closed:  # close() wrote everything
                return True
            self._flushes.append(done)
        self._wake.set()
        return done.wait(timeout)

    def close(self, timeout: Optional[float] = None) -> None:
        """Writes everything logged so far and stops the writer; later `log` calls are counted as dropped."""
        with self._lock:
            if self._closed:
                return
            self._closed = self._stopping = True
        self._wake.set()
        self._thread.join(timeout)

    def counters(self) -> dict[str, int]:
        with self._lock:
            return {"logged_rows": self.logged_rows, "dropped_rows": self.dropped_rows,
                    "write_errors": self.write_errors, "invalid_values": self.invalid_values,
                    "files_written": self.files_written}

    # ---- the writer thread ------------------------------------------------------------------------------------

    def _lose(self, rows: int, why: str, error: bool = False) -> None:
        """Counts lost rows (the caller holds the lock or is the writer); logs the first of a run of losses."""
        self.dropped_rows += rows
        self.write_errors += int(error)
        if not self._failing:
            self._failing = True
            logger.error("request log %s: %d row(s) not logged: %s (serving goes on; further losses are only "
                         "counted in dropped_rows until a file is written again)", self.log_dir, rows, why)

    def _set_features(self, features: dict[str, str]) -> None:
        clash = sorted(set(features) & _LOG_COLUMNS)
        if clash:
            raise ValueError(f"request log: feature name(s) {clash} are request-log columns; rename the feature(s)")
        unnamed = [name for name in features if not _column_name(name)]
        if unnamed:
            raise ValueError(f"request log: feature name(s) {unnamed}: expected text a Parquet column can be named "
                             "(no lone surrogates)")
        self._features = features
        self._buffer = _Buffer(features)

    def _run(self) -> None:
        due: Optional[float] = None  # when the waiting requests are written: flush_interval_s after the first
        while True:
            self._wake.wait(None if due is None else max(0.0, due - time.monotonic()))
            self._wake.clear()
            with self._lock:
                flushes, self._flushes = self._flushes, []
                stop = self._stopping
                waiting = self._buffer is not None and self._buffer.requests > 0
                full = waiting and self._full(self._buffer)
            now = time.monotonic()
            if due is None and waiting:
                due = now + self.flush_interval_s
            if flushes or stop or full or (due is not None and now >= due):
                buffer = None
                with self._lock:
                    if waiting:
                        buffer, self._buffer = self._buffer, _Buffer(self._features)
                        self._byte_limit = self.max_pending_bytes - buffer.bytes
                if buffer is not None:
                    self._write_buffer(buffer)
                    with self._lock:
                        self._byte_limit = self.max_pending_bytes
                due = None
                for done in flushes:
                    done.set()
                if stop:
                    return

    def _write_buffer(self, buffer: _Buffer) -> None:
        """Writes the requests, span by span, in files of at most max_rows_per_file rows (a request is never split;
        one larger than that is a file of its own), from one table of all their rows."""
        try:
            buffer.settle()
            counts = np.frombuffer(buffer.counts, dtype=np.int64)
            per_request = np.repeat(np.arange(buffer.requests), counts)
            table, changed = self._table(buffer, counts, per_request)
        except Exception as e:  # a bug of ours must not stop the writer: the rows are lost, counted and reported
            logger.exception("request log %s: cannot build the table of %d row(s)", self.log_dir, buffer.rows)
            with self._lock:
                self._lose(buffer.rows, f"{type(e).__name__}: {e}", error=True)
            return
        bad = np.bincount(np.asarray([*buffer.invalid, *changed], dtype=np.int64), minlength=buffer.rows)
        spans = np.floor_divide(np.frombuffer(buffer.at, dtype=np.float64), self.span_seconds).astype(np.int64)
        row_spans = spans[per_request]
        for span in np.unique(spans):
            chosen = counts[spans == span]
            rows = np.flatnonzero(row_spans == span)
            ends = np.cumsum(chosen)
            first, last, pieces = 0, 0, []  # files: a new one where the next request would overflow this one
            for end in ends.tolist():
                if end - first > self.max_rows_per_file and last > first:
                    pieces.append((first, last))
                    first = last
                last = end
            pieces.append((first, last))
            for first, last in pieces:
                self._write_piece(int(span), table, rows[first:last], int(bad[rows[first:last]].sum()))

    def _write_piece(self, span: int, table: pa.Table, selected: np.ndarray, invalid: int) -> None:
        """Writes the selected rows of the table as one file of the span; a failure loses those rows alone."""
        try:
            part = table if len(selected) == table.num_rows else table.take(pa.array(selected))
        except Exception as e:  # a bug of ours: this file's rows are lost, counted and reported, not the flush's
            logger.exception("request log %s: cannot take %d row(s) for a file", self.log_dir, len(selected))
            with self._lock:
                self._lose(len(selected), f"{type(e).__name__}: {e}", error=True)
            return
        self._write(span, part, invalid)

    def _table(self, buffer: _Buffer, counts: np.ndarray, per_request: np.ndarray) -> tuple[pa.Table, list[int]]:
        """Every row of the buffer as one table: request-level columns repeated for each of a request's rows,
        numbers straight from their typed arrays (no copy), nulls from the positions recorded; and the rows with a
        cell that could not be stored as it was (`_column`), one entry per cell."""
        schema = self._schema()
        take = None if buffer.rows == buffer.requests else pa.array(per_request)
        changed: list[int] = []
        starts = np.cumsum(counts) - counts

        def repeated(values: Any, name: str) -> pa.Array:  # one value per request, repeated for each of its rows
            array, requests = _column(values, schema.field(name).type)
            for request in requests:  # each of the request's rows holds the cell
                changed.extend(range(starts[request], starts[request] + counts[request]))
            return array if take is None else array.take(take)

        at = np.round(np.frombuffer(buffer.at, dtype=np.float64) * 1e6).astype(np.int64)
        arrays = {REQUEST_ID: repeated(buffer.request_id, REQUEST_ID),
                  ROW_INDEX: pa.array((np.arange(buffer.rows) - starts[per_request]).astype(np.int32)),
                  TIME: repeated(at, TIME), MODEL: repeated(buffer.model, MODEL),
                  MODEL_VERSION: repeated(buffer.version, MODEL_VERSION),
                  SIGNATURE_NAME: repeated(buffer.signature, SIGNATURE_NAME),
                  LATENCY_MS: repeated(np.frombuffer(buffer.latency, dtype=np.float64), LATENCY_MS),
                  ROLLOUT_ROLE: repeated(buffer.role, ROLLOUT_ROLE),
                  REQUEST_ROUTE: repeated(buffer.route, REQUEST_ROUTE).fill_null(DEFAULT_ROUTE),
                  STATUS: repeated(np.frombuffer(buffer.status, dtype=np.int32), STATUS),
                  ERROR: repeated(buffer.error, ERROR)}
        for (name, kind), values, nulls in zip(self._features.items(), buffer.features, buffer.nulls, strict=True):
            if kind in _NUMERIC:
                values = np.frombuffer(values, dtype=_NUMERIC[kind][1])
            arrays[name], rows = _column(values, _ARROW[kind], _mask(nulls, buffer.rows))
            changed.extend(rows)
        arrays[PREDICTION] = self._prediction_column(buffer, schema.field(PREDICTION).type)
        return pa.table([arrays[n] for n in schema.names], schema=schema), changed

    @staticmethod
    def _prediction_column(buffer: _Buffer, kind: pa.DataType) -> pa.Array:
        values = np.frombuffer(buffer.predictions, dtype=np.float64)
        mask = _mask(buffer.null_predictions, buffer.rows)
        if pa.types.is_list(kind):
            offsets = np.zeros(buffer.rows + 1, dtype=np.int32)
            np.cumsum(np.frombuffer(buffer.lengths, dtype=np.int64), out=offsets[1:])
            return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values),
                                            mask=None if mask is None else pa.array(mask))
        if mask is None:
            return pa.array(values, type=kind)
        column = np.zeros(buffer.rows, dtype=np.float64)
        column[~mask] = values
        return pa.array(column, type=kind, mask=mask)

    def _schema(self) -> pa.Schema:
        """The files' schema: the prediction a list column once a list was logged, else a scalar one (also while
        every request failed, until a real prediction says which)."""
        assert self._features is not None
        prediction = pa.list_(pa.float64()) if self._prediction_list else pa.float64()
        return pa.schema([(REQUEST_ID, pa.string()), (ROW_INDEX, pa.int32()),
                          (TIME, pa.timestamp("us", tz="UTC")), (MODEL, pa.string()), (MODEL_VERSION, pa.int64()),
                          (SIGNATURE_NAME, pa.string()), (LATENCY_MS, pa.float64()), (ROLLOUT_ROLE, pa.string()),
                          (REQUEST_ROUTE, pa.string()),
                          (STATUS, pa.int32()), (ERROR, pa.string()),
                          *[(n, _ARROW[k]) for n, k in self._features.items()], (PREDICTION, prediction)])

    def _write(self, span: int, table: pa.Table, invalid: int) -> None:
        """Writes the table as one file of the span."""
        self._seq += 1
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        folder = os.path.join(self.log_dir, f"span-{span}")
        name = f"part-{stamp}-{self._writer}-{self._seq:06d}.parquet"
        try:
            # An Arrow buffer, not io.BytesIO: Parquet's writer then never calls back into Python, which took the
            # interpreter lock again for every piece written (next to a busy event loop, 30 ms -> 350 ms a flush).
            sink = pa.BufferOutputStream()
            pq.write_table(table, sink)
            storage.write_whole(folder, name, sink.getvalue().to_pybytes())
        except Exception as e:  # every filesystem raises its own errors (OSError, TensorFlow's on gs://): counted
            with self._lock:
                self._lose(table.num_rows, f"cannot write {os.path.join(folder, name)}: {type(e).__name__}: {e}",
                           error=True)
            return
        with self._lock:
            self.invalid_values += invalid
            self.logged_rows += table.num_rows
            self.files_written += 1
            if self._failing:
                self._failing = False
                logger.warning("request log %s: writing again (%d row(s) lost so far)", self.log_dir,
                               self.dropped_rows)


def _mask(rows: list[int], count: int) -> Optional[np.ndarray]:
    """A boolean mask of `count` rows, true at `rows` (None when there are none)."""
    if not rows:
        return None
    mask = np.zeros(count, dtype=bool)
    mask[rows] = True
    return mask


def _column(values: Any, kind: pa.DataType, mask: Optional[np.ndarray] = None) -> tuple[pa.Array, list[int]]:
    """`values` as an Arrow array of `kind`, and the positions of the cells it could not take as they are: a text
    with lone surrogates is stored with U+FFFD in their place, anything else a text or int64 column cannot hold
    (an int beyond int64, a value that is not text) as null. Checked value by value only when the whole column
    fails, so a column that holds nothing of the kind costs one conversion."""
    try:
        return pa.array(values, type=kind, mask=mask), []
    except (UnicodeEncodeError, OverflowError, pa.ArrowInvalid, pa.ArrowTypeError):
        if not (pa.types.is_string(kind) or kind == pa.int64()):
            raise
    cells, changed = [], []
    for position, value in enumerate(values):
        cell = _cell(value, kind)
        if cell is not value:
            changed.append(position)
        cells.append(cell)
    return pa.array(cells, type=kind, mask=mask), changed


def _cell(value: Any, kind: pa.DataType) -> Any:
    """A value a text or int64 column can hold: the value itself, a text with U+FFFD for each lone surrogate, or
    None."""
    if value is None:
        return None
    if pa.types.is_string(kind):
        if not isinstance(value, str):
            return None
        return _SURROGATES.sub("\ufffd", value) if _SURROGATES.search(value) else value
    if isinstance(value, bool) or not isinstance(value, int) or not _INT64_MIN <= value <= _INT64_MAX:
        return None
    return value
