"""The continuous-training scenario, run once: notebooks/continuous_training.ipynb executed top to bottom, then
its results read back from the kernel (what each call returned) and from the files it left.

Spans 1-3 simulated, drift from span 3 -> the scheduled job after span 1 (no baseline: trains, pushes) and span 2
(no drift: nothing) -> `flywheel serve` (a real process, logging requests) -> span 3 replayed as requests -> the
monitor flags the drifted features and the prediction shift against the serving model's baseline profile ->
labels that arrive later joined to the log as span 3 -> `retrain --release canary:50` pushes a version the
running server picks up without a restart -> the canary takes half the traffic and the analysis promotes it ->
a model answering a constant, released as a canary, is rolled back by the analysis -> the trips sent again are
answered by the promoted version; no request failed throughout.
"""

from __future__ import annotations

import datetime
import json
import os
import pickle
import re

import pyarrow.parquet as pq
import pytest

from flywheel import lock
from flywheel.store import layout
from tests.conftest import call_cli, run_cli
from tests.e2e.conftest import execute_notebook

ROWS = 3000  # the notebook's spans
DRIFTED_FEATURES = ("fare", "trip_miles", "payment_type")
UNCHANGED_FEATURES = ("trip_seconds", "pickup_latitude", "pickup_longitude", "trip_start_day", "trip_start_month")
# what the notebook computed, read from its kernel once it has run (the server process: its exit status)
RECORDED = ("work", "incoming", "data", "out", "serving_dir", "logs", "metadata", "first", "second", "result", "new",
            "bad", "sent", "replays", "verdict", "labelled", "analyzed", "rolled_back")
RECORD = """
import pickle

with open({path!r}, "wb") as f:
    pickle.dump({{**{{name: globals()[name] for name in {names!r}}}, "server_returncode": server.returncode}}, f)
"""


@pytest.fixture(scope="module")
def scenario(tmp_path_factory) -> dict:
    """The notebook's run: its recorded results, the text and HTML it showed, and its request log."""
    root = tmp_path_factory.mktemp("continuous_training")
    record = root / "recorded.pickle"
    text, html = execute_notebook("continuous_training", env={"TMPDIR": str(root)},
                                  then=RECORD.format(path=str(record), names=RECORDED))
    with open(record, "rb") as f:
        found = pickle.load(f)
    log = pq.read_table(found["logs"], columns=["request_id", "time", "model_version", "rollout_role", "status"])
    return {**found, "text": text, "html": html, "log": log.to_pylist()}


def _decisions(scenario: dict) -> list[dict]:
    """The rollout decisions in the order they were made (start, promote, start, rollback)."""
    return scenario["rolled_back"].state["decisions"]


def _logged(scenario: dict, since: str | None = None, until: str | None = None) -> list[dict]:
    """The request log's rows logged at or after `since` and before `until` (decision times)."""
    def at(when):
        return datetime.datetime.fromisoformat(when)

    return [r for r in scenario["log"] if (since is None or r["time"] >= at(since))
            and (until is None or r["time"] < at(until))]


def test_the_notebook_walks_the_loop(scenario):
    text, html = scenario["text"], scenario["html"]
    assert "'span': 1, 'drift_detected': None, 'retrained': True" in text and "no baseline" in text
    assert "'span': 2, 'drift_detected': False, 'retrained': False" in text
    assert " 0 failed" in text, "every replayed request of span 3 answered"
    assert "drift detected: True" in text and "prediction drift: True" in text
    retrained = "'window': [1, 2, 3], 'drift_detected': True, 'retrained': True, 'blessed': True, 'pushed': True"
    assert retrained in text, text
    assert "'release': 'canary:50'" in text and "canary 50% of version" in text, "released as a canary"
    # Each release answered by both versions (the log's counts), then analysed: the retrained model is promoted
    # (the AUC on joined labels decides), the constant one rolled back by itself on its predictions.
    assert len(re.findall(r"answered by \(version, role\): \{\(\d+, '(?:canary|stable)'\): \d+, "
                          r"\(\d+, '(?:canary|stable)'\): \d+\}", text)) == 2, text
    assert "decision: promote - applied: promote" in text, text
    promoted, rolled_back = text.split("decision: promote - applied: promote", 1)
    assert "flywheel rollout analyze: PROMOTE candidate" in promoted and re.search(r"check auc +pass", promoted)
    assert "decision: rollback - applied: rollback" in rolled_back, text
    assert re.search(r"check constant_output +FAIL +prediction std candidate 0 ", rolled_back), text
    assert "  - constant_output: " in rolled_back and "  - prediction_drift: " in rolled_back
    assert "failed requests across the release: 0 of" in text, "no client request failed across the release"
    assert text.count("the same server process: True") == 2, "the candidate and the rollback, without a restart"
    assert re.search(r"no rollout: stable (\d+) .*\n  served by default: version \1; rolled back: \d+$",
                     rolled_back, re.M), "after the rollback: the promoted version serves, the bad one rolled back"
    lineage = text[text.index("rollouts of taxi"):]
    assert [line.split()[1] for line in lineage.splitlines()[1:]] == ["start", "promote", "start", "rollback"]
    assert html.count("flywheel rollout analysis") >= 1 and "flywheel drift report" in html
    assert "Trainer" in text and "Push" in text
    assert "WARNING" not in text and "Warning" not in text


# ---- the scheduled job, span by span ----------------------------------------------------------------------------

def test_the_drifted_span_is_found_and_trained_on(scenario):
    """The README's "Try it": spans arriving one by one; no baseline trains, no drift does nothing, drift retrains."""
    jobs = [scenario["first"], scenario["second"], scenario["result"]]
    assert [job.span for job in jobs] == [1, 2, 3]
    assert [job.drift_detected for job in jobs] == [None, False, True]
    assert [job.retrained for job in jobs] == [True, False, True]


def test_first_span_trains_and_pushes_without_a_baseline(scenario):
    first = scenario["first"]
    assert first.span == 1 and first.drift_detected is None and first.drift_reason.startswith("no baseline")
    assert first.retrained is True and first.status == "finished" and first.previous_version is None
    assert first.pushed == first.blessed is True
    served = layout.versions(scenario["serving_dir"], "taxi")
    assert served[0] == first.model_version == first.pushed_version, "the pushed version is the first in serving"


def test_stable_span_does_not_retrain(scenario):
    first, second = scenario["first"], scenario["second"]
    assert second.span == 2 and second.drift_detected is False and second.status == "no_drift"
    assert second.retrained is False and second.pushed is False and second.pushed_version is None
    assert second.model_version == second.previous_version == first.model_version, "nothing new in serving"


def test_drifted_span_retrains_and_pushes_only_if_blessed(scenario):
    third, second = scenario["result"], scenario["second"]
    assert third.span == 3 and third.drift_detected is True and third.retrained is True
    assert list(third.window) == [1, 2, 3] and third.pushed == third.blessed
    assert "fare" in third.drift_reason and "payment_type" in third.drift_reason
    assert third.previous_version == second.model_version
    served = layout.versions(scenario["serving_dir"], "taxi")
    assert served == [second.model_version, third.pushed_version, scenario["bad"]], "pushed: the next version"
    assert third.pushed_version == scenario["new"] != third.previous_version


def test_drift_report_is_where_the_result_says(scenario):
    for job in (scenario["first"], scenario["second"], scenario["result"]):
        assert job.drift_report is None or (os.path.isfile(job.drift_report) and job.drift_report.endswith(".html"))
    assert scenario["result"].drift_report is not None, "drift against a baseline: the plan writes its report"


# ---- serving, the request log, the monitor and the labels ---------------------------------------------------------

def test_the_replayed_drifted_span_is_answered_and_logged_whole(scenario):
    replay, first = scenario["sent"], scenario["first"]
    assert replay.failed == 0 and replay.ok == replay.requests_sent == replay.rows_sent
    assert replay.rows_sent + replay.rows_skipped == replay.rows_read == ROWS
    replayed = _logged(scenario, until=_decisions(scenario)[0]["time"])
    ids = [r["request_id"] for r in replayed]
    assert len(ids) == len(set(ids)) == replay.rows_sent, "every answered row logged once, under its trip_id"
    assert set(ids) <= {f"3-{i}" for i in range(ROWS)}
    assert {r["model_version"] for r in replayed} == {first.model_version}


def test_the_monitor_flags_the_drifted_features_and_the_prediction_shift(scenario):
    found = scenario["verdict"]
    assert found.drift_detected, found
    assert set(DRIFTED_FEATURES) <= set(found.drifted), found.features
    assert not set(UNCHANGED_FEATURES) & set(found.drifted), found.features
    assert found.details["prediction"]["drift"] is True, found.details["prediction"]
    assert "pickup_community_area" in found.details["not_logged"], "the log holds what the model takes"
    assert os.path.exists(found.report)


def test_labels_that_arrive_later_join_the_logged_requests(scenario):
    joined, replay = scenario["labelled"], scenario["sent"]
    assert joined.log_key == "request_id" and joined.unmatched_logs == 0
    assert joined.joined_rows == replay.rows_sent and joined.unmatched_labels == replay.rows_skipped


def test_retrain_on_the_joined_spans_pushes_a_version_the_running_server_picks_up(scenario):
    retrained, first = scenario["result"], scenario["first"].model_version
    assert retrained.drift_detected is True and retrained.retrained and retrained.pushed, retrained
    assert sorted(retrained.window) == [1, 2, 3] and retrained.span == 3, "spans 1-2 and the joined span"
    assert retrained.previous_version == first and retrained.pushed_version != first
    assert retrained.model_version == first, "released as a canary: stable serves by default meanwhile"
    picked_up, after_rollback = re.findall(r"serving versions: \[([\d, ]*)\] - the same server process: True",
                                           scenario["text"])
    assert str(retrained.pushed_version) in picked_up.split(", "), "the same server process, not a restart"
    assert after_rollback == str(retrained.pushed_version), "the bad candidate unloaded, the promoted one serves"
    assert scenario["server_returncode"] == 0, "flywheel serve stops cleanly on SIGTERM"


# ---- the releases ------------------------------------------------------------------------------------------------

def test_the_retrained_model_released_as_a_canary_takes_half_the_traffic_and_is_promoted(scenario):
    new, first = scenario["new"], scenario["first"].model_version
    assert scenario["result"].release == "canary:50"
    result = scenario["analyzed"]
    assert result.applied == "promote", result
    stable, candidate = result.analysis.stable, result.analysis.candidate
    assert (stable.version, candidate.version) == (first, new)
    assert abs(candidate.requests / (stable.requests + candidate.requests) - 0.5) <= 0.03, (stable, candidate)
    assert result.analysis.check("auc").passed is True and candidate.labelled_rows > 1000
    assert result.analysis.check("error_rate").passed is True and os.path.exists(result.analysis.report)
    assert result.state["stable"] == new and result.state["candidate"] is None
    canary = [r for r in scenario["log"] if r["rollout_role"] == "canary"]
    assert {r["model_version"] for r in canary} >= {new}
    promote = _decisions(scenario)[1]
    after = [r for r in _logged(scenario, since=promote["time"]) if r["rollout_role"] in (None, "stable")]
    assert after and {r["model_version"] for r in after} == {new}, "the promoted version answers as stable"


def test_a_candidate_answering_a_constant_is_rolled_back_by_the_analysis(scenario):
    result = scenario["rolled_back"]
    assert result.applied == "rollback", result
    assert result.analysis.check("constant_output").passed is False
    assert any(reason.startswith("constant_output") for reason in result.analysis.reasons)
    assert scenario["bad"] in result.state["rolled_back"] and result.state["candidate"] is None
    assert result.state["decisions"][-1]["evidence"]["checks"], "the evidence is recorded with the decision"
    assert [d["action"] for d in _decisions(scenario)] == ["start", "promote", "start", "rollback"]
    after = _logged(scenario, since=_decisions(scenario)[-1]["time"])
    assert len(after) == scenario["replays"][-1].rows_sent, "the trips sent again after the rollback"
    assert {r["model_version"] for r in after} == {scenario["new"]} and {r["status"] for r in after} == {200}


def test_no_client_request_failed_across_push_promote_and_rollback(scenario):
    assert len(scenario["replays"]) == 4 and scenario["replays"][0] is not None
    for replay in scenario["replays"]:
        assert replay.failed == 0 and replay.ok == replay.requests_sent > 0, replay


# ---- the job's records and its lock, read after the scenario ---------------------------------------------------------

def test_lineage_names_spans_gate_training_evaluation_push(scenario, capfd):
    r = call_cli(capfd, "lineage", "--output-dir", scenario["out"], "--json")
    assert r.returncode == 0, r.stderr
    found = json.loads(r.stdout)
    nodes = [s["node"] for s in found["steps"]]
    for node in ("Ingest", "StatisticsGen", "DataGate", "Transform", "Trainer", "Evaluate", "Push"):
        assert node in nodes, nodes
    ingest = next(s for s in found["steps"] if s["node"] == "Ingest")
    [examples] = [o for o in ingest["outputs"] if o["key"] == "examples"]
    assert examples["data_fingerprint"] == found["data_fingerprint"]
    assert nodes.index("Ingest") < nodes.index("Trainer") < nodes.index("Push")
    text = call_cli(capfd, "lineage", "--output-dir", scenario["out"]).stdout
    assert f"version {found['version']}" in text and "Trainer" in text


def test_second_run_on_a_locked_output_dir_refuses_at_once(scenario):
    with lock.exclusive(scenario["out"]):
        r = run_cli("retrain", "taxi", "--data", scenario["data"], "--if-drift", output_dir=scenario["out"])
    assert r.returncode == 4 and "is in use by pid" in r.stderr and "refusing" in r.stderr
    assert r.stderr.startswith("flywheel: ") and "flywheel: flywheel:" not in r.stderr and r.stdout == ""


def test_the_scheduled_command_on_the_same_spans_finds_nothing_new_and_prints_only_json(scenario):
    """`flywheel retrain --if-drift --json` as the scheduler runs it, on the spans the promoted version was trained
    on: nothing new, nothing run; stdout holds the JSON object and nothing else."""
    r = run_cli("retrain", "taxi", "--data", scenario["data"], "--if-drift", "--window", "3", "--json",
                output_dir=scenario["out"])
    assert r.returncode == 0, r.stdout + r.stderr
    found = json.loads(r.stdout)
    assert found["status"] == "nothing_new" and found["retrained"] is False and found["pushed"] is False
    assert found["span"] == 3 and found["drift_detected"] is None and found["drift_reason"].startswith("nothing new")
    assert found["model_version"] == scenario["new"], "the promoted version serves by default"
