"""`flywheel rollout ...` through the command line's main: output, JSON and exit codes."""

from __future__ import annotations

import json

from flywheel import cli
from tests.rollout.conftest import MODEL


def test_start_status_promote_through_the_command_line(serving_dir, capsys):
    where = ["--serving-dir", serving_dir, "--model", MODEL]
    assert cli.main(["rollout", "status", *where]) == cli.EXIT_OK
    assert "no rollout state; the newest version serves: version 2" in capsys.readouterr().out
    assert cli.main(["rollout", "start", *where, "--version", "1", "--canary-percent", "10", "--reason", "try"]) == 0
    out = capsys.readouterr().out
    assert "canary 10% of version 1 against stable 2" in out and "ML-Metadata: not recorded (no --metadata)" in out
    assert cli.main(["rollout", "status", *where, "--json"]) == cli.EXIT_OK
    status = json.loads(capsys.readouterr().out)
    assert status["state"]["candidate"] == 1 and status["routes"]["candidate_percent"] == 10.0
    assert status["serving_version"] == 2
    assert cli.main(["rollout", "promote", *where, "--reason", "good"]) == cli.EXIT_OK
    assert "no rollout: stable 1" in capsys.readouterr().out


def test_rule_violations_exit_2_with_the_rule_named(serving_dir, capsys, tmp_path):
    where = ["--serving-dir", serving_dir]
    assert cli.main(["rollout", "rollback", *where]) == cli.EXIT_USAGE
    assert "cannot rollback: expected a running rollout" in capsys.readouterr().err
    assert cli.main(["rollout", "start", *where, "--version", "2", "--shadow"]) == cli.EXIT_USAGE
    assert "expected a version other than the stable one" in capsys.readouterr().err
    assert cli.main(["rollout", "status", "--serving-dir", str(tmp_path / "none")]) == cli.EXIT_USAGE
    assert "is not a folder" in capsys.readouterr().err
