"""Shared fixtures: the end-to-end runs happen once per session and tests read their real outputs."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

import pytest

from tests.mariadb import mariadb  # noqa: F401  (a throwaway MariaDB server, for the shared metadata store)
from tests.ram_guard import ram  # noqa: F401  (the ram:// fixture, for every test folder)

# the unit lane's guard (no flywheel process, no training in unmarked tests); the checked-in taxi runs
pytest_plugins = ["tests.lane_guard", "tests.fixtures"]

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLYWHEEL = os.path.join(os.path.dirname(sys.executable), "flywheel")
TRAIN_STEPS = "150"


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str
    output_dir: str


def run_cli(*args: str, output_dir: str | None = None, timeout: int = 900, env: dict | None = None) -> CliResult:
    cmd = [FLYWHEEL, *args] + (["--output-dir", output_dir] if output_dir else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO,
                          env={**os.environ, **(env or {})})
    return CliResult(proc.returncode, proc.stdout, proc.stderr, output_dir or "")


def call_cli(capfd, *args: str, output_dir: str | None = None) -> CliResult:
    """`flywheel ARGS` run in this process by `flywheel.cli.main`: its exit status and what it wrote to the
    stdout and stderr file descriptors (capfd). For tests of the command line's behaviour (exit codes, one-line
    errors, --json); `run_cli` starts the installed entry point, which costs a TensorFlow import per call, where
    the process itself is the point (one such test per command)."""
    from flywheel import cli

    argv = [*args] + (["--output-dir", output_dir] if output_dir else [])
    capfd.readouterr()
    try:
        code = cli.main(argv)
    except SystemExit as e:  # argparse's usage errors and --help
        code = e.code
    sys.stdout.flush()
    sys.stderr.flush()
    captured = capfd.readouterr()
    return CliResult(code, captured.out, captured.err, output_dir or "")


def shipped_data() -> str:
    from flywheel.pipelines.taxi.config import shipped_data as _shipped

    return _shipped()


@pytest.fixture(scope="session")
def local_run(tmp_path_factory) -> CliResult:
    """One end-to-end run of the taxi pipeline on the local runner (real data, few train steps). Tests read it and
    never change it (a test that reruns it with changes runs on its own copy)."""
    out = str(tmp_path_factory.mktemp("local_run"))
    result = run_cli("run", "taxi", "--train-steps", TRAIN_STEPS, output_dir=out)
    assert result.returncode == 0, result.stdout + result.stderr
    return result

