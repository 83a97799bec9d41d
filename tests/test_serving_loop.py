"""The loop closed at the production end, end to end on real processes and files:

simulated spans with drift -> `flywheel serve` (a real process, logging requests) -> `flywheel replay` of the
drifted span -> request log -> the monitor flags the drifted features and the prediction shift against the
serving model's baseline profile -> labels that arrive later joined to the log -> `retrain` on the joined spans
-> the running server picks up the new version without a restart, and no request failed.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time

import httpx
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from flywheel import api, schemas
from flywheel.components.common import serving
from flywheel.components.push import publish
from tests.conftest import FLYWHEEL, REPO

MODEL = "taxi"
ROWS = 3000  # the continuous-training loop's spans
STEPS = 200
DRIFTED_FEATURES = ("fare", "trip_miles", "payment_type")
UNCHANGED_FEATURES = ("trip_seconds", "pickup_latitude", "pickup_longitude", "trip_start_day", "trip_start_month")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(what: str, check, proc: subprocess.Popen, timeout: float = 180.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = check()
        except httpx.TransportError:
            found = None
        if found:
            return found
        assert proc.poll() is None, f"the server exited while waiting for {what}: {proc.stderr.read()}"
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s waiting for {what}"
        time.sleep(0.5)


def _available(base: str) -> list[int]:
    status = httpx.get(f"{base}/v1/models/{MODEL}", timeout=10).json()
    return sorted(int(v["version"]) for v in status["model_version_status"] if v["state"] == "AVAILABLE")


def _logged_rows(log_dir: str) -> int:
    files = [os.path.join(root, f) for root, _, names in os.walk(log_dir) for f in names
             if f.endswith(".parquet") and not f.startswith(".")]
    return sum(pq.ParquetFile(f).metadata.num_rows for f in files)


@pytest.fixture(scope="module")
def served(loop, tmp_path_factory):
    """The continuous-training loop's first model (trained on simulated span 1) in serving; span 3 (drifted)
    arrives as requests."""
    root = tmp_path_factory.mktemp("serving_loop")
    sim, serving_dir, logs = loop["sim"], str(root / "serving"), str(root / "logs")
    version = loop["versions"][0][0]
    os.makedirs(os.path.join(serving_dir, MODEL))
    os.symlink(os.path.join(loop["out"], "serving", MODEL, str(version)), os.path.join(serving_dir, MODEL,
                                                                                       str(version)))
    first = serving.latest(serving_dir, MODEL)
    (root / "data").mkdir()
    os.symlink(os.path.join(sim, "span-1"), root / "data" / "span-1")

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([FLYWHEEL, "serve", "--serving-dir", serving_dir, "--model", MODEL, "--port", str(port),
                             "--log-dir", logs], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    found: dict = {"first": first.version, "pid": proc.pid, "root": root}
    try:
        _wait("the first version", lambda: _available(base) == [first.version], proc)
        found["replay"] = api.replay("taxi", os.path.join(sim, "span-3"), f"{base}/v1/models/{MODEL}",
                                     id_column="trip_id")
        _wait("the replayed rows in the log (one flush interval)",
              lambda: _logged_rows(logs) >= found["replay"].rows_sent, proc, 60)
        found["monitor"] = api.monitor(os.path.join(first.path, publish.BASELINE_PROFILE), logs,
                                       schema=schemas.schema_path("taxi"), report_dir=str(root / "drift"))
        # The joined rows land in the data folder as span 2, after the span trained on before.
        found["join"] = api.logs_join(logs, os.path.join(sim, "span-3"), "trip_id", str(root / "data"), span=2)
        found["retrain"] = api.retrain("taxi", str(root / "data"), str(root / "out"), serving_dir=serving_dir,
                                       if_drift=True, train_steps=STEPS)
        new = found["retrain"].model_version
        found["picked_up"] = _wait("the retrained version", lambda: new in _available(base) and _available(base),
                                   proc, 120)
        found["after"] = [httpx.post(f"{base}/v1/models/{MODEL}:predict", json={"instances": [row]},
                                     headers={"X-Request-Id": f"after-{i}"}, timeout=30)
                          for i, row in enumerate(_rows(os.path.join(sim, "span-3"), 20))]
        found["pid_after"] = _wait("status", lambda: proc.pid if _available(base) else None, proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    found["returncode"], found["stderr"] = proc.returncode, proc.stderr.read()
    found["log"] = pq.read_table(logs)
    return found


def _rows(span: str, n: int) -> list[dict]:
    import pyarrow.csv as pcsv

    table = pcsv.read_csv(os.path.join(span, "data.csv"))
    features = ["trip_miles", "fare", "trip_seconds", "pickup_latitude", "pickup_longitude", "trip_start_hour",
                "trip_start_day", "trip_start_month", "payment_type"]
    for name in features:
        table = table.filter(pc.is_valid(table.column(name)))
    return table.select(features).slice(0, n).to_pylist()


def test_the_replayed_drifted_span_is_answered_and_logged_whole(served):
    replay = served["replay"]
    assert replay.failed == 0 and replay.ok == replay.requests_sent == replay.rows_sent
    assert replay.rows_sent + replay.rows_skipped == replay.rows_read == ROWS
    log = served["log"]
    replayed = log.filter(pc.invert(pc.starts_with(log.column("request_id"), "after-")))
    ids = replayed.column("request_id").to_pylist()
    assert len(ids) == len(set(ids)) == replay.rows_sent, "every answered row logged once, under its trip_id"
    assert set(ids) <= {f"3-{i}" for i in range(ROWS)}
    assert set(replayed.column("model_version").to_pylist()) == {served["first"]}


def test_the_monitor_flags_the_drifted_features_and_the_prediction_shift(served):
    found = served["monitor"]
    assert found.drift_detected, found.lines()
    assert set(DRIFTED_FEATURES) <= set(found.drifted), found.features
    assert not set(UNCHANGED_FEATURES) & set(found.drifted), found.features
    assert found.details["prediction"]["drift"] is True, found.details["prediction"]
    assert "pickup_community_area" in found.details["not_logged"], "the log holds what the model takes"
    assert os.path.exists(found.report)


def test_labels_that_arrive_later_join_the_logged_requests(served):
    joined = served["join"]
    assert joined.log_key == "request_id" and joined.unmatched_logs == 0
    replay = served["replay"]
    assert joined.joined_rows == replay.rows_sent and joined.unmatched_labels == replay.rows_skipped


def test_retrain_on_the_joined_spans_pushes_a_version_the_running_server_picks_up(served):
    retrained = served["retrain"]
    assert retrained.drift_detected is True and retrained.retrained and retrained.pushed, retrained.lines()
    assert sorted(retrained.window) == [1, 2] and retrained.span == 2, "span 1 and the joined span"
    assert retrained.previous_version == served["first"] and retrained.model_version != served["first"]
    assert retrained.model_version in served["picked_up"]
    assert served["pid_after"] == served["pid"], "the same server process, not a restart"
    failed = [r.text for r in served["after"] if r.status_code != 200]
    assert not failed, failed
    assert served["returncode"] == 0, served["stderr"]
    log = served["log"]
    after = log.filter(pc.starts_with(log.column("request_id"), "after-"))
    assert after.num_rows == 20
    assert set(after.column("model_version").to_pylist()) == {retrained.model_version}, "the latest version answers"
