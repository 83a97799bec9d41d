"""`flywheel rollout ...` through the command line's main: output, JSON and exit codes."""

from __future__ import annotations

import json

import pytest

from flywheel import cli
from flywheel.cli import exits
from tests.rollout.conftest import MODEL


def test_start_status_promote_through_the_command_line(serving_dir, capsys):
    where = ["--serving-dir", serving_dir, "--model", MODEL]
    assert cli.main(["rollout", "status", *where]) == exits.OK
    assert "no rollout state; the newest version serves: version 2" in capsys.readouterr().out
    assert cli.main(["rollout", "start", *where, "--version", "1", "--canary-percent", "10", "--reason", "try"]) == 0
    out = capsys.readouterr().out
    assert "canary 10% of version 1 against stable 2" in out and "ML-Metadata: not recorded (no --metadata)" in out
    assert cli.main(["rollout", "status", *where, "--json"]) == exits.OK
    status = json.loads(capsys.readouterr().out)
    assert status["state"]["candidate"] == 1 and status["routes"]["candidate_percent"] == 10.0
    assert status["serving_version"] == 2
    assert cli.main(["rollout", "promote", *where, "--reason", "good"]) == exits.OK
    assert "no rollout: stable 1" in capsys.readouterr().out


def test_rule_violations_exit_2_with_the_rule_named(serving_dir, capsys, tmp_path):
    where = ["--serving-dir", serving_dir]
    assert cli.main(["rollout", "rollback", *where]) == exits.USAGE
    assert "cannot rollback: expected a running rollout" in capsys.readouterr().err
    assert cli.main(["rollout", "start", *where, "--version", "2", "--shadow"]) == exits.USAGE
    assert "expected a version other than the stable one" in capsys.readouterr().err
    assert cli.main(["rollout", "status", "--serving-dir", str(tmp_path / "none")]) == exits.USAGE
    assert "is not a folder" in capsys.readouterr().err


def _fresh_log(log_dir: str, newest: float, versions: tuple[int, int] = (2, 1), requests: int = 40) -> str:
    """A request log written by RequestLog, its last row at `newest` (seconds since the epoch)."""
    from flywheel.server.request_log import RequestLog

    now = [newest - 0.01 * (requests - 1)]
    log = RequestLog(log_dir, clock=lambda: now[0])
    for i in range(requests):
        log.log(f"r{i}", MODEL, versions[i % 2], "serving_default", [{"x": float(i)}], [0.1 * (i % 7)], 1.0)
        now[0] += 0.01
    log.close()
    return log_dir


@pytest.mark.slow  # seconds of load or waiting (the unit lane keeps to 2 minutes)
def test_analyze_waits_for_the_log_to_settle_when_asked(serving_dir, capsys, tmp_path):
    """Right after traffic, the log may lack the server's last seconds: --wait-for-log waits until its newest
    row is two flush intervals (10 s) old, then judges; without it the output says the log may be incomplete."""
    import time

    where = ["--serving-dir", serving_dir, "--model", MODEL]
    assert cli.main(["rollout", "start", *where, "--version", "1", "--canary-percent", "50"]) == exits.OK
    capsys.readouterr()
    log = _fresh_log(str(tmp_path / "log"), time.time())
    assert cli.main(["rollout", "analyze", *where, "--log-dir", log, "--dry-run"]) == exits.STOPPED
    assert "may not be in it yet: run the analysis again 10 s after the traffic stops" in capsys.readouterr().out

    started = time.monotonic()
    assert cli.main(["rollout", "analyze", *where, "--log-dir", log, "--dry-run", "--json",
                     "--wait-for-log", "60"]) == exits.STOPPED
    waited = time.monotonic() - started
    fresh = json.loads(capsys.readouterr().out)["log_freshness"]
    assert fresh["maybe_incomplete"] is False and fresh["age_s"] >= 10.0, fresh
    assert 5.0 < waited < 40.0, "it waited for the log to settle, not for the whole 60 s"

    assert cli.main(["rollout", "analyze", *where, "--log-dir", log, "--wait-for-log", "-1"]) == exits.USAGE
    assert "--wait-for-log: expected seconds >= 0, got -1.0" in capsys.readouterr().err
