"""The retraining loop on small simulated spans: no drift -> no retrain; drift -> retrain; pushed == blessed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys

import pytest

from flywheel.pipelines import lock
from tests.conftest import run_cli


@pytest.fixture(scope="session")
def loop(tmp_path_factory):
    """Spans 1-2 stable, drift from span 3; the job runs after each span arrives."""
    root = tmp_path_factory.mktemp("loop")
    sim, data, out = root / "sim", root / "data", str(root / "out")
    made = run_cli("simulate", "taxi", "--out", str(sim), "--spans", "3", "--drift-from", "3", "--rows", "3000",
                   "--seed", "7")
    assert made.returncode == 0, made.stderr
    data.mkdir()
    results = []
    for span in (1, 2, 3):
        shutil.copytree(sim / f"span-{span}", data / f"span-{span}")
        r = run_cli("retrain", "taxi", "--data", str(data), "--if-drift", "--window", "3", "--train-steps", "200",
                    output_dir=out)
        assert r.returncode == 0, r.stdout + r.stderr
        results.append(json.loads(r.stdout.strip().splitlines()[-1]))
    return {"results": results, "out": out, "data": str(data), "sim": str(sim)}


def test_simulator_is_deterministic(tmp_path):
    for name in ("a", "b"):
        assert run_cli("simulate", "taxi", "--out", str(tmp_path / name), "--spans", "2", "--drift-from", "2",
                       "--rows", "300", "--seed", "3").returncode == 0
    for span in (1, 2):
        a = (tmp_path / "a" / f"span-{span}" / "data.csv").read_bytes()
        assert a == (tmp_path / "b" / f"span-{span}" / "data.csv").read_bytes()


def test_first_span_trains_and_pushes_without_a_baseline(loop):
    first = loop["results"][0]
    assert first["span"] == 1 and first["drift_detected"] is True and first["retrained"] is True
    assert first["pushed"] == first["blessed"] is True and first["model_version"]


def test_stable_span_does_not_retrain(loop):
    second = loop["results"][1]
    assert second == {**second, "span": 2, "drift_detected": False, "retrained": False, "pushed": False,
                      "model_version": loop["results"][0]["model_version"]}


def test_drifted_span_retrains_and_pushes_only_if_blessed(loop):
    third = loop["results"][2]
    assert third["span"] == 3 and third["drift_detected"] is True and third["retrained"] is True
    assert third["pushed"] == third["blessed"]
    assert "fare" in third["drift_reason"] and "payment_type" in third["drift_reason"]
    expected = third["model_version"] if third["pushed"] else loop["results"][0]["model_version"]
    assert third["model_version"] == expected


def test_lineage_names_spans_gate_training_evaluation_push(loop):
    r = run_cli("lineage", "--output-dir", loop["out"], "--json")
    assert r.returncode == 0, r.stderr
    found = json.loads(r.stdout)
    nodes = [s["node"] for s in found["steps"]]
    for node in ("Ingest", "StatisticsGen", "DataGate", "Transform", "Trainer", "Evaluate", "Push"):
        assert node in nodes, nodes
    ingest = next(s for s in found["steps"] if s["node"] == "Ingest")
    assert ingest["outputs"][0]["data_fingerprint"] == found["data_fingerprint"]
    assert nodes.index("Ingest") < nodes.index("Trainer") < nodes.index("Push")
    text = run_cli("lineage", "--output-dir", loop["out"]).stdout
    assert f"version {found['version']}" in text and "Trainer" in text


def test_second_run_on_a_locked_output_dir_refuses_at_once(loop):
    with lock.exclusive(loop["out"]):
        r = run_cli("retrain", "taxi", "--data", loop["data"], "--if-drift", output_dir=loop["out"])
    assert r.returncode == 4 and "is in use by pid" in r.stderr and "refusing" in r.stderr


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
