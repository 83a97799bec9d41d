"""RequestLog: one Parquet row per instance under span-N/, whole files only, sampling by id, losses counted."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pyarrow.parquet as pq
import pytest

from flywheel import schemas
from flywheel.data import inputs, parsing
from flywheel.server import request_log, signatures
from flywheel.server.request_log import RequestLog
from tests.conftest import call_cli
from tests.server.conftest import ISSUE_ROW, until

FEATURES = {"trip_miles": "FLOAT", "fare": "FLOAT", "trip_start_hour": "INT", "payment_type": "BYTES"}
ROW = {"trip_miles": 1.2, "fare": 8, "trip_start_hour": 14, "payment_type": "Cash"}
DAY = 86_400


def _files(log_dir) -> list[str]:
    return sorted(os.path.join(d, f) for d, _, names in os.walk(log_dir) for f in names)


def test_rows_columns_and_spans(tmp_path):
    now = [20_000 * DAY + 10.0]
    log = RequestLog(str(tmp_path), features=FEATURES, clock=lambda: now[0])
    log.log("r1", "taxi", 7, "serving_default", [ROW, {**ROW, "fare": 9.5, "extra": "not a column"}], [0.1, [0.9]],
            2.5)
    now[0] += DAY  # the next UTC day is the next span
    log.log("r2", "taxi", 7, "serving_default", [ROW], [0.3], 1.0)
    log.close()
    assert sorted(os.listdir(tmp_path)) == ["span-20000", "span-20001"]
    table = pq.read_table(str(tmp_path / "span-20000"))
    assert table.column_names == ["request_id", "row_index", "time", "model", "model_version", "signature_name",
                                  "latency_ms", "rollout_role", "request_route", "status", "error", "trip_miles",
                                  "fare", "trip_start_hour", "payment_type", "prediction"]
    assert table.column("request_route").to_pylist() == ["default", "default"]
    assert table.to_pydict()["request_id"] == ["r1", "r1"] and table.column("row_index").to_pylist() == [0, 1]
    assert table.column("fare").to_pylist() == [8.0, 9.5] and table.column("prediction").to_pylist() == [0.1, 0.9]
    assert str(table.schema.field("time").type) == "timestamp[us, tz=UTC]"
    assert table.column("time")[0].as_py().timestamp() == 20_000 * DAY + 10.0
    assert str(table.schema.field("trip_start_hour").type) == "int64"
    assert log.counters() == {"logged_rows": 3, "dropped_rows": 0, "write_errors": 0, "invalid_values": 0,
                              "files_written": 2}


def test_a_flush_is_one_file_in_order_with_one_schema(tmp_path):
    """A flush of one span is one file, rows in the order logged, one prediction type for the file even when its
    first requests failed (their predictions null, before any said whether predictions are lists)."""
    log = RequestLog(str(tmp_path), features=FEATURES, clock=lambda: 5.0)
    for i in range(5):  # failed, no prediction
        log.log(f"f{i}", "taxi", 1, "serving_default", [ROW], [None], 1.0, status=500, error="boom")
    for i in range(6):  # two-value predictions, one row or two per request
        rows = [ROW] * (1 + i % 2)
        log.log(f"a{i}", "taxi", 1, "serving_default", rows, [[0.25, float(i)]] * len(rows), 1.0)
    log.close()
    files = _files(tmp_path)
    assert len(files) == 1
    table = pq.read_table(files[0])
    assert str(table.schema.field("prediction").type) == "list<item: double>"
    ids = table.column("request_id").to_pylist()
    assert ids == [f"f{i}" for i in range(5)] + [f"a{i}" for i in range(6) for _ in range(1 + i % 2)]
    assert table.column("row_index").to_pylist()[5:] == [0, 0, 1, 0, 0, 1, 0, 0, 1]
    assert table.column("prediction").to_pylist()[:5] == [None] * 5
    assert table.column("prediction").to_pylist()[-1] == [0.25, 5.0]
    assert log.counters()["logged_rows"] == 14 and log.counters()["invalid_values"] == 0


def test_one_flush_groups_spans_in_order_and_splits_files_at_max_rows_per_file(tmp_path):
    """One flush of requests from two spans, interleaved, with a request whose predictions do not match its rows
    and one with no rows: each span's requests in the order logged, in files of at most max_rows_per_file rows,
    a request never split (one larger than that is a file of its own); the mismatched request is lost, counted."""
    now = [0.0]
    log = RequestLog(str(tmp_path), features=FEATURES, clock=lambda: now[0], flush_interval_s=60,
                     max_rows_per_file=3)
    for i, (span, rows) in enumerate([(0, 2), (1, 1), (0, 1), (0, 1), (1, 4), (0, 2), (1, 1)]):
        now[0] = span * DAY + i
        log.log(f"r{i}", "taxi", 1, "serving_default", [ROW] * rows, [0.5] * rows, 1.0)
    log.log("mismatched", "taxi", 1, "serving_default", [ROW] * 2, [0.5], 1.0)
    log.log("empty", "taxi", 1, "serving_default", [], [], 1.0)
    log.close()
    files = {span: [pq.read_table(os.path.join(tmp_path, span, name)).column("request_id").to_pylist()
                    for name in sorted(os.listdir(tmp_path / span))] for span in sorted(os.listdir(tmp_path))}
    assert files == {"span-0": [["r0", "r0", "r2"], ["r3", "r5", "r5"]],
                     "span-1": [["r1"], ["r4"] * 4, ["r6"]]}
    assert log.counters() == {"logged_rows": 12, "dropped_rows": 2, "write_errors": 0, "invalid_values": 0,
                              "files_written": 5}


def test_types_are_stable_across_files_and_bad_values_are_null(tmp_path):
    log = RequestLog(str(tmp_path), features=FEATURES, clock=lambda: 5.0)
    log.log("a", "taxi", 1, "serving_default", [ROW], [0.5], 1.0)
    log.flush()
    log.log("b", "taxi", 1, "serving_default", [{**ROW, "trip_start_hour": 14.5, "fare": "x"}], [0.5], 1.0)
    log.close()
    files = _files(tmp_path)
    assert len(files) == 2
    assert pq.read_schema(files[0]) == pq.read_schema(files[1])
    second = pq.read_table(files[1]).to_pylist()[0]
    assert second["trip_start_hour"] is None and second["fare"] is None
    assert log.invalid_values == 2


def test_requests_are_written_together_column_by_column_and_each_bad_cell_alone_is_null(tmp_path):
    interval = 0.5
    log = RequestLog(str(tmp_path), features=FEATURES, flush_interval_s=interval, clock=lambda: 5.0)
    first = time.monotonic()
    for i in range(300):
        log.log(f"r{i}", "taxi", 1, "serving_default", [{**ROW, "fare": float(i)}, ROW], [[0.5], [0.25]], 1.0)
    log.log("bad", "taxi", 1, "serving_default", [{**ROW, "fare": True, "trip_start_hour": 2**70,
                                                   "payment_type": 7}], [0.5], 1.0)
    until(lambda: _files(tmp_path), "the flush interval writes the waiting requests", deadline_s=30, every_s=0.02)
    assert time.monotonic() - first >= interval, "requests wait for the flush interval, not one write per request"
    log.close()
    files = _files(tmp_path)
    assert len(files) == 1
    table = pq.read_table(files[0])
    assert table.num_rows == 601
    assert table.column("request_id").to_pylist()[:4] == ["r0", "r0", "r1", "r1"]
    assert table.column("row_index").to_pylist()[:4] == [0, 1, 0, 1]
    assert table.column("fare").to_pylist()[:3] == [0.0, 8.0, 1.0]
    assert table.column("prediction").to_pylist()[:2] == [0.5, 0.25]
    last = table.slice(600).to_pylist()[0]
    assert (last["fare"], last["trip_start_hour"], last["payment_type"]) == (None, None, "7")
    assert last["trip_miles"] == 1.2 and log.invalid_values == 2


def test_features_from_the_schema_and_ingest_reads_the_log(tmp_path):
    features = request_log.features_from_schema(schemas.schema_path("taxi"), list(FEATURES))
    assert features == FEATURES
    with pytest.raises(ValueError, match=r"\['tips'\] are not serving features"):
        request_log.features_from_schema(schemas.schema_path("taxi"), ["tips"])
    log = RequestLog(str(tmp_path), features=features, clock=lambda: 3 * DAY)
    log.log("a", "taxi", 1, "serving_default", [ROW] * 3, [0.1, 0.2, 0.3], 1.0)
    log.close()
    resolved = inputs.resolve_input(str(tmp_path))
    assert resolved.spans == (3,)
    columns = [parsing.Column(n, k, True) for n, k in FEATURES.items()]
    rows = list(parsing.file_rows(resolved.files[0], columns, (), (("all", 1),)))
    assert [r.values for r in rows] == [{"trip_miles": 1.2, "fare": 8.0, "trip_start_hour": 14,
                                         "payment_type": b"Cash"}] * 3


def test_features_inferred_from_the_first_row(tmp_path):
    log = RequestLog(str(tmp_path), clock=lambda: 0.0)
    log.log("a", "m", 1, "s", [{"x": 1, "c": "k"}], [0.5], 1.0)
    log.log("b", "m", 1, "s", [{"x": 2.5, "c": "k", "new": 3}], [0.5], 1.0)
    log.close()
    table = pq.read_table(str(tmp_path / "span-0"))
    assert table.column("x").to_pylist() == [1.0, 2.5] and "new" not in table.column_names


def test_sampling_is_deterministic_by_request_id(tmp_path):
    ids = [f"req-{i}" for i in range(2000)]
    kept = [i for i in ids if request_log.sampled(i, 0.25)]
    assert 400 < len(kept) < 600
    assert kept == [i for i in ids if request_log.sampled(i, 0.25)]
    log = RequestLog(str(tmp_path), sample=0.25, clock=lambda: 0.0)
    for i in ids:
        log.log(i, "m", 1, "s", [{"x": 1.0}], [0.5], 1.0)
    log.close()
    assert pq.read_table(str(tmp_path / "span-0")).column("request_id").to_pylist() == kept


def test_flush_interval_and_max_rows_per_file(tmp_path):
    log = RequestLog(str(tmp_path), flush_interval_s=0.2, max_rows_per_file=4, clock=lambda: 0.0)
    log.log("a", "m", 1, "s", [{"x": 1.0}] * 5, [0.5] * 5, 1.0)  # over max_rows_per_file: written at once
    until(lambda: _files(tmp_path), "a request over max_rows_per_file is written at once", deadline_s=10,
          every_s=0.02)
    assert len(_files(tmp_path)) == 1
    log.log("b", "m", 1, "s", [{"x": 1.0}], [0.5], 1.0)
    until(lambda: len(_files(tmp_path)) == 2, "the flush interval writes it without flush() or close()",
          deadline_s=10, every_s=0.02)
    log.close()
    assert log.logged_rows == 6


def test_write_errors_are_counted_and_serving_goes_on(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger=request_log.__name__)
    (tmp_path / "span-0").write_text("a file where the span folder should be")
    log = RequestLog(str(tmp_path), clock=lambda: 0.0)
    for i in range(3):
        log.log(f"r{i}", "m", 1, "s", [{"x": 1.0}] * 2, [0.5] * 2, 1.0)
        log.flush()
    assert log.counters()["write_errors"] == 3 and log.dropped_rows == 6 and log.logged_rows == 0
    assert sum("not logged" in r.message for r in caplog.records) == 1, "logged once per run of failures"
    os.remove(tmp_path / "span-0")
    log.log("ok", "m", 1, "s", [{"x": 1.0}], [0.5], 1.0)
    log.close()
    assert log.logged_rows == 1 and any("writing again" in r.message for r in caplog.records)
    log.log("late", "m", 1, "s", [{"x": 1.0}], [0.5], 1.0)
    assert log.dropped_rows == 7, "a request logged after close is counted as dropped"


def test_full_queue_drops_without_blocking(tmp_path):
    log = RequestLog(str(tmp_path), max_pending_requests=1, clock=lambda: 0.0)
    started = time.monotonic()
    for i in range(2000):
        log.log(f"r{i}", "m", 1, "s", [{"x": 1.0}], [0.5], 1.0)
    assert time.monotonic() - started < 2.0
    log.close()
    assert log.dropped_rows > 0 and log.dropped_rows + log.logged_rows == 2000


def test_a_disk_that_fills_mid_file_leaves_no_partial_file(tmp_path):
    """A real write error (the file-size limit, as a full disk fails a write): nothing partial is left."""
    script = textwrap.dedent(f"""
        import resource, signal, sys
        from flywheel.server.request_log import RequestLog
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        log = RequestLog({str(tmp_path)!r}, clock=lambda: 0.0)
        log.log("small", "m", 1, "s", [{{"x": 1.0}}], [0.5], 1.0)
        log.flush()
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        log.log("big", "m", 1, "s", [{{"x": float(i)}} for i in range(50_000)], [0.5] * 50_000, 1.0)
        log.close()
        print(log.counters())
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "'logged_rows': 1, 'dropped_rows': 50000, 'write_errors': 1" in out.stdout
    files = _files(tmp_path)
    assert len(files) == 1 and pq.read_table(files[0]).num_rows == 1


def test_a_killed_server_loses_at_most_the_last_flush_interval(tmp_path):
    script = textwrap.dedent(f"""
        import sys, time
        from flywheel.server.request_log import RequestLog
        log = RequestLog({str(tmp_path)!r}, flush_interval_s=0.3)
        i = 0
        while True:
            log.log(f"r{{i}}", "m", 1, "s", [{{"x": float(i)}}], [0.5], 1.0)
            if i == 0:
                print("started", flush=True)
            i += 1
            time.sleep(0.001)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "started"
        until(lambda: len(_files(tmp_path)) >= 3, "files keep coming every flush interval", deadline_s=60,
              every_s=0.05)
        killed = time.time()
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    files = _files(tmp_path)
    assert files and all(os.path.basename(f).startswith("part-") for f in files), files
    logged = [x for f in files for x in pq.read_table(f).column("x").to_pylist()]  # every file is whole
    assert logged == [float(i) for i in range(len(logged))], "no gap: only the tail after the last flush is lost"
    newest = max(pq.read_table(f).column("time").to_pylist()[-1] for f in files)
    assert newest.timestamp() > killed - 0.3 - 1.0, "at most the last flush interval (and a file's write) is lost"


@pytest.mark.parametrize("kwargs, message", [
    ({"sample": 1.5}, "sample: expected a share from 0 to 1, got 1.5"),
    ({"flush_interval_s": 0}, "expected flush_interval_s > 0"),
    ({"features": {"request_id": "BYTES"}}, r"\['request_id'\] are request-log columns"),
    ({"features": {"x": "complex64"}}, "feature kind 'complex64': expected INT, FLOAT, BYTES"),
])
def test_bad_arguments(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        RequestLog(str(tmp_path), **kwargs)


def _signature():
    """A signature taking FEATURES' inputs, as the server's registry describes one."""
    import tensorflow as tf

    dtypes = {"FLOAT": tf.float32, "INT": tf.int64, "BYTES": tf.string}
    inputs = {name: signatures.TensorSpec(name, dtypes[kind], (None,), dtypes[kind].as_numpy_dtype)
              for name, kind in sorted(FEATURES.items())}
    return signatures.Signature("serving_default", "tensorflow/serving/predict", inputs, {}, None)


def _typed_rows(rows: list[dict], signature=None):
    """The rows as the server's fast path decodes them (codec.Rows), for a signature taking FEATURES' inputs."""
    import json

    from flywheel.server import codec

    parsed = codec.parse_rows(json.dumps({"instances": rows}).encode(), signature or _signature())
    assert parsed is not None, "the fast path refused the rows"
    return parsed[1]


@pytest.mark.parametrize("width", [1, 3])
def test_typed_rows_and_numpy_predictions_are_written_as_dicts_and_lists_are(tmp_path, width):
    import numpy as np

    rows = [ROW, {**ROW, "fare": 9.5, "payment_type": "Crédit"}]
    outputs = np.arange(2 * width, dtype=np.float32).reshape(2, width) / 4
    tables = []
    for name, logged_rows, predictions in (("dicts", rows, outputs.tolist()),
                                           ("typed", _typed_rows(rows), outputs)):
        log = RequestLog(str(tmp_path / name), features=FEATURES, clock=lambda: 5.0)
        log.log("a", "taxi", 1, "serving_default", logged_rows, predictions, 1.0)
        log.log("b", "taxi", 1, "serving_default", logged_rows, predictions, 2.0, role="canary")
        log.log("c", "taxi", 1, "serving_default", logged_rows, [None, None], 3.0, status=400, error="bad")
        log.close()
        assert log.counters()["logged_rows"] == 6 and log.counters()["invalid_values"] == 0, name
        tables.append(pq.read_table(str(tmp_path / name)))
    assert tables[0].schema == tables[1].schema
    assert tables[0].to_pydict() == tables[1].to_pydict()
    expected = outputs.astype(np.float64).reshape(-1).tolist() if width == 1 else outputs.astype(np.float64).tolist()
    assert tables[1].column("prediction").to_pylist()[:2] == expected
    assert tables[1].column("payment_type").to_pylist()[:2] == ["Cash", "Crédit"]


def test_typed_rows_in_one_flush_with_dict_rows_and_the_first_typed_row_types_the_columns(tmp_path):
    log = RequestLog(str(tmp_path), clock=lambda: 5.0)
    log.log("a", "taxi", 1, "serving_default", _typed_rows([ROW]), [0.5], 1.0)
    log.log("b", "taxi", 1, "serving_default", [{**ROW, "fare": 2.5}], [0.25], 1.0)
    log.close()
    table = pq.read_table(str(tmp_path))
    assert table.column("fare").to_pylist() == [8.0, 2.5] and table.column("payment_type").to_pylist() == ["Cash"] * 2
    assert str(table.schema.field("trip_start_hour").type) == "double"  # typed from a row, as numbers are


def test_requests_waiting_for_their_flush_hold_none_of_the_servers_objects(tmp_path):
    """Waiting requests are their values (numbers, strings), copied out: neither the decoded rows nor the batch's
    output the server handed over are kept, and once the collector has seen them the log holds no object per
    request for it to walk again (a request's entry is a tuple of plain values, which it stops tracking)."""
    import gc
    import sys
    import weakref

    import numpy as np

    log = RequestLog(str(tmp_path), features=FEATURES, flush_interval_s=3600)
    signature = _signature()
    requests = [(_typed_rows([{**ROW, "fare": float(i)}], signature), np.array([[i / 4]], dtype=np.float32))
                for i in range(2000)]
    outputs = [weakref.ref(predictions) for _, predictions in requests]
    references = [sys.getrefcount(rows) for rows, _ in requests]
    gc.collect()
    gc.disable()
    try:
        before = len(gc.get_objects())
        for i, (rows, predictions) in enumerate(requests):
            log.log(f"r{i}", "taxi", 1, "serving_default", rows, predictions, 1.0)
        del rows, predictions
        gc.collect()
        held = len(gc.get_objects()) - before
        assert [sys.getrefcount(rows) for rows, _ in requests] == references, "the log kept a reference to rows"
        del requests
        assert all(output() is None for output in outputs), "the log kept a batch output alive"
    finally:
        gc.enable()
    assert held <= 50, f"{held} objects the collector tracks for 2000 waiting requests"
    log.close()
    table = pq.read_table(str(tmp_path))
    assert table.column("fare").to_pylist() == [float(i) for i in range(2000)]
    assert table.column("prediction").to_pylist() == [i / 4 for i in range(2000)]


def test_a_typed_value_its_column_cannot_hold_is_null_and_the_columns_stay_aligned(tmp_path):
    """A typed row holding an int beyond an INT column's int64 (the decoder admits none; a row built by hand can):
    that cell is null and counted, the rest of the request and the requests around it are written whole."""
    import msgspec
    import numpy as np

    from flywheel.server import codec

    log = RequestLog(str(tmp_path), features=FEATURES, clock=lambda: 5.0)
    signature = _signature()
    for i, hour in enumerate([3, 2**70, 4]):
        rows = _typed_rows([{**ROW, "fare": 1.5 + i, "trip_start_hour": min(hour, 23)}], signature)
        if hour > 23:  # the same row with the hour out of range
            fields = dict(zip(rows.names, msgspec.structs.fields(type(rows[0])), strict=True))
            rows = codec.Rows([msgspec.structs.replace(rows[0], **{fields["trip_start_hour"].name: hour})],
                              rows.names)
        log.log(f"r{i}", "taxi", 1, "serving_default", rows, np.array([[0.5 + i]], dtype=np.float32), 1.0)
    log.close()
    table = pq.read_table(str(tmp_path)).to_pydict()
    assert table["request_id"] == ["r0", "r1", "r2"]
    assert table["fare"] == [1.5, 2.5, 3.5] and table["trip_start_hour"] == [3, None, 4]
    assert table["prediction"] == [0.5, 1.5, 2.5]
    assert log.counters()["invalid_values"] == 1 and log.counters()["logged_rows"] == 3


def test_a_log_without_feature_columns_and_a_list_among_scalars(tmp_path):
    """No feature columns (features={}): typed rows are still logged, request columns only. Once predictions are
    scalars, a request's list prediction is null and counted, its scalar ones kept."""
    import numpy as np

    log = RequestLog(str(tmp_path / "bare"), features={}, clock=lambda: 5.0)
    log.log("a", "taxi", 1, "serving_default", _typed_rows([ROW, ROW]), np.array([[0.5], [0.25]]), 1.0)
    log.close()
    bare = pq.read_table(str(tmp_path / "bare"))
    assert bare.column("prediction").to_pylist() == [0.5, 0.25] and "fare" not in bare.column_names
    assert log.counters()["logged_rows"] == 2
    log = RequestLog(str(tmp_path / "mixed"), features=FEATURES, clock=lambda: 5.0)
    log.log("a", "taxi", 1, "serving_default", [ROW], [0.5], 1.0)
    log.log("b", "taxi", 1, "serving_default", [ROW, ROW], [[1.0, 2.0], 3.0], 1.0)
    log.close()
    assert pq.read_table(str(tmp_path / "mixed")).column("prediction").to_pylist() == [0.5, None, 3.0]
    assert log.counters()["invalid_values"] == 1


def test_one_row_requests_queued_between_others_keep_their_order_and_fields(tmp_path):
    """Answered one-row requests wait as plain tuples and go into the columns when another kind of request comes
    or at the flush: every row keeps its place, its request's fields and its values, whichever way it went in,
    and a queued row holding a value its column cannot take (an int beyond int64) is null and counted alone."""
    import msgspec
    import numpy as np

    from flywheel.server import codec

    signature = _signature()

    def one(i: int, hour: int = 5):
        rows = _typed_rows([{**ROW, "fare": float(i), "trip_start_hour": min(hour, 23)}], signature)
        if hour > 23:
            fields = dict(zip(rows.names, msgspec.structs.fields(type(rows[0])), strict=True))
            rows = codec.Rows([msgspec.structs.replace(rows[0], **{fields["trip_start_hour"].name: hour})],
                              rows.names)
        return rows

    log = RequestLog(str(tmp_path), features=FEATURES, clock=lambda: 5.0)
    scalar = lambda value: np.array([[value]], dtype=np.float32)  # noqa: E731
    log.log("a", "taxi", 1, "serving_default", one(0), scalar(0.5), 1.0)  # types the predictions: general path
    log.log("b", "taxi", 1, "serving_default", one(1), scalar(1.5), 2.0)  # queued
    log.log("c", "taxi", 2, "serving_default", one(2, 2**70), scalar(2.5), 3.0)  # queued, its hour too large
    log.log("d", "taxi", 2, "serving_default", _typed_rows([{**ROW, "fare": 3.0}, {**ROW, "fare": 4.0}], signature),
            np.array([[3.5], [4.5]], dtype=np.float32), 4.0)  # two rows: the queue goes in first
    log.log("e", "taxi", 2, "serving_default", one(5), scalar(5.5), 5.0)  # queued
    log.log("f", "taxi", 2, "serving_default", one(6), [None], 6.0, status=400, error="bad")  # failed
    log.log("g", "taxi", 2, "serving_default", one(7), scalar(7.5), 7.0, role="canary")  # a role: general path
    log.log("h", "taxi", 3, "other", one(8), scalar(8.5), 8.0)  # queued until the flush
    log.close()
    table = pq.read_table(str(tmp_path)).to_pydict()
    assert table["request_id"] == ["a", "b", "c", "d", "d", "e", "f", "g", "h"]
    assert table["row_index"] == [0, 0, 0, 0, 1, 0, 0, 0, 0]
    assert table["fare"] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
    assert table["trip_start_hour"] == [5, 5, None, 14, 14, 5, 5, 5, 5]
    assert table["prediction"] == [0.5, 1.5, 2.5, 3.5, 4.5, 5.5, None, 7.5, 8.5]
    assert table["latency_ms"] == [1.0, 2.0, 3.0, 4.0, 4.0, 5.0, 6.0, 7.0, 8.0]
    assert table["model_version"] == [1, 1, 2, 2, 2, 2, 2, 2, 3]
    assert table["signature_name"] == ["serving_default"] * 8 + ["other"]
    assert table["status"] == [200] * 6 + [400, 200, 200]
    assert table["error"] == [None] * 6 + ["bad", None, None]
    assert table["rollout_role"] == [None] * 7 + ["canary", None]
    assert table["payment_type"] == ["Cash"] * 9
    assert log.counters() == {"logged_rows": 9, "dropped_rows": 0, "write_errors": 0, "invalid_values": 1,
                              "files_written": 1}


def test_a_one_row_request_with_a_latency_that_is_not_a_number_is_refused_at_once(tmp_path):
    """A caller's latency that is not a number is refused by `log` itself (the server reports it and serves
    on), not queued to break the columns of the requests around it at the flush."""
    import numpy as np

    log = RequestLog(str(tmp_path), features=FEATURES, clock=lambda: 5.0)
    rows = _typed_rows([ROW])
    log.log("a", "taxi", 1, "serving_default", rows, np.array([[0.5]], dtype=np.float32), 1.0)
    with pytest.raises(TypeError):
        log.log("b", "taxi", 1, "serving_default", rows, np.array([[1.5]], dtype=np.float32), None)
    log.log("c", "taxi", 1, "serving_default", rows, np.array([[2.5]], dtype=np.float32), 3.0)
    log.log("d", "taxi", 1, "serving_default", _typed_rows([ROW, ROW]), np.array([[3.5], [4.5]]), 4.0)
    log.close()
    table = pq.read_table(str(tmp_path)).to_pydict()
    assert table["request_id"] == ["a", "c", "d", "d"] and table["latency_ms"] == [1.0, 3.0, 4.0, 4.0]
    assert table["prediction"] == [0.5, 2.5, 3.5, 4.5]
    assert log.counters()["logged_rows"] == 4 and log.counters()["dropped_rows"] == 0


def _neighbours(tmp_path, bad: dict, features=FEATURES, **log_kwargs) -> tuple[RequestLog, list[dict]]:
    """500 good one-row requests, the bad one, 500 good, all waiting for one flush; the rows written, in order."""
    log = RequestLog(str(tmp_path), features=features, clock=lambda: 5.0, flush_interval_s=3600, **log_kwargs)
    for i in range(500):
        log.log(f"a{i}", "taxi", 1, "serving_default", [{**ROW, "fare": float(i)}], [0.5], 1.0)
    log.log(**{"request_id": "bad", "model": "taxi", "version": 1, "signature": "serving_default", "rows": [ROW],
               "predictions": [0.25], "latency_ms": 1.0, **bad})
    for i in range(500):
        log.log(f"b{i}", "taxi", 1, "serving_default", [{**ROW, "fare": float(i)}], [0.5], 1.0)
    log.close()
    return log, pq.read_table(str(tmp_path)).to_pylist()


LONE = "\ud800"


@pytest.mark.parametrize("bad, column, stored", [
    ({"rows": [{**ROW, "payment_type": f"Ca{LONE}sh"}]}, "payment_type", "Ca\ufffdsh"),
    ({"rows": [{**ROW, "payment_type": "\udfff" + LONE}]}, "payment_type", "\ufffd\ufffd"),
    ({"signature": LONE}, "signature_name", "\ufffd"),
    ({"model": f"taxi{LONE}"}, "model", "taxi\ufffd"),
    ({"request_id": f"id-{LONE}"}, "request_id", "id-\ufffd"),
    ({"predictions": [None], "status": 400, "error": f"unknown input '{LONE}'"}, "error", "unknown input '\ufffd'"),
    ({"role": LONE}, "rollout_role", "\ufffd"),
    ({"version": 99999999999999999999}, "model_version", None),
    ({"version": -(2**63) - 1}, "model_version", None),
    ({"request_id": 7}, "request_id", None),
])
def test_a_value_parquet_cannot_take_costs_its_own_cell_and_never_the_neighbours_rows(tmp_path, bad, column, stored):
    """Lone surrogates (a JSON escape Python's parser keeps, which no UTF-8 holds) are stored with U+FFFD in their
    place and a version beyond int64 as null, each counted in invalid_values; the 1,000 rows around it are written."""
    log, rows = _neighbours(tmp_path, bad)
    assert log.counters() == {"logged_rows": 1001, "dropped_rows": 0, "write_errors": 0, "invalid_values": 1,
                              "files_written": 1}
    assert [r["request_id"] for r in rows[:500]] == [f"a{i}" for i in range(500)]
    assert [r["request_id"] for r in rows[501:]] == [f"b{i}" for i in range(500)]
    assert [r["fare"] for r in rows[501:]] == [float(i) for i in range(500)]
    assert rows[500][column] == stored and rows[500]["prediction"] == (None if "status" in bad else 0.25)


@pytest.mark.parametrize("value, stored, invalid", [
    (float("nan"), "nan", 0),
    (float("inf"), float("inf"), 0),
    (float("-inf"), float("-inf"), 0),
    pytest.param(10**400, None, 1, id="10**400"),  # beyond float's range
    (2**70, float(2**70), 0),  # a float feature takes an int beyond int64 as a float
    ([[[[[[1.0]]]]]], None, 1),  # nested
    ({"b64": "AAA="}, None, 1),
    (True, None, 1),
])
def test_every_json_number_and_shape_in_a_float_feature_and_the_neighbours(tmp_path, value, stored, invalid):
    log, rows = _neighbours(tmp_path, {"rows": [{**ROW, "fare": value}]})
    assert log.counters()["logged_rows"] == 1001 and log.counters()["invalid_values"] == invalid
    assert log.counters()["dropped_rows"] == 0
    cell = rows[500]["fare"]
    assert (cell != cell) if stored == "nan" else cell == stored
    assert [r["fare"] for r in rows[501:]] == [float(i) for i in range(500)]


@pytest.mark.parametrize("column, value, stored, invalid", [
    ("trip_start_hour", 2**63, None, 1),  # an int column: beyond int64
    ("trip_start_hour", -(2**63), -(2**63), 0),
    ("trip_start_hour", 1e400, None, 1),  # 1e400 parses as infinity
    ("trip_start_hour", float("nan"), None, 1),
    pytest.param("payment_type", 10**5000, None, 1, id="5001-digit"),  # beyond Python's int-to-text limit
    ("payment_type", 10**20, str(10**20), 0),
    pytest.param("payment_type", "x" * 2_000_000, "x" * 2_000_000, 0, id="2MB"),  # stored whole
    ("payment_type", b"\xff\xfeCash", "\ufffd\ufffdCash", 0),  # bytes that are not UTF-8
    ("payment_type", ["a", ["b"]], None, 1),
])
def test_ints_beyond_int64_long_text_and_bytes_that_are_not_utf8_and_the_neighbours(tmp_path, column, value, stored,
                                                                                   invalid):
    log, rows = _neighbours(tmp_path, {"rows": [{**ROW, column: value}]})
    assert log.counters()["logged_rows"] == 1001 and log.counters()["invalid_values"] == invalid
    assert rows[500][column] == stored and rows[501]["payment_type"] == "Cash"


def test_a_key_that_cannot_name_a_column_is_not_logged_and_never_costs_a_row(tmp_path):
    """With declared features a key beyond them is not logged; with features typed from the first row, a key that
    is a lone surrogate or a request-log column is left out of the columns; a declared one is refused, named."""
    log, rows = _neighbours(tmp_path / "declared", {"rows": [{**ROW, LONE: 1.0, f"x{LONE}": "y"}]})
    assert log.counters()["logged_rows"] == 1001 and log.counters()["invalid_values"] == 0
    assert rows[500]["fare"] == ROW["fare"]
    inferred = RequestLog(str(tmp_path / "inferred"), clock=lambda: 5.0)
    inferred.log("first", "m", 1, "s", [{"x": 1.0, LONE: "a", "status": 3.0}], [0.5], 1.0)
    inferred.log("next", "m", 1, "s", [{"x": 2.0}], [0.5], 1.0)
    inferred.close()
    table = pq.read_table(str(tmp_path / "inferred"))
    assert table.column_names[-2:] == ["x", "prediction"] and table.column("x").to_pylist() == [1.0, 2.0]
    assert table.column("status").to_pylist() == [200, 200]
    with pytest.raises(ValueError, match=r"feature name\(s\) \['\\ud800'\]: expected text a Parquet column can be"):
        RequestLog(str(tmp_path / "refused"), features={LONE: "FLOAT"})


def test_a_file_that_cannot_be_written_loses_its_own_rows_and_not_the_flushs_other_files(tmp_path):
    """One flush of two spans where span-1's folder cannot be made: its rows are lost and counted, span-0's written."""
    (tmp_path / "span-1").write_text("a file where the span folder should be")
    now = [0.0]
    log = RequestLog(str(tmp_path), features=FEATURES, clock=lambda: now[0], flush_interval_s=3600)
    for i in range(10):
        now[0] = (i % 2) * DAY + i
        log.log(f"r{i}", "taxi", 1, "serving_default", [ROW] * 3, [0.5] * 3, 1.0)
    log.close()
    assert log.counters() == {"logged_rows": 15, "dropped_rows": 15, "write_errors": 1, "invalid_values": 0,
                              "files_written": 1}
    assert pq.read_table(str(tmp_path / "span-0")).column("request_id").to_pylist() == \
        [f"r{i}" for i in range(0, 10, 2) for _ in range(3)]


class _HeldLog(RequestLog):
    """A RequestLog whose writer, once woken, waits for `release` before it writes: what it holds stays pending."""

    def __init__(self, *args, **kwargs):
        self.writing, self.release = threading.Event(), threading.Event()
        super().__init__(*args, **kwargs)

    def _write_buffer(self, buffer) -> None:
        self.writing.set()
        assert self.release.wait(60), "the test never released the writer"
        super()._write_buffer(buffer)


@pytest.mark.parametrize("path", ["one-row fast path", "general path"])
def test_pending_log_data_is_bounded_in_bytes_and_beyond_it_requests_are_dropped_and_counted(tmp_path, path):
    """Requests of 300,000 bytes (as the server counts a body) against a budget of 1,000,000: the second reaches
    half of it and wakes the writer (held here), the third fits beside what is being written, the fourth does not
    and is dropped, counted; once the writer is done, the budget is free again."""
    import numpy as np

    log = _HeldLog(str(tmp_path), features=FEATURES, clock=lambda: 5.0, flush_interval_s=3600,
                   max_pending_bytes=1_000_000)
    log.log("first", "taxi", 1, "serving_default", [ROW], [0.5], 1.0, body_bytes=1)  # predictions are scalars

    def send(request_id: str) -> None:
        if path == "general path":
            log.log(request_id, "taxi", 1, "serving_default", [ROW], [0.5], 1.0, body_bytes=300_000)
        else:
            log.log(request_id, "taxi", 1, "serving_default", _typed_rows([ROW]), np.array([0.5], np.float32), 1.0,
                    body_bytes=300_000)

    for i in range(3):
        send(f"r{i}")
        if i == 1:
            assert log.writing.wait(10), "half the budget waiting wakes the writer"
    send("r3")
    assert log.counters()["dropped_rows"] == 1
    log.release.set()
    assert log.flush(10)
    send("after")
    log.close()
    assert log.counters()["dropped_rows"] == 1 and log.counters()["logged_rows"] == 5
    assert sorted(pq.read_table(str(tmp_path)).column("request_id").to_pylist()) == \
        ["after", "first", "r0", "r1", "r2"]


def test_without_a_body_length_a_request_is_estimated_from_its_rows_and_text(tmp_path):
    """A caller that gives no body length (the shadow's copy, a library user): a 2 MB string counts as 2 MB."""
    log = _HeldLog(str(tmp_path), features=FEATURES, clock=lambda: 5.0, flush_interval_s=3600,
                   max_pending_bytes=3_000_000)
    big = {**ROW, "payment_type": "x" * 2_000_000}
    log.log("big", "taxi", 1, "serving_default", [big], [0.5], 1.0)
    assert log.writing.wait(10)
    log.log("small", "taxi", 1, "serving_default", [ROW] * 1000, [0.5] * 1000, 1.0)  # about 100 kB
    log.log("big again", "taxi", 1, "serving_default", [big], [0.5], 1.0)
    log.release.set()
    log.close()
    assert log.counters()["dropped_rows"] == 1 and log.counters()["logged_rows"] == 1001


def test_serve_refuses_a_byte_budget_that_is_not_above_zero(tmp_path, capfd):
    for value in ("0", "-1", "nan", "inf"):
        out = call_cli(capfd, "serve", "--serving-dir", str(tmp_path), "--log-dir", str(tmp_path / "logs"),
                       "--log-max-pending-mb", value)
        assert out.returncode == 2, out.stderr
        assert out.stderr.strip().splitlines()[-1] == \
            f"flywheel: serve: --log-max-pending-mb must be a number above 0, got {float(value)}"


def _served_log(serving_dir: str, log_dir: str, **kwargs) -> RequestLog:
    from flywheel.server.run import signature_inputs

    features = signature_inputs(os.path.join(serving_dir, "taxi", "1"))
    return kwargs.pop("log_type", RequestLog)(log_dir, features=features, flush_interval_s=3600, **kwargs)


HOSTILE_BODIES = {  # what a JSON body can carry, each sent between good requests to the real server
    "surrogate value": '{"instances": [%s]}' % json.dumps({**ISSUE_ROW, "payment_type": "Ca\ud800sh"}),
    "surrogate key": '{"instances": [%s]}' % json.dumps({**ISSUE_ROW, "\ud800": 1.0}),
    "surrogate signature": '{"signature_name": "\\ud800", "instances": [%s]}' % json.dumps(ISSUE_ROW),
    "NaN and Infinity": '{"instances": [%s]}' % json.dumps({**ISSUE_ROW, "fare": float("nan"),
                                                            "trip_miles": float("-inf")}),
    "1e400": '{"instances": [%s]}' % json.dumps(ISSUE_ROW).replace('"fare": 8.5', '"fare": 1e400'),
    "2 MB string": '{"instances": [%s]}' % json.dumps({**ISSUE_ROW, "payment_type": "x" * 2_000_000}),
    "deep nesting": '{"instances": [{"fare": %s}]}' % ("[" * 5000 + "]" * 5000),
    "duplicate keys": '{"instances": [%s]}' % json.dumps(ISSUE_ROW).replace('"fare": 8.5', '"fare": 8.5, "fare": 9.5'),
    "int beyond int64": '{"instances": [%s]}' % json.dumps({**ISSUE_ROW, "trip_seconds": 10**30}),
    "5000-digit int": '{"instances": [{"trip_seconds": %s}]}' % ("9" * 5000),
    "float beyond float32": '{"instances": [%s]}' % json.dumps({**ISSUE_ROW, "fare": 1e300}),
}


def test_every_value_a_json_body_carries_through_the_server_never_costs_the_neighbours_rows(serving_dir, tmp_path):
    """Through the real app: each hostile body (and bytes that are not UTF-8, and a URL model name that is not) is
    answered (2xx or an error, not this test's concern) and logged as its own row; the good requests around them
    are all written, nothing dropped, no write error."""
    from starlette.testclient import TestClient

    from flywheel.server import models, server

    bodies = {**{name: body.encode("utf-8", "surrogatepass") for name, body in HOSTILE_BODIES.items()},
              "not UTF-8": b'{"instances": [{"payment_type": "\xff\xfe"}]}'}
    log = _served_log(serving_dir, str(tmp_path / "logs"))
    sent = []
    app = server.create_app(models.ModelRegistry(serving_dir, "taxi", poll_seconds=3600.0), request_log=log)
    with TestClient(app, raise_server_exceptions=False) as client:
        for name, body in [*bodies.items(), ("model name not UTF-8", b"")]:
            for _ in range(20):
                sent.append(f"good-{len(sent)}")
                client.post("/v1/models/taxi:predict", json={"instances": [ISSUE_ROW]},
                            headers={"X-Request-Id": sent[-1]})
            path = "/v1/models/taxi%ED%A0%80:predict" if name == "model name not UTF-8" else "/v1/models/taxi:predict"
            client.post(path, content=body or json.dumps({"instances": [ISSUE_ROW]}), headers={"X-Request-Id": name})
    counters = log.counters()
    assert counters["dropped_rows"] == 0 and counters["write_errors"] == 0, counters
    table = pq.read_table(str(tmp_path / "logs")).to_pydict()
    logged = table["request_id"]
    assert [i for i in logged if i.startswith("good-")] == sent
    assert set(logged) - set(sent) == {*bodies, "model name not UTF-8"}
    row = {name: {column: values[logged.index(name)] for column, values in table.items()} for name in bodies}
    assert row["surrogate value"]["payment_type"] in ("Ca\ufffdsh", None)
    assert row["2 MB string"]["payment_type"] == "x" * 2_000_000 and row["2 MB string"]["status"] == 200
    assert row["duplicate keys"]["fare"] == 9.5
    assert "\ud800" not in "".join(str(v) for r in row.values() for v in r.values())


def test_the_server_counts_a_requests_body_length_against_the_logs_byte_budget(serving_dir, tmp_path):
    """Bodies padded to 100,000 bytes with JSON whitespace against a budget of 250,000: the second wakes the writer
    (held), the third would take the waiting data beyond the budget and is answered but not logged, counted."""
    from starlette.testclient import TestClient

    from flywheel.server import models, server

    body = json.dumps({"instances": [ISSUE_ROW]}).encode()
    body += b" " * (100_000 - len(body))
    log = _served_log(serving_dir, str(tmp_path / "logs"), log_type=_HeldLog, max_pending_bytes=250_000)
    app = server.create_app(models.ModelRegistry(serving_dir, "taxi", poll_seconds=3600.0), request_log=log)
    with TestClient(app) as client:
        answers = []
        for i in range(3):
            answers.append(client.post("/v1/models/taxi:predict", content=body, headers={"X-Request-Id": f"r{i}"}))
            if i == 1:
                assert log.writing.wait(10), "half the budget waiting wakes the writer"
        assert [a.status_code for a in answers] == [200] * 3
        assert log.counters()["dropped_rows"] == 1
        log.release.set()
    assert log.counters()["logged_rows"] == 2
    assert sorted(pq.read_table(str(tmp_path / "logs")).column("request_id").to_pylist()) == ["r0", "r1"]
