"""The retraining loop on small simulated spans: no baseline -> train; no drift -> no retrain; drift -> retrain;
pushed == blessed; and the job's summary from a run's records."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from flywheel import api, lock
from flywheel.metadata.run_record import NodeRecord
from flywheel.pipelines import retrain
from tests.conftest import call_cli, run_cli


def test_simulator_is_deterministic(tmp_path):
    for name in ("a", "b"):
        assert run_cli("simulate", "taxi", "--out", str(tmp_path / name), "--spans", "2", "--drift-from", "2",
                       "--rows", "300", "--seed", "3").returncode == 0
    for span in (1, 2):
        a = (tmp_path / "a" / f"span-{span}" / "data.csv").read_bytes()
        assert a == (tmp_path / "b" / f"span-{span}" / "data.csv").read_bytes()


def test_simulate_appends_after_the_spans_already_there_and_overwrites_nothing(tmp_path, capfd):
    one_call, two_calls = tmp_path / "one", tmp_path / "two"
    assert call_cli(capfd, "simulate", "taxi", "--out", str(one_call), "--spans", "3", "--drift-from", "3", "--rows",
                    "200").returncode == 0
    first = call_cli(capfd, "simulate", "taxi", "--out", str(two_calls), "--spans", "2", "--rows", "200")
    assert first.stdout == f"flywheel simulate: 2 span(s) of 200 rows in {two_calls} (span-1, span-2); no drift\n"
    kept = (two_calls / "span-1" / "data.csv").stat().st_mtime_ns
    second = call_cli(capfd, "simulate", "taxi", "--out", str(two_calls), "--spans", "1", "--drift-from", "3",
                      "--rows", "200")
    assert second.stdout == f"flywheel simulate: 1 span(s) of 200 rows in {two_calls} (span-3); drift from span 3\n"
    assert (two_calls / "span-1" / "data.csv").stat().st_mtime_ns == kept, "nothing already there is rewritten"
    for span in (1, 2, 3):
        assert (one_call / f"span-{span}" / "data.csv").read_bytes() == \
            (two_calls / f"span-{span}" / "data.csv").read_bytes(), "two calls write what one call writes"
    late = call_cli(capfd, "simulate", "taxi", "--out", str(two_calls), "--spans", "1", "--drift-from", "9")
    assert late.returncode == 2 and late.stderr == (
        "flywheel: simulate: --drift-from: expected a span number from 1 to 4, the last span this writes (after the "
        f"span-1 to span-3 already in {two_calls}), got 9\n")
    (tmp_path / "file").write_text("x")
    on_file = call_cli(capfd, "simulate", "taxi", "--out", str(tmp_path / "file"))
    assert on_file.returncode == 2 and on_file.stderr == (f"flywheel: simulate: --out {tmp_path / 'file'}: expected a "
                                                          "folder (new, or holding span-N folders), found a file\n")


def test_the_tours_sequence_shows_drift_and_retrains(loop):
    """The README's "Try it": spans simulated into one folder as they arrive; the drifted one is found, trained on."""
    assert [s.split(" (")[1].split(")")[0] for s in loop["simulated"]] == ["span-1", "span-2", "span-3"]
    assert loop["simulated"][2].rstrip().endswith("; drift from span 3")
    assert [r["drift_detected"] for r in loop["results"]] == [None, False, True]
    assert [r["retrained"] for r in loop["results"]] == [True, False, True]


def test_first_span_trains_and_pushes_without_a_baseline(loop):
    first = loop["results"][0]
    assert first["span"] == 1 and first["drift_detected"] is None and first["drift_reason"].startswith("no baseline")
    assert first["retrained"] is True and first["status"] == "finished" and first["previous_version"] is None
    assert first["pushed"] == first["blessed"] is True
    assert loop["versions"][0] == [first["model_version"]], "the pushed version is the one folder in serving"


def test_stable_span_does_not_retrain(loop):
    second = loop["results"][1]
    assert second["span"] == 2 and second["drift_detected"] is False and second["status"] == "no_drift"
    assert second["retrained"] is False and second["pushed"] is False
    assert loop["versions"][1] == loop["versions"][0], "nothing new in serving"
    assert second["model_version"] == second["previous_version"] == loop["versions"][0][-1]


def test_drifted_span_retrains_and_pushes_only_if_blessed(loop):
    third = loop["results"][2]
    assert third["span"] == 3 and third["drift_detected"] is True and third["retrained"] is True
    assert third["window"] == [1, 2, 3] and third["pushed"] == third["blessed"]
    assert "fare" in third["drift_reason"] and "payment_type" in third["drift_reason"]
    assert third["previous_version"] == loop["versions"][1][-1]
    assert third["model_version"] == loop["versions"][2][-1], "model_version is the newest folder in serving"
    if third["pushed"]:
        assert third["model_version"] != third["previous_version"] and len(loop["versions"][2]) == 2
    else:
        assert loop["versions"][2] == loop["versions"][1]


def test_drift_report_is_where_the_result_says(loop):
    assert all("drift_report" in r for r in loop["results"])
    report = loop["results"][2]["drift_report"]
    if report is not None:  # the plan writes a report where it has a baseline to compare with
        assert os.path.isfile(report) and report.endswith(".html")


def test_lineage_names_spans_gate_training_evaluation_push(loop, capfd):
    r = call_cli(capfd, "lineage", "--output-dir", loop["out"], "--json")
    assert r.returncode == 0, r.stderr
    found = json.loads(r.stdout)
    nodes = [s["node"] for s in found["steps"]]
    for node in ("Ingest", "StatisticsGen", "DataGate", "Transform", "Trainer", "Evaluate", "Push"):
        assert node in nodes, nodes
    ingest = next(s for s in found["steps"] if s["node"] == "Ingest")
    [examples] = [o for o in ingest["outputs"] if o["key"] == "examples"]
    assert examples["data_fingerprint"] == found["data_fingerprint"]
    assert nodes.index("Ingest") < nodes.index("Trainer") < nodes.index("Push")
    text = call_cli(capfd, "lineage", "--output-dir", loop["out"]).stdout
    assert f"version {found['version']}" in text and "Trainer" in text


def test_second_run_on_a_locked_output_dir_refuses_at_once(loop):
    with lock.exclusive(loop["out"]):
        r = run_cli("retrain", "taxi", "--data", loop["data"], "--if-drift", output_dir=loop["out"])
    assert r.returncode == 4 and "is in use by pid" in r.stderr and "refusing" in r.stderr
    assert r.stderr.startswith("flywheel: ") and "flywheel: flywheel:" not in r.stderr and r.stdout == ""


def test_a_killed_holder_does_not_block_the_next_run(tmp_path):
    code = ("import sys, time; from flywheel.pipelines import lock\n"
            "with lock.exclusive(sys.argv[1]):\n    print('held', flush=True); time.sleep(60)\n")
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(lock.LockedError):
        with lock.exclusive(str(tmp_path)):
            pass
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    with lock.exclusive(str(tmp_path)):
        assert os.path.exists(tmp_path / lock.LOCK_FILE)


# ---- the job's summary and drift decision, as plain functions --------------------------------------------------

def _records(trainer_state: str, blessed: int = 1, pushed: int = 1) -> dict:
    model = {"model": [{"uri": "/p/Trainer/model/7", "id": 7}]}
    return {"Trainer": NodeRecord("Trainer", trainer_state, model),
            "Evaluate": NodeRecord("Evaluate", "COMPLETE", {"blessing": [{"uri": "/b", "blessed": blessed}]}),
            "Push": NodeRecord("Push", "COMPLETE", {"pushed_model": [{"uri": "/m", "pushed": pushed}]})}


DRIFT = {"drift_detected": True, "reason": "fare", "report": "/state/drift/report.html"}


@pytest.mark.parametrize("state, retrained", [("COMPLETE", True), ("CACHED", False), ("FAILED", False)])
def test_retrained_only_when_the_trainer_executed_in_this_run(state, retrained, tmp_path):
    summary = retrain.summary_from_records(_records(state), 3, str(tmp_path), "taxi", DRIFT)
    assert summary["retrained"] is retrained


def test_summary_carries_the_plans_decision_and_the_newest_served_version(tmp_path):
    for version in (5, 9):
        (tmp_path / "taxi" / str(version)).mkdir(parents=True)
        (tmp_path / "taxi" / str(version) / "push.json").write_text("{}")
        (tmp_path / "taxi" / str(version) / "saved_model.pb").write_bytes(b"")
    summary = retrain.summary_from_records(_records("COMPLETE", blessed=0, pushed=0), 3, str(tmp_path), "taxi", DRIFT)
    assert summary == {"span": 3, "drift_detected": True, "drift_reason": "fare",
                       "drift_report": "/state/drift/report.html", "retrained": True, "blessed": False,
                       "pushed": False, "model_version": 9}
    assert retrain.summary_from_records({}, 3, str(tmp_path / "none"), "taxi", DRIFT)["retrained"] is False


@pytest.mark.parametrize("baseline, verdict, expected", [
    ("", {"drift_detected": True, "reason": "no model in serving"}, None),
    ("", {"drift_detected": None, "reason": "no baseline: no model in serving"}, None),
    ("/s/taxi/1/baseline_profile.json", {"drift_detected": False, "reason": "no drift"}, False),
    ("/s/taxi/1/baseline_profile.json", {"drift_detected": True, "reason": "fare", "report": "/r.html"}, True),
])
def test_no_baseline_is_not_drift(baseline, verdict, expected):
    decision = retrain.RetrainPlan(1, (1,), baseline, None, verdict).drift_decision
    assert decision["drift_detected"] is expected and "report" in decision
    assert decision["reason"].startswith("no baseline") == (expected is None)


def test_retrain_does_not_add_the_drift_monitor_to_the_pipeline(tmp_path, monkeypatch):
    (tmp_path / "spans" / "span-1").mkdir(parents=True)
    (tmp_path / "spans" / "span-1" / "data.csv").write_text("fare\n1.0\n")
    seen = []
    monkeypatch.setattr(retrain, "plan", lambda *a, **kw: retrain.RetrainPlan(1, (1,), "", None, {
        "drift_detected": None, "reason": "no baseline", "report": None}))
    monkeypatch.setattr(api, "_execute", lambda cfg, *a: seen.append(cfg) or api.RunResult(
        pipeline="taxi", engine="local", status="finished", output_dir="", metadata="", pipeline_root="",
        serving_dir=""))
    result = api.retrain("taxi", str(tmp_path / "spans"), str(tmp_path / "out"), if_drift=True, train_steps=5)
    assert result.drift_detected is None and result.status == "finished" and result.retrained is False
    assert seen[0].monitor_baseline is None and seen[0].retrain_if_drift is False and seen[0].train_steps == 5
    assert (seen[0].span, seen[0].num_spans) == (1, 1)
