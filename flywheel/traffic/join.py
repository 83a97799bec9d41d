"""Joining labels that arrive later to logged predictions: request-log spans in, labelled spans out.

    <logs>/span-N/*.parquet  +  <labels> (CSV/Parquet files, any layout)  ->  <output>/span-N/joined.parquet

A log row and a label row match when the log's `log_key` value equals the labels' `key` value (compared as
text, so an id read as a number from a CSV matches the same id logged as a string). `log_key` defaults to
`key` when the log has that column, else to `request_id` (set from the `X-Request-Id` a client sent, e.g. a
trip id that the labels carry as `trip_id`): so `--key trip_id` joins labels keyed by the id the client
sent, and `--key request_id` or a column both sides have works as well.

Output spans keep the log's span numbers and hold the log's columns (features, prediction, request columns),
the label file's other columns (the label, and any column the log lacks, e.g. the rest of the original record)
and, with a binary-label rule, the pipeline's binary label (`label`), so `flywheel monitor --reference-metrics`
computes the AUC on it. Ingest reads them as any span (it reads the schema's columns and passes over the
others).

Nothing is lost in silence; the result counts, and names the first keys of:
- log rows without a label (`unmatched_logs`, per span too) and labels without a log row (`unmatched_labels`);
- a key logged more than once (a client retry with the same X-Request-Id): the latest logged row is kept,
  the others counted in `duplicate_logs`;
- a key labelled more than once: the last label read is kept (files in name order, rows in order: a later
  file corrects an earlier one), counted in `duplicate_labels`, and in `conflicting_labels` when the values
  differed;
- rows with no key, and labels with no label value (`logs_without_key`, `labels_without_key`,
  `labels_without_value`): never joined;
- rows no client was answered with (`skipped_logs`): failed requests (`status` other than 200) and a shadow
  rollout's copies (`rollout_role` `shadow`, the candidate's answer to a request stable answered): never joined.
A span whose rows all lack labels gets no output folder (Ingest refuses an empty span folder); it is counted.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Optional, Sequence

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from flywheel import storage
from flywheel.data import inputs
from flywheel.monitoring import profile
from flywheel.server.log_columns import PREDICTION, REQUEST_ID, TIME

OUTPUT_FILE = "joined.parquet"
_SHOWN = 5


class JoinError(ValueError):
    """Inputs the join cannot use: no log spans, a missing key or label column, columns Ingest will require."""


@dataclasses.dataclass(frozen=True)
class BinaryLabel:
    """A pipeline's binary training label from the raw one: `name` = 1 when source > share * base (taxi: a tip
    over 20% of the fare), null when either is missing."""

    name: str
    source: str
    base: str
    share: float

    def compute(self, table: pa.Table) -> pa.Array:
        source, base = table.column(self.source).cast(pa.float64()), table.column(self.base).cast(pa.float64())
        return pc.cast(pc.greater(source, pc.multiply(base, self.share)), pa.int64())


def _read(path: str, what: str) -> pa.Table:
    try:
        return profile.read_table(path)
    except profile.MonitorError as e:
        raise JoinError(f"logs join: {what} {str(e).removeprefix('monitor: ')}") from None


def _keys(table: pa.Table, key: str) -> list[Optional[str]]:
    column = table.column(key)
    if not pa.types.is_string(column.type):
        column = pc.cast(column, pa.string())
    return column.to_pylist()


def _log_spans(logs: str) -> dict[int, str]:
    try:
        spans = inputs.span_folders(logs)
    except inputs.InputError as e:
        raise JoinError(e.for_command("logs join")) from None
    if not spans:
        raise JoinError(f"logs join: {logs} holds no span-N folders; expected a request log's folder")
    return {span: os.path.join(logs, name) for span, name in spans.items()}


def _log_key(tables: dict[int, pa.Table], key: str, log_key: Optional[str]) -> str:
    if log_key:
        return log_key
    if all(key in t.column_names for t in tables.values()):
        return key
    return REQUEST_ID


def join(logs: str, labels: str, key: str, output: str, *, label_column: str = "tips",
         required: Sequence[str] = (), binary_label: Optional[BinaryLabel] = None,
         log_key: Optional[str] = None, span: Optional[int] = None) -> dict[str, Any]:
    """Joins `labels` to the request log under `logs` by `key` into `<output>/span-N/`; returns the counts
    (and `log_key`, the log column matched).

    span: write every log span's rows into `<output>/span-<span>/` (one `joined-<log span>.parquet` each), for a
    data folder numbered its own way (e.g. spans 1, 2 of training files, the production log as span 3); None:
    the log's own span numbers (its UTC days).

    required: columns every output row must have (Ingest's required schema columns): when the log and the
    labels together lack one, nothing is written and JoinError names it.
    """
    target_span = span
    if target_span is not None and target_span < 0:
        raise JoinError(f"logs join: span: expected a span number >= 0, got {target_span}")
    spans = _log_spans(logs)
    read = {span: _read(folder, "logs") for span, folder in spans.items()}
    tables = {span: profile.answered_rows(table) for span, table in read.items()}
    label_table = _read(labels, "labels")
    if key not in label_table.column_names:
        raise JoinError(f"logs join: labels: no key column {key!r}; they have {label_table.column_names}")
    log_key = _log_key(tables, key, log_key)
    for span, table in tables.items():
        if log_key not in table.column_names:
            raise JoinError(f"logs join: log span {span}: no key column {log_key!r} (to match the labels' {key!r}); "
                            f"it has {table.column_names}")
    if label_column not in label_table.column_names:
        raise JoinError(f"logs join: labels: no label column {label_column!r}; they have {label_table.column_names}")
    log_columns = list(dict.fromkeys(c for t in tables.values() for c in t.column_names))
    extra = [c for c in label_table.column_names if c not in log_columns]
    out_columns = log_columns + extra + ([binary_label.name] if binary_label else [])
    lacking = [c for c in required if c not in out_columns]
    if lacking:
        raise JoinError(f"logs join: the joined rows would lack column(s) {lacking}, which Ingest requires; the "
                        f"log has {log_columns}, the labels {label_table.column_names}: give labels that carry "
                        "them (e.g. the original records with their label)")
    counts: dict[str, Any] = {"log_rows": 0, "label_rows": label_table.num_rows, "joined_rows": 0,
                              "unmatched_logs": 0, "unmatched_labels": 0, "duplicate_logs": 0,
                              "duplicate_labels": 0, "conflicting_labels": 0, "logs_without_key": 0,
                              "labels_without_key": 0, "labels_without_value": 0,
                              "skipped_logs": sum(read[s].num_rows - tables[s].num_rows for s in read),
                              "first_unmatched_logs": [], "first_unmatched_labels": [], "spans": {}}

    # Labels: key -> row (the last one read), counting duplicates and conflicts.
    label_of: dict[str, int] = {}
    values = label_table.column(label_column).to_pylist()
    for index, k in enumerate(_keys(label_table, key)):
        if k is None:
            counts["labels_without_key"] += 1
        elif values[index] is None:
            counts["labels_without_value"] += 1
        else:
            if k in label_of:
                counts["duplicate_labels"] += 1
                counts["conflicting_labels"] += int(values[label_of[k]] != values[index])
            label_of[k] = index

    # Logs: key -> (span, row) of its latest logged row.
    latest: dict[str, tuple[Any, int, int]] = {}
    for span, table in tables.items():
        counts["log_rows"] += table.num_rows
        times = table.column(TIME).to_pylist() if TIME in table.column_names else [None] * table.num_rows
        for index, k in enumerate(_keys(table, log_key)):
            if k is None:
                counts["logs_without_key"] += 1
                continue
            when = (times[index] is not None, times[index] or 0, span)
            if k in latest:
                counts["duplicate_logs"] += 1
                if latest[k][0] > when:
                    continue
            latest[k] = (when, span, index)

    matched: set[str] = set()
    for span, table in tables.items():
        take_log, take_label = [], []
        unmatched = 0
        for k, (_, row_span, index) in latest.items():
            if row_span != span:
                continue
            if k in label_of:
                take_log.append(index)
                take_label.append(label_of[k])
                matched.add(k)
            else:
                unmatched += 1
                if len(counts["first_unmatched_logs"]) < _SHOWN:
                    counts["first_unmatched_logs"].append(k)
        counts["unmatched_logs"] += unmatched
        counts["spans"][span] = {"joined": len(take_log), "unmatched_logs": unmatched}
        if not take_log:
            continue
        order = sorted(range(len(take_log)), key=take_log.__getitem__)
        joined = table.take(pa.array([take_log[i] for i in order]))
        picked = label_table.select(extra).take(pa.array([take_label[i] for i in order]))
        for name in extra:
            joined = joined.append_column(name, picked.column(name))
        if binary_label:
            joined = joined.append_column(binary_label.name, binary_label.compute(joined))
        sink = pa.BufferOutputStream()
        pq.write_table(joined, sink)
        folder, name = ((f"span-{span}", OUTPUT_FILE) if target_span is None
                        else (f"span-{target_span}", f"joined-{span}.parquet"))
        counts["spans"][span]["path"] = storage.write_whole(os.path.join(output, folder), name,
                                                            sink.getvalue().to_pybytes())
        counts["joined_rows"] += joined.num_rows
    unlabelled = [k for k in label_of if k not in matched]
    counts["unmatched_labels"] = len(unlabelled)
    counts["first_unmatched_labels"] = unlabelled[:_SHOWN]
    counts["has_prediction"] = PREDICTION in log_columns
    counts["log_key"] = log_key
    return counts
