"""The scheduled job's pieces as plain functions: its summary from a run's records, the drift decision, the pipeline
it runs, and the output directory's lock it holds (tests/e2e/test_continuous_training.py runs the job itself)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

import flywheel.api.retraining
from flywheel import lock, retraining
from flywheel.api.pipeline import RunResult
from flywheel.metadata.run_record import NodeRecord
from flywheel.pipelines import retrain


def test_a_killed_holder_does_not_block_the_next_run(tmp_path):
    code = ("import sys, time; from flywheel import lock\n"
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
    decision = retraining.RetrainPlan(1, (1,), baseline, None, verdict).drift_decision
    assert decision["drift_detected"] is expected and "report" in decision
    assert decision["reason"].startswith("no baseline") == (expected is None)


def test_retrain_does_not_add_the_drift_monitor_to_the_pipeline(tmp_path, monkeypatch):
    (tmp_path / "spans" / "span-1").mkdir(parents=True)
    (tmp_path / "spans" / "span-1" / "data.csv").write_text("fare\n1.0\n")
    seen = []
    monkeypatch.setattr(flywheel.api.retraining, "plan", lambda *a, **kw: retraining.RetrainPlan(1, (1,), "", None, {
        "drift_detected": None, "reason": "no baseline", "report": None}))
    monkeypatch.setattr(flywheel.api.retraining, "execute_run", lambda cfg, *a: seen.append(cfg) or RunResult(
        pipeline="taxi", engine="local", status="finished", output_dir="", metadata="", pipeline_root="",
        serving_dir=""))
    result = flywheel.api.retraining.retrain("taxi", str(tmp_path / "spans"), str(tmp_path / "out"), if_drift=True,
                                             train_steps=5)
    assert result.drift_detected is None and result.status == "finished" and result.retrained is False
    assert seen[0].monitor_baseline is None and seen[0].retrain_if_drift is False and seen[0].train_steps == 5
    assert (seen[0].span, seen[0].num_spans) == (1, 1)
