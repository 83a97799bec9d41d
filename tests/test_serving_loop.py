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
from flywheel.store import layout, publish
from tests.conftest import FLYWHEEL, REPO
from tests.rollout.conftest import add_version, constant_model

MODEL = "taxi"
ROWS = 3000  # the continuous-training loop's spans
FEATURES = ["trip_miles", "fare", "trip_seconds", "pickup_latitude", "pickup_longitude", "trip_start_hour",
            "trip_start_day", "trip_start_month", "payment_type"]
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
    first = layout.latest(serving_dir, MODEL)
    (root / "data").mkdir()
    os.symlink(os.path.join(sim, "span-1"), root / "data" / "span-1")

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    url = f"{base}/v1/models/{MODEL}"
    proc = subprocess.Popen([FLYWHEEL, "serve", "--serving-dir", serving_dir, "--model", MODEL, "--port", str(port),
                             "--log-dir", logs], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    found: dict = {"first": first.version, "pid": proc.pid, "root": root}
    try:
        _wait("the first version", lambda: _available(base) == [first.version], proc)
        found["replay"] = api.replay("taxi", os.path.join(sim, "span-3"), url, id_column="trip_id")
        _wait("the replayed rows in the log (one flush interval)",
              lambda: _logged_rows(logs) >= found["replay"].rows_sent, proc, 60)
        found["first_log"] = pq.read_table(logs)
        found["monitor"] = api.monitor(os.path.join(first.path, publish.BASELINE_PROFILE), logs,
                                       schema=schemas.schema_path("taxi"), report_dir=str(root / "drift"))
        # The joined rows land in the data folder as span 2, after the span trained on before.
        found["join"] = api.logs_join(logs, os.path.join(sim, "span-3"), "trip_id", str(root / "data"), span=2)
        found["retrain"] = api.retrain("taxi", str(root / "data"), str(root / "out"), serving_dir=serving_dir,
                                       if_drift=True, train_steps=STEPS, release="canary:50")
        new = found["retrain"].pushed_version
        found["picked_up"] = _wait("the retrained version", lambda: new in _available(base) and _available(base),
                                   proc, 120)
        # Released as a canary: span 3 again, half of it answered by the new version; the labels joined; the
        # analysis promotes it by itself.
        found["canary_replay"] = api.replay("taxi", os.path.join(sim, "span-3"), url, id_column="trip_id")
        _wait("the canary's rows in the log", lambda: _logged_rows(logs) >= 2 * found["replay"].rows_sent, proc, 60)
        api.logs_join(logs, os.path.join(sim, "span-3"), "trip_id", str(root / "joined"))
        found["analysis"] = api.rollout_analyze(serving_dir, MODEL, logs, labels=str(root / "joined"),
                                                report_dir=str(root / "release"))
        found["after"] = _answered_by(base, sim, "after", {new}, proc)
        # A bad candidate, answering a constant, released as a canary: the analysis rolls it back by itself.
        bad = new + 1
        add_version(serving_dir, constant_model(str(root / "constant"), FEATURES), bad)
        api.rollout_start(serving_dir, MODEL, version=bad, mode="canary", percent=50, reason="a bad model")
        _wait("the bad candidate", lambda: bad in _available(base), proc, 120)
        found["bad_replay"] = api.replay("taxi", os.path.join(sim, "span-3"), url, id_column="trip_id")
        _wait("the bad canary's rows in the log", lambda: _logged_rows(logs) >= 3 * found["replay"].rows_sent,
              proc, 60)
        found["bad_analysis"] = api.rollout_analyze(serving_dir, MODEL, logs)
        found["bad"] = bad
        found["after_rollback"] = _answered_by(base, sim, "rolled-back", {new}, proc)
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
    for name in FEATURES:
        table = table.filter(pc.is_valid(table.column(name)))
    return table.select(FEATURES).slice(0, n).to_pylist()


def _answered_by(base: str, sim: str, prefix: str, versions: set[int], proc: subprocess.Popen,
                 n: int = 20) -> list[httpx.Response]:
    """n requests once the server follows the rollout state (its poll): answered only by `versions`."""
    rows = _rows(os.path.join(sim, "span-3"), n)

    def ask() -> list[httpx.Response]:
        return [httpx.post(f"{base}/v1/models/{MODEL}:predict", json={"instances": [row]},
                           headers={"X-Request-Id": f"{prefix}-{i}"}, timeout=30) for i, row in enumerate(rows)]

    _wait(f"routing to {versions}", lambda: {int(r.headers["X-Model-Version"]) for r in ask()} <= versions, proc, 60)
    return ask()


def test_the_replayed_drifted_span_is_answered_and_logged_whole(served):
    replay = served["replay"]
    assert replay.failed == 0 and replay.ok == replay.requests_sent == replay.rows_sent
    assert replay.rows_sent + replay.rows_skipped == replay.rows_read == ROWS
    replayed = served["first_log"]
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
    assert retrained.previous_version == served["first"] and retrained.pushed_version != served["first"]
    assert retrained.model_version == served["first"], "released as a canary: stable serves by default meanwhile"
    assert retrained.pushed_version in served["picked_up"]
    assert served["pid_after"] == served["pid"], "the same server process, not a restart"
    assert served["returncode"] == 0, served["stderr"]


def test_the_retrained_model_released_as_a_canary_takes_half_the_traffic_and_is_promoted(served):
    new = served["retrain"].pushed_version
    assert served["retrain"].release == "canary:50"
    result = served["analysis"]
    assert result.applied == "promote", result.lines()
    stable, candidate = result.analysis.stable, result.analysis.candidate
    assert (stable.version, candidate.version) == (served["first"], new)
    assert abs(candidate.requests / (stable.requests + candidate.requests) - 0.5) <= 0.03, (stable, candidate)
    assert result.analysis.check("auc").passed is True and candidate.labelled_rows > 1000
    assert result.analysis.check("error_rate").passed is True and os.path.exists(result.analysis.report)
    assert result.state["stable"] == new and result.state["candidate"] is None
    assert {int(r.headers["X-Model-Version"]) for r in served["after"]} == {new}, "the promoted version answers"
    log = served["log"]
    canary = log.filter(pc.equal(log.column("rollout_role"), "canary"))
    assert set(canary.column("model_version").to_pylist()) >= {new}


def test_a_candidate_answering_a_constant_is_rolled_back_by_the_analysis(served):
    result = served["bad_analysis"]
    assert result.applied == "rollback", result.lines()
    assert result.analysis.check("constant_output").passed is False
    assert any(reason.startswith("constant_output") for reason in result.analysis.reasons)
    assert served["bad"] in result.state["rolled_back"] and result.state["candidate"] is None
    assert result.state["decisions"][-1]["evidence"]["checks"], "the evidence is recorded with the decision"
    new = served["retrain"].pushed_version
    assert {int(r.headers["X-Model-Version"]) for r in served["after_rollback"]} == {new}


def test_no_client_request_failed_across_push_promote_and_rollback(served):
    for name in ("replay", "canary_replay", "bad_replay"):
        assert served[name].failed == 0 and served[name].ok == served[name].requests_sent, served[name].lines()
    answers = served["after"] + served["after_rollback"]
    assert [r.status_code for r in answers] == [200] * len(answers)
