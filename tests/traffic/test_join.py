"""`flywheel logs join`: labels joined to a real request log by key into spans Ingest and the monitor read."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import roc_auc_score

import flywheel
from flywheel import schemas
from flywheel.cli.traffic import join_lines
from flywheel.server.request_log import RequestLog, features_from_schema
from tests.conftest import call_cli, run_cli, shipped_data

MODEL_FEATURES = ["trip_miles", "fare", "trip_seconds", "pickup_latitude", "pickup_longitude", "trip_start_hour",
                  "trip_start_day", "trip_start_month", "payment_type"]
DAY = 86_400


def _records(n: int) -> list[dict]:
    table = pcsv.read_csv(shipped_data())
    table = table.filter(pc.is_valid(table.column("pickup_latitude")))
    table = table.filter(pc.is_valid(table.column("trip_seconds"))).slice(0, n)
    return table.to_pylist()


@pytest.fixture()
def logged(tmp_path):
    """A log of 60 one-row requests over two UTC days (spans 100 and 101), trip-0 logged twice."""
    records = _records(60)
    now = [100 * DAY + 5.0]
    log = RequestLog(str(tmp_path / "logs"), features=features_from_schema(schemas.schema_path("taxi"),
                                                                            MODEL_FEATURES), clock=lambda: now[0])
    for i, record in enumerate(records):
        if i == 30:
            now[0] = 101 * DAY + 5.0
        score = float(record["tips"] > 0.2 * record["fare"]) * 0.3 + (i % 5) * 0.15
        log.log(f"trip-{i}", "taxi", 3, "serving_default", [{f: record[f] for f in MODEL_FEATURES}], [score], 1.0)
    log.log("trip-0", "taxi", 3, "serving_default", [{f: records[0][f] for f in MODEL_FEATURES}], [0.99], 1.0)
    log.close()
    return str(tmp_path / "logs"), records


def _labels(tmp_path, records, ids, extra=()) -> str:
    """The original records as labels arriving later: every column, keyed by request_id."""
    rows = [dict(records[i], request_id=f"trip-{i}") for i in ids] + list(extra)
    folder = tmp_path / "labels"
    folder.mkdir(exist_ok=True)
    pcsv.write_csv(pa.Table.from_pylist(rows), str(folder / "labels.csv"))
    return str(folder)


def test_join_counts_duplicates_and_unmatched_and_keeps_spans(tmp_path, logged):
    logs, records = logged
    stray = dict(records[1], request_id="never-logged")
    conflicting = dict(records[2], request_id="trip-2", tips=records[2]["tips"] + 5.0)
    labels = _labels(tmp_path, records, [i for i in range(60) if i not in (7, 40)], [stray, conflicting])
    result = flywheel.logs_join(logs, labels, "request_id", str(tmp_path / "joined"))
    assert (result.log_rows, result.label_rows, result.joined_rows) == (61, 60, 58)
    assert result.unmatched_logs == 2 and sorted(result.first_unmatched_logs) == ["trip-40", "trip-7"]
    assert result.unmatched_labels == 1 and result.first_unmatched_labels == ["never-logged"]
    assert result.duplicate_logs == 1 and result.duplicate_labels == 1 and result.conflicting_labels == 1
    assert sorted(os.listdir(tmp_path / "joined")) == ["span-100", "span-101"]
    assert result.spans[100] == {"joined": 28, "unmatched_logs": 1, "path": str(tmp_path / "joined" / "span-100" /
                                                                                 "joined.parquet")}
    assert result.spans[101]["joined"] == 30, "trip-0 was logged again on day 101: its latest row is there"
    joined = pq.read_table(str(tmp_path / "joined")).to_pylist()
    by_id = {r["request_id"]: r for r in joined}
    assert by_id["trip-0"]["prediction"] == 0.99, "the latest logged row of a key is kept"
    assert by_id["trip-2"]["tips"] == records[2]["tips"] + 5.0, "the last label read is kept"
    assert all(r["label"] == int(r["tips"] > 0.2 * r["fare"]) for r in joined)
    assert by_id["trip-3"]["trip_start_timestamp"] == records[3]["trip_start_timestamp"]


def test_ingest_and_the_monitor_read_the_joined_spans(tmp_path, logged, capfd):
    logs, records = logged
    joined = str(tmp_path / "joined")
    flywheel.logs_join(logs, _labels(tmp_path, records, range(60)), "request_id", joined)
    ingested = flywheel.ingest(joined, schemas.schema_path("taxi"), str(tmp_path / "ingest"), num_spans=2)
    assert ingested.error is None and ingested.spans == [100, 101]
    assert ingested.rows_read == 60 and ingested.rows_quarantined == 0
    push = tmp_path / "push.json"
    push.write_text(json.dumps({"metrics": {"auc": 0.99}}))
    out = call_cli(capfd, "monitor", "--baseline", shipped_data(), "--current", os.path.join(joined, "span-101"),
                   "--schema", schemas.schema_path("taxi"), "--reference-metrics", str(push), "--json")
    result = json.loads(out.stdout)
    performance = result["performance"]
    rows = pq.read_table(os.path.join(joined, "span-101")).to_pylist()
    labels = np.array([int(r["tips"] > 0.2 * r["fare"]) for r in rows])
    expected = roc_auc_score(labels, [r["prediction"] for r in rows])
    assert performance["rows"] == 31 and performance["value"] == pytest.approx(expected, abs=1e-6), performance
    assert expected < 0.94 and performance["drift"] is True and out.returncode == 1, "AUC fell > 0.05 below 0.99"


def test_join_refuses_labels_that_leave_out_a_required_column(tmp_path, logged, capfd):
    logs, records = logged
    folder = tmp_path / "labels"
    folder.mkdir()
    pcsv.write_csv(pa.table({"request_id": ["trip-1"], "tips": [1.0]}), str(folder / "labels.csv"))
    out = call_cli(capfd, "logs", "join", "--logs", logs, "--labels", str(folder), "--key", "request_id",
                   "--output", str(tmp_path / "joined"))
    assert out.returncode == 2
    assert "lack column(s) ['trip_start_timestamp'], which Ingest requires" in out.stderr
    assert not os.path.exists(tmp_path / "joined"), "nothing written"


@pytest.mark.parametrize("key, log_key, labels_table, message", [
    ("trip_id", "trip_id", {"trip_id": ["x"], "tips": [1.0]},
     r"log span 100: no key column 'trip_id' \(to match the labels' 'trip_id'\)"),
    ("trip_id", None, {"request_id": ["x"], "tips": [1.0]}, r"labels: no key column 'trip_id'"),
    ("request_id", None, {"request_id": ["x"], "tip": [1.0]}, r"labels: no label column 'tips'"),
])
def test_join_bad_input(tmp_path, logged, key, log_key, labels_table, message):
    folder = tmp_path / "labels"
    folder.mkdir()
    pcsv.write_csv(pa.table(labels_table), str(folder / "labels.csv"))
    with pytest.raises(flywheel.UsageError, match=message):
        flywheel.logs_join(logged[0], str(folder), key, str(tmp_path / "joined"), log_key=log_key)


def test_labels_keyed_by_the_id_the_client_sent_join_on_the_logged_request_id(tmp_path, logged, capfd):
    logs, records = logged
    folder = tmp_path / "labels"
    folder.mkdir()
    rows = [dict(records[i], trip_id=f"trip-{i}") for i in range(20)]
    pcsv.write_csv(pa.Table.from_pylist(rows), str(folder / "labels.csv"))
    result = flywheel.logs_join(logs, str(folder), "trip_id", str(tmp_path / "joined"))
    assert result.log_key == "request_id" and result.joined_rows == 20 and result.unmatched_labels == 0
    assert "labels' 'trip_id' = log's 'request_id'" in join_lines(result)[0]
    joined = pq.read_table(str(tmp_path / "joined")).to_pylist()
    assert all(r["trip_id"] == r["request_id"] for r in joined) and len(joined) == 20
    out = call_cli(capfd, "logs", "join", "--logs", logs, "--labels", str(folder), "--key", "trip_id", "--log-key",
                   "request_id", "--output", str(tmp_path / "again"), "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["joined_rows"] == 20


def test_join_into_one_span_of_a_data_folder_numbered_its_own_way(tmp_path, logged):
    logs, records = logged
    data = tmp_path / "data"
    (data / "span-1").mkdir(parents=True)
    result = flywheel.logs_join(logs, _labels(tmp_path, records, range(60)), "request_id", str(data), span=2)
    assert result.joined_rows == 60 and sorted(os.listdir(data)) == ["span-1", "span-2"]
    assert sorted(os.listdir(data / "span-2")) == ["joined-100.parquet", "joined-101.parquet"]
    assert pq.read_table(str(data / "span-2")).num_rows == 60
    with pytest.raises(flywheel.UsageError, match="span: expected a span number >= 0, got -1"):
        flywheel.logs_join(logs, _labels(tmp_path, records, range(60)), "request_id", str(data), span=-1)


@pytest.mark.slow  # the flywheel command as a process
def test_join_cli_json(tmp_path, logged):
    """The installed `flywheel logs join` in its own process: --json prints only JSON on stdout."""
    logs, records = logged
    out = run_cli("logs", "join", "--logs", logs, "--labels", _labels(tmp_path, records, range(10)), "--key",
                  "request_id", "--output", str(tmp_path / "joined"), "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["joined_rows"] == 10 and result["unmatched_logs"] == 50


def test_join_text_names_the_folders_written_and_says_what_was_left_out(tmp_path, logged):
    """--span 4 writes <output>/span-4/joined-<log span>.parquet: the line names span-4 (it used to print the log's
    span numbers, 100 and 101, as if they were the folders), and the log's spans it came from."""
    logs, records = logged
    labels = _labels(tmp_path, records, range(60))
    line = join_lines(flywheel.logs_join(logs, labels, "request_id", str(tmp_path / "joined"), span=4))[0]
    assert f"into {tmp_path / 'joined' / 'span-4'} (from the log's span 100, 101);" in line, line
    assert sorted(os.listdir(tmp_path / "joined" / "span-4")) == ["joined-100.parquet", "joined-101.parquet"]
    assert "left out because no client got their answer (failed requests, shadow copies)" in line
    own = join_lines(flywheel.logs_join(logs, labels, "request_id", str(tmp_path / "own")))[0]
    assert f"into {tmp_path / 'own' / 'span-100'}, {tmp_path / 'own' / 'span-101'};" in own, own


def _fresh_log(tmp_path, rows: int = 10):
    """A request log written just now (the real clock), as a server's right after a replay."""
    records = _records(rows)
    log = RequestLog(str(tmp_path / "fresh-logs"), features=features_from_schema(schemas.schema_path("taxi"),
                                                                                 MODEL_FEATURES))
    for i, record in enumerate(records):
        log.log(f"trip-{i}", "taxi", 3, "serving_default", [{f: record[f] for f in MODEL_FEATURES}], [0.5], 1.0)
    log.close()
    return str(tmp_path / "fresh-logs"), records


def test_join_of_a_log_the_server_may_still_be_writing_warns_in_one_line(tmp_path, capfd):
    """Right after a replay the server still holds up to 5 s of rows: the join says so on stderr (one line, the
    result on stdout as ever); a log whose newest row is old has settled and gets no warning."""
    logs, records = _fresh_log(tmp_path)
    labels = _labels(tmp_path, records, range(10))
    result = call_cli(capfd, "logs", "join", "--logs", logs, "--labels", labels, "--key", "request_id",
                      "--output", str(tmp_path / "joined"))
    assert result.returncode == 0, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("flywheel: logs join: warning: the request log's newest row was "), \
        result.stderr
    assert "stop the server first" in lines[0] and "--wait-for-log 60" in lines[0]
    assert result.stdout.startswith("flywheel logs join: 10 of 10 logged rows joined")


def test_join_of_a_settled_log_does_not_warn(tmp_path, logged, capfd):
    logs, records = logged
    labels = _labels(tmp_path, records, range(60))
    result = call_cli(capfd, "logs", "join", "--logs", logs, "--labels", labels, "--key", "request_id",
                      "--output", str(tmp_path / "joined"), "--json")
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr
    assert json.loads(result.stdout)["log_freshness"]["maybe_incomplete"] is False


def test_wait_for_log_waits_for_the_log_to_settle_then_joins(tmp_path):
    """--wait-for-log: the join reads the log once its newest row is two flush intervals (10 s) old; a deadline
    shorter than that joins what is there, and the result still says the log may be incomplete."""
    logs, records = _fresh_log(tmp_path)
    labels = _labels(tmp_path, records, range(10))
    started = time.monotonic()
    found = flywheel.logs_join(logs, labels, "request_id", str(tmp_path / "joined"), wait_for_log=0.3)
    assert 0.3 <= time.monotonic() - started < 5 and found.joined_rows == 10 and found.log_maybe_incomplete
    with pytest.raises(flywheel.UsageError, match=r"--wait-for-log: expected seconds >= 0, got -1"):
        flywheel.logs_join(logs, labels, "request_id", str(tmp_path / "again"), wait_for_log=-1)
