"""The rollout benchmark in its reduced mode, as a subprocess on the checked-in pushed taxi model: start,
promote (by the analysis), an automatic rollback of a constant-output candidate and a blue/green switch, all under
a steady replay load, with no failed client request."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from flywheel.rollout import state

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO, "benchmarks", "rollout.py")


@pytest.mark.slow  # the benchmark starts servers and replays traffic for a minute
def test_quick_rollout_bench_fails_no_request_and_promotes_the_copy_and_rolls_back_the_constant(tmp_path, taxi_runs):
    source = os.path.join(taxi_runs, "serving")
    before = sorted(os.listdir(source)), sorted(os.listdir(os.path.join(source, "taxi")))
    figures = tmp_path / "figures.json"
    done = subprocess.run([sys.executable, SCRIPT, "--serving-dir", source, "--quick", "--workdir",
                           str(tmp_path / "work"), "--json", str(figures), "--max-seconds", "120"],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    found = json.loads(figures.read_text())
    assert found["ok"] is True
    assert found["failed"] == 0 and found["server_failed"] == 0
    assert found["requests_sent"] >= 1_500 and found["by_status"] == {"200": found["replayed"]}
    assert found["decisions"] == ["promote", "rollback"]
    assert any("constant_output" in reason for reason in found["reasons"][1])
    share = found["canary_share"]
    assert share["requests"] >= 1_000 and abs(share["share"] - 20.0) <= share["tolerance"]
    assert all(s["keys"] == 20 and s["hashed_version"] == 20 for s in found["sticky"])
    expected = ["start canary 20%", "promote", "start canary 20%", "rollback", "blue/green: all traffic",
                "blue/green: switch back"]
    assert len(found["switches"]) == len(expected)
    assert all(s["name"].startswith(e) for s, e in zip(found["switches"], expected, strict=True))
    assert all(s["seconds"] is not None and 0 <= s["seconds"] < 30 for s in found["switches"])
    assert "failed client requests: 0 (goal 0): met" in done.stdout
    # the given serving folder is only read: its versions are copied into the benchmark's own
    assert (sorted(os.listdir(source)), sorted(os.listdir(os.path.join(source, "taxi")))) == before
    assert not os.path.exists(os.path.join(source, "taxi", state.FILE_NAME))
