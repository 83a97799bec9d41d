"""Request logs: what production sent and what the model answered, as Parquet spans Ingest and the monitor read.

`RequestLog.log(...)` is called by the server after it has answered; it only appends the request to a bounded
list (never blocks, never raises on I/O, and wakes the writer thread only when that list was empty or holds
`max_rows_per_file` rows, not once per request). A background thread turns the waiting requests into rows,
one row per instance, column by column in bulk (Arrow arrays built from whole columns; pyarrow encodes and
compresses without the GIL), and writes them in batches:

    <log_dir>/span-<N>/part-<UTC time>-<writer>-<seq>.parquet

- **Span.** N = the request's UTC time (from `clock`) // `span_seconds`; with the default 86,400 s, N is the
  UTC day counted from 1970-01-01 (2026-11-27 is span-20784), so consecutive days are consecutive spans and
  `--num-spans 3` / `retrain --window 3` read the last three days.
- **Columns.** `request_id`, `row_index` (the instance's position in its request), `time` (UTC, microseconds),
  `model`, `model_version`, `signature_name`, `latency_ms`, `rollout_role` (stable | canary | shadow while a
  rollout runs, else null), `status` (the HTTP status), `error` (its message, null when answered), one column
  per input feature, `prediction` (float64; a list of float64 for a multi-output model; null for a failed
  request). Failed predict requests are logged too, with their features where the body had them (a failed
  request before any answered one, with no `features` given, is dropped and counted). Feature columns are
  fixed when the log is created:
  `features` ({name: INT|FLOAT|BYTES}, e.g. `features_from_schema(schema, names)`); without it, from the
  first logged row (numbers as FLOAT, text as BYTES). Keys a row has beyond them are not logged; a feature a
  row lacks, or a value of the wrong type, is null (counted in `invalid_values`). So every file of a log has
  the same column types.
- **Whole files only.** On a local disk a file is written under a hidden temporary name (`.part-...tmp`,
  which Ingest and the monitor pass over), fsynced, then renamed into place; on object storage (gs://, s3://,
  through `tfx.dsl.io.fileio`) the object is written once under its final name, which appears only when
  complete.
- **What can be lost.** Rows are written `flush_interval_s` (default 5 s) after the first row of a batch
  arrives, or as soon as `max_rows_per_file` rows are waiting. A killed server (SIGKILL, OOM) loses at most
  the requests of the last flush interval plus a file being written; `close()` (the server calls it on
  shutdown and SIGTERM) writes everything first. A full list of waiting requests (`max_pending_requests`), a
  full disk or any write error never reaches serving: the rows are dropped and counted (`dropped_rows`,
  `write_errors`, for the server's metrics) and the first error of a run of failures is logged, then its end.
- **Sampling** is per request and deterministic: a request is kept when the hash of its id falls below
  `sample`, so a replay of the same ids samples the same requests.
"""

from __future__ import annotations

import datetime
import hashlib
import itertools
import logging
import operator
import os
import threading
import time
import uuid
from typing import Any, Callable, Mapping, Optional, Sequence

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from flywheel.components.common import serving
from flywheel.components.monitor.drift import REQUEST_LOG_COLUMNS, ROLLOUT_COLUMNS

logger = logging.getLogger(__name__)

INT, FLOAT, BYTES = "INT", "FLOAT", "BYTES"
REQUEST_ID, ROW_INDEX, TIME, MODEL, MODEL_VERSION, SIGNATURE_NAME, LATENCY_MS = REQUEST_LOG_COLUMNS
PREDICTION = "prediction"
SPAN_SECONDS = 86_400
# Rollout columns (flywheel/serving/routing.py; read by the rollout analysis): the request's role in a running
# rollout (stable | canary | shadow, null without one), its HTTP status and error message (null when answered).
ROLLOUT_ROLE, STATUS, ERROR = ROLLOUT_COLUMNS
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_ARROW = {INT: pa.int64(), FLOAT: pa.float64(), BYTES: pa.string()}
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
    from flywheel.components.ingest import parsing
    from flywheel.components.monitor import drift

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
    return float(value)


_FAST_TYPES = {FLOAT: frozenset((float, int, type(None))), INT: frozenset((int, type(None))),
               BYTES: frozenset((str, type(None)))}


def _column(values: list, kind: str) -> tuple[pa.Array, int]:
    """(the values as the column's Arrow array, how many were stored as null for a wrong type). Values that all
    have the column's JSON type (the server's rows always do) convert in one call; otherwise value by value."""
    if set(map(type, values)) <= _FAST_TYPES[kind]:
        try:
            return pa.array(values, type=_ARROW[kind]), 0
        except (pa.ArrowInvalid, OverflowError):  # an int beyond int64 or float range: typed one by one below
            pass
    out, invalid = [], 0
    for value in values:
        try:
            out.append(_typed(value, kind))
        except ValueError:
            out.append(None)
            invalid += 1
    return pa.array(out, type=_ARROW[kind]), invalid


class _Request(msgspec.Struct, gc=False):
    """One logged request, waiting for its flush. Not tracked by the garbage collector (nor are typed rows and
    numpy predictions): the thousands of requests held until a flush would otherwise set off a young-generation
    collection every few hundred requests, each walking them all again."""

    at: float
    request_id: str
    model: str
    version: Optional[int]
    signature: str
    rows: Any
    predictions: Any
    latency_ms: float
    role: Optional[str]
    status: int
    error: Optional[str]


def _typed_names(rows: Any) -> Optional[list[str]]:
    """The inputs of typed rows (`codec.Rows`: their fields f0, f1... in this order), None for {feature: value} rows."""
    return getattr(rows, "names", None)


def _row_dict(rows: Any, i: int) -> dict:
    names = _typed_names(rows)
    return rows[i] if names is None else dict(zip(names, msgspec.structs.astuple(rows[i]), strict=True))


def _predictions_list(predictions: Any) -> list:
    """One prediction per row as Python values (an array of the output's rows as the answer's JSON has them)."""
    return predictions.tolist() if isinstance(predictions, np.ndarray) else predictions


_ROWS, _NAMES = operator.attrgetter("rows"), operator.attrgetter("names")
_AT, _PREDICTIONS = operator.attrgetter("at"), operator.attrgetter("predictions")
# The request-level columns: each a `_Request` attribute, repeated for every row of its request.
_ATTRIBUTES = {REQUEST_ID: "request_id", TIME: "at", MODEL: "model", MODEL_VERSION: "version",
               SIGNATURE_NAME: "signature", LATENCY_MS: "latency_ms", ROLLOUT_ROLE: "role", STATUS: "status",
               ERROR: "error"}


def _counts(values: Any, count: int) -> np.ndarray:
    """len() of each of `count` values, as an int64 array."""
    return np.fromiter(map(len, values), dtype=np.int64, count=count)


def _feature_values(batches: Sequence[Any]) -> Callable[[str], Sequence]:
    """name -> the feature's value in every row of the requests (`batches`: each request's rows), in order (None
    where a row lacks it). When every request holds typed rows of the same inputs (the server's common case), all
    columns come from one pass over the rows, with no Python-level loop; otherwise typed rows are read as dicts."""
    try:
        shared = list(map(_NAMES, batches))  # the rows of one signature share one `names` tuple
        names = {tuple(n) for n in dict(zip(map(id, shared), shared, strict=True)).values()}
    except AttributeError:  # {feature: value} rows among them
        names = set()
    if len(names) == 1:
        rows = list(itertools.chain.from_iterable(batches))
        columns = dict(zip(next(iter(names)), zip(*map(msgspec.structs.astuple, rows), strict=True), strict=True))
        return lambda name: columns[name] if name in columns else [None] * len(rows)
    dicts = list(itertools.chain.from_iterable(
        rows if _typed_names(rows) is None else [_row_dict(rows, i) for i in range(len(rows))] for rows in batches))
    return lambda name: [row.get(name) for row in dicts]


class RequestLog:
    """Logs requests to `<log_dir>/span-N/*.parquet` off the response path (see the module docstring).

    Counters (read them for metrics): `logged_rows` (written), `dropped_rows` (lost: queue full, write errors,
    after close), `write_errors` (files that could not be written), `invalid_values` (cells stored as null),
    `files_written`.
    """

    def __init__(self, log_dir: str, *, features: Optional[Mapping[str, str]] = None, sample: float = 1.0,
                 flush_interval_s: float = 5.0, max_rows_per_file: int = 100_000, span_seconds: int = SPAN_SECONDS,
                 max_pending_requests: int = 10_000, clock: Callable[[], float] = time.time):
        if not 0.0 <= sample <= 1.0:
            raise ValueError(f"request log: sample: expected a share from 0 to 1, got {sample}")
        if flush_interval_s <= 0 or max_rows_per_file < 1 or span_seconds < 1 or max_pending_requests < 1:
            raise ValueError(f"request log: expected flush_interval_s > 0, max_rows_per_file, span_seconds and "
                             f"max_pending_requests >= 1; got {flush_interval_s}, {max_rows_per_file}, "
                             f"{span_seconds}, {max_pending_requests}")
        self.log_dir = log_dir
        self.sample = sample
        self.flush_interval_s = flush_interval_s
        self.max_rows_per_file = max_rows_per_file
        self.span_seconds = span_seconds
        self._clock = clock
        self._features: Optional[dict[str, str]] = None
        if features is not None:
            self._set_features({name: feature_kind(kind) for name, kind in features.items()})
        self._prediction_list: Optional[bool] = None
        self.logged_rows = self.dropped_rows = self.write_errors = self.invalid_values = self.files_written = 0
        self._failing = False
        self._lock = threading.Lock()
        self._closed = self._stopping = False
        self.max_pending_requests = max_pending_requests
        self._pending: list[_Request] = []  # requests waiting to be written (guarded by _lock)
        self._pending_rows = 0
        self._flushes: list[threading.Event] = []  # flush() calls waiting for the next write
        self._wake = threading.Event()
        self._writer = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._seq = 0
        self._thread = threading.Thread(target=self._run, name="flywheel-request-log", daemon=True)
        self._thread.start()

    # A flush builds its columns this many requests at a time, pausing this long between pieces (`_file_table`).
    BUILD_CHUNK = 1_000
    BUILD_PAUSE_S = 0.0005

    # ---- the server's side: never blocks, never raises on I/O ----------------------------------------------

    # The server hands this log the rows as `codec.parse_rows` decoded them and the single output's numpy rows
    # (both untracked by the garbage collector) instead of {feature: value} dicts and lists.
    typed_rows = True

    def log(self, request_id: str, model: str, version: int, signature: str, rows: Sequence,
            predictions: Any, latency_ms: float, *, role: Optional[str] = None, status: int = 200,
            error: Optional[str] = None) -> None:
        """Queues one request (rows: its instances as {feature: value}, or `codec.Rows`; one prediction per row, as
        a list or a numpy array of the output's rows, None for a failed request); role, status and error: its
        rollout role, HTTP status and error message."""
        if not sampled(request_id, self.sample):
            return
        item = _Request(self._clock(), request_id, model, version, signature, rows, predictions, latency_ms, role,
                        status, error)
        with self._lock:
            if self._closed:
                self._lose(len(rows), "the request log is closed")
                return
            if len(self._pending) >= self.max_pending_requests:
                self._lose(len(rows), f"the queue of {self.max_pending_requests:,} requests waiting to be written "
                                      "is full")
                return
            self._pending.append(item)
            self._pending_rows += len(rows)
            wake = len(self._pending) == 1 or self._pending_rows >= self.max_rows_per_file
        if wake:
            self._wake.set()

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
        clash = sorted(set(features) & {*REQUEST_LOG_COLUMNS, *ROLLOUT_COLUMNS, PREDICTION})
        if clash:
            raise ValueError(f"request log: feature name(s) {clash} are request-log columns; rename the feature(s)")
        self._features = features

    def _run(self) -> None:
        due: Optional[float] = None  # when the waiting requests are written: flush_interval_s after the first
        while True:
            self._wake.wait(None if due is None else max(0.0, due - time.monotonic()))
            self._wake.clear()
            with self._lock:
                flushes, self._flushes = self._flushes, []
                stop, waiting = self._stopping, bool(self._pending)
                full = self._pending_rows >= self.max_rows_per_file
            now = time.monotonic()
            if due is None and waiting:
                due = now + self.flush_interval_s
            if flushes or stop or full or (due is not None and now >= due):
                with self._lock:
                    items, self._pending, self._pending_rows = self._pending, [], 0
                self._write_items(items)
                due = None
                for done in flushes:
                    done.set()
                if stop:
                    return

    def _write_items(self, items: list[_Request]) -> None:
        """Writes the requests, span by span, in files of at most max_rows_per_file rows (a request is never
        split; one larger than that is a file of its own). The checks and the grouping run on whole columns
        (counts, times), so a flush's own Python work does not grow with a loop over its requests."""
        if self._features is None:  # typed from the first answered request's row
            answered = next((item for item in items if item.status == 200 and item.rows), None)
            if answered is not None:
                self._set_features({name: BYTES if isinstance(_scalar(v), (str, bytes)) else FLOAT
                                    for name, v in _row_dict(answered.rows, 0).items()})
        rows = _counts(map(_ROWS, items), len(items))
        predictions = _counts(map(_PREDICTIONS, items), len(items))
        kept = (rows > 0) & (predictions == rows) if self._features is not None else np.zeros(len(items), bool)
        for i in np.flatnonzero((rows > 0) & ~kept):  # lost, each with its reason (rare: one lock per request)
            request_id = items[i].request_id
            with self._lock:
                if self._features is None:
                    self._lose(int(rows[i]), f"request {request_id!r} failed before any answered request typed the "
                                             "feature columns")
                else:
                    self._lose(int(rows[i]), f"request {request_id!r}: {predictions[i]} prediction(s) for "
                                             f"{rows[i]} row(s)")
        spans = np.floor_divide(np.fromiter(map(_AT, items), dtype=np.float64, count=len(items)),
                                self.span_seconds).astype(np.int64)
        for span in np.unique(spans[kept]):
            chosen = np.flatnonzero(kept & (spans == span))
            group = items if len(chosen) == len(items) else [items[i] for i in chosen]
            ends = np.cumsum(rows[chosen])
            if ends[-1] <= self.max_rows_per_file:
                self._write(int(span), group, int(ends[-1]))
                continue
            start, first = 0, 0  # files of at most max_rows_per_file rows: a new file where the next would overflow
            for i, end in enumerate(ends.tolist()):
                if i > start and end - first > self.max_rows_per_file:
                    self._write(int(span), group[start:i], int(ends[i - 1]) - first)
                    start, first = i, int(ends[i - 1])
            self._write(int(span), group[start:], int(ends[-1]) - first)

    def _file_table(self, items: list[_Request]) -> tuple[pa.Table, int]:
        """(the requests' rows as one table, how many cells were stored as null), built BUILD_CHUNK requests at a
        time with a pause of BUILD_PAUSE_S between pieces. The event loop gives the interpreter lock up at every
        socket call, and a thread with Python work waiting takes it each time for up to the switch interval
        (5 ms), so while one flush's columns are built the loop barely runs: the whole build, tens of
        milliseconds for a few thousand requests, was added to the latency of the requests in flight. In pieces
        of a few milliseconds, with a pause the loop can run in, it waits a few milliseconds at most."""
        schema = self._schema(self._first_prediction(items))  # one schema for the file, whatever each piece holds
        tables, invalid = [], 0
        for start in range(0, len(items), self.BUILD_CHUNK):
            if start:
                time.sleep(self.BUILD_PAUSE_S)
            table, bad = self._table(items[start:start + self.BUILD_CHUNK], schema)
            tables.append(table)
            invalid += bad
        return (tables[0] if len(tables) == 1 else pa.concat_tables(tables)), invalid

    def _table(self, items: list[_Request], schema: pa.Schema) -> tuple[pa.Table, int]:
        """(the requests' rows as one table of `schema`, how many cells were stored as null), column by column from
        one pass over the requests (each read once, its fields transposed into columns)."""
        columns = zip(*map(msgspec.structs.astuple, items), strict=True)
        fields = dict(zip(_Request.__struct_fields__, columns, strict=True))
        counts = _counts(fields["rows"], len(items))
        total = int(counts.sum())
        per_request = np.repeat(np.arange(len(items)), counts)
        starts = np.cumsum(counts) - counts
        take = None if total == len(items) else pa.array(per_request)  # None: one row per request

        def repeated(name: str) -> pa.Array:  # one value per request, repeated for each of its rows
            values = fields[_ATTRIBUTES[name]]
            if name == TIME:
                values = np.round(np.array(values, dtype=np.float64) * 1e6).astype(np.int64)
            array = pa.array(values, type=schema.field(name).type)
            return array if take is None else array.take(take)

        arrays = {name: repeated(name) for name in _ATTRIBUTES}
        arrays[ROW_INDEX] = pa.array(np.arange(total) - starts[per_request], type=pa.int32())
        invalid = 0
        feature_values = _feature_values(fields["rows"])
        for name, kind in self._features.items():
            arrays[name], bad = _column(feature_values(name), kind)
            invalid += bad
        arrays[PREDICTION], bad = self._predictions(fields["predictions"], schema.field(PREDICTION).type)
        invalid += bad
        return pa.table([arrays[n] for n in schema.names], schema=schema), invalid

    @staticmethod
    def _first_prediction(items: list[_Request]) -> Any:
        for item in items:
            predictions = item.predictions
            if isinstance(predictions, np.ndarray):
                if len(predictions):
                    return predictions[:1].tolist()[0]
                continue
            first = next((p for p in predictions if p is not None), None)
            if first is not None:
                return first
        return None

    def _predictions(self, arrays: Sequence[Any], kind: pa.DataType) -> tuple[pa.Array, int]:
        """(the prediction column, how many were stored as null) from each request's predictions. Numeric arrays of
        the output's rows, one per request (what the server hands over), go to Arrow in one piece: one value per row,
        or a list per row when the output has several values per row; anything else value by value."""
        if set(map(type, arrays)) == {np.ndarray} and \
                all(d.kind in "fiu" for d in set(map(operator.attrgetter("dtype"), arrays))) and \
                len({shape[1:] for shape in set(map(operator.attrgetter("shape"), arrays))}) == 1 and \
                set(map(operator.attrgetter("ndim"), arrays)) <= {1, 2}:
            values = np.concatenate(arrays).astype(np.float64, copy=False)
            width = 1 if values.ndim == 1 else values.shape[1]
            if width >= 1 and (width > 1) == pa.types.is_list(kind):
                if width == 1:
                    return pa.array(values.reshape(-1), type=kind), 0
                offsets = pa.array(np.arange(0, values.size + 1, width, dtype=np.int32))
                return pa.ListArray.from_arrays(offsets, pa.array(values.reshape(-1))), 0
        predictions = [self._prediction(p) for p in itertools.chain.from_iterable(map(_predictions_list, arrays))]
        return pa.array([value for value, _ in predictions], type=kind), sum(bad for _, bad in predictions)

    def _prediction(self, value: Any) -> tuple[Any, int]:
        """(the stored prediction, 1 when it had to be stored as null)."""
        if value is None:  # a failed request's row
            return None, 0
        value = _scalar(value)
        is_list = isinstance(value, (list, tuple))
        if self._prediction_list is None:
            self._prediction_list = is_list
        try:
            if is_list != self._prediction_list:
                raise ValueError(value)
            return ([float(v) for v in value] if is_list else float(value)), 0
        except (TypeError, ValueError):
            return None, 1

    def _schema(self, first_prediction: Any) -> pa.Schema:
        """first_prediction: the batch's first prediction (None when every request failed: then a scalar column,
        until a real prediction says which)."""
        assert self._features is not None
        if self._prediction_list is None and first_prediction is not None:
            self._prediction_list = isinstance(_scalar(first_prediction), (list, tuple))
        prediction = pa.list_(pa.float64()) if self._prediction_list else pa.float64()
        return pa.schema([(REQUEST_ID, pa.string()), (ROW_INDEX, pa.int32()),
                          (TIME, pa.timestamp("us", tz="UTC")), (MODEL, pa.string()), (MODEL_VERSION, pa.int64()),
                          (SIGNATURE_NAME, pa.string()), (LATENCY_MS, pa.float64()), (ROLLOUT_ROLE, pa.string()),
                          (STATUS, pa.int32()), (ERROR, pa.string()),
                          *[(n, _ARROW[k]) for n, k in self._features.items()], (PREDICTION, prediction)])

    def _write(self, span: int, items: list[_Request], rows: int) -> None:
        """Writes the requests (`rows` rows in all) as one file of the span."""
        self._seq += 1
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        folder = os.path.join(self.log_dir, f"span-{span}")
        name = f"part-{stamp}-{self._writer}-{self._seq:06d}.parquet"
        try:
            table, invalid = self._file_table(items)
            # An Arrow buffer, not io.BytesIO: Parquet's writer then never calls back into Python, which took the
            # interpreter lock again for every piece written (next to a busy event loop, 30 ms -> 350 ms a flush).
            sink = pa.BufferOutputStream()
            pq.write_table(table, sink)
            write_whole(folder, name, sink.getvalue().to_pybytes())
        except Exception as e:  # every filesystem raises its own errors (OSError, TensorFlow's on gs://): counted
            with self._lock:
                self._lose(rows, f"cannot write {os.path.join(folder, name)}: {type(e).__name__}: {e}", error=True)
            return
        with self._lock:
            self.invalid_values += invalid
            self.logged_rows += rows
            self.files_written += 1
            if self._failing:
                self._failing = False
                logger.warning("request log %s: writing again (%d row(s) lost so far)", self.log_dir,
                               self.dropped_rows)


def write_whole(folder: str, name: str, data: bytes) -> str:
    """Writes `folder/name` so that it appears whole or not at all; returns its path.

    Local: a hidden temporary file, fsynced, renamed into place (the folder fsynced after; `os` only for the
    fsyncs, which the filesystem layer has no call for). Object storage:
    the object is written once under its final name (it becomes visible when the upload completes).
    """
    fs = serving.filesystem(folder)
    fs.makedirs(folder)
    final = os.path.join(folder, name)
    if not serving.is_local(folder):
        with fs.open(final, "wb") as f:
            f.write(data)
        return final
    temporary = os.path.join(folder, f".{name}.tmp")
    try:
        with fs.open(temporary, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        fs.rename(temporary, final, overwrite=True)
    finally:
        if fs.exists(temporary):
            fs.remove(temporary)
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    return final
