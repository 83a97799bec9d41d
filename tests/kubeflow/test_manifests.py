"""The cluster manifests are fit to run: a non-root image pinned by digest, a locked-down CronJob with
limits and a deadline; and the retraining lock on a volume another user wrote fails in one clear line."""

from __future__ import annotations

import errno
import os
import re

import pytest
import yaml

from flywheel import cli, lock
from flywheel.cli import exits
from flywheel.cli.parser import make_parser
from tests.conftest import REPO

DOCKERFILE = open(os.path.join(REPO, "kubeflow", "Dockerfile"), encoding="utf-8").read()
INSTRUCTIONS = [line.split(None, 1) for line in DOCKERFILE.splitlines() if line and not line.startswith(("#", " "))]
CRONJOBS = ("retrain-cronjob.yaml", "rollout-analyze-cronjob.yaml")
UID = 10001


def _cronjob(name: str) -> tuple[dict, dict, dict]:
    """(the CronJob, its job spec, its pod spec)."""
    with open(os.path.join(REPO, "kubeflow", "schedule", name), encoding="utf-8") as f:
        cronjob = yaml.safe_load(f)
    job = cronjob["spec"]["jobTemplate"]["spec"]
    return cronjob, job, job["template"]["spec"]


def test_the_image_base_is_pinned_by_digest():
    bases = [args for op, args in INSTRUCTIONS if op == "FROM"]
    assert len(bases) == 1 and re.fullmatch(r"python:3\.10-slim@sha256:[0-9a-f]{64}", bases[0])


def test_the_image_runs_as_a_numeric_non_root_user():
    users = [args for op, args in INSTRUCTIONS if op == "USER"]
    assert users == [f"{UID}:{UID}"], "the last instruction sets a numeric user, so runAsNonRoot can verify it"
    assert INSTRUCTIONS[-1][0] == "USER"
    assert f"useradd --uid {UID} --gid {UID}" in DOCKERFILE


@pytest.mark.parametrize("name", CRONJOBS)
def test_the_cronjob_runs_non_root_on_a_read_only_root_filesystem(name):
    _, _, POD = _cronjob(name)
    pod_security = POD["securityContext"]
    assert pod_security["runAsNonRoot"] is True and pod_security["runAsUser"] == UID
    assert pod_security["runAsGroup"] == UID and pod_security["fsGroup"] == UID
    (container,) = POD["containers"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}


@pytest.mark.parametrize("name", CRONJOBS)
def test_the_cronjob_gives_tmp_and_home_their_own_writable_volumes(name):
    _, _, POD = _cronjob(name)
    (container,) = POD["containers"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in POD["volumes"]}
    env = {e["name"]: e["value"] for e in container["env"]}
    for path in ("/tmp", env["HOME"]):
        assert "emptyDir" in volumes[mounts[path]], path
    assert env["HOME"] == "/home/flywheel" and f"--home-dir {env['HOME']}" in DOCKERFILE
    read_only = {"retrain-cronjob.yaml": "/data", "rollout-analyze-cronjob.yaml": "/logs"}[name]
    assert [m for m in container["volumeMounts"] if m["mountPath"] == read_only][0]["readOnly"] is True


@pytest.mark.parametrize("name", CRONJOBS)
def test_the_cronjob_has_a_deadline_and_resource_requests_and_limits(name):
    CRONJOB, JOB, POD = _cronjob(name)
    assert CRONJOB["spec"]["concurrencyPolicy"] == "Forbid"
    assert 0 < JOB["activeDeadlineSeconds"] <= 24 * 3600
    (container,) = POD["containers"]
    resources = container["resources"]
    assert set(resources["requests"]) == {"cpu", "memory"} and set(resources["limits"]) == {"cpu", "memory"}


@pytest.mark.parametrize("name", CRONJOBS)
def test_the_cronjob_command_is_a_flywheel_command_line_the_cli_accepts(name):
    _, _, pod = _cronjob(name)
    (container,) = pod["containers"]
    program, *argv = container["command"]
    assert program == "flywheel"
    args = make_parser().parse_args(argv)
    mounts = [m["mountPath"] for m in container["volumeMounts"]]
    paths = [v for v in argv if v.startswith("/")]
    assert paths and all(any(p == m or p.startswith(m + "/") for m in mounts) for p in paths), (paths, mounts)
    if name == "rollout-analyze-cronjob.yaml":
        assert args.scheduled is True, "a job that finds no rollout, or rolls one back, has done its work"


def _deny(monkeypatch, denied: str) -> None:
    """Makes `denied` (the lock folder or file) refuse this user, as a volume written by another user does.

    The folder is really made read-only; root ignores that (as tests run in CI), so the refusal is also
    raised where lock.py creates or opens it.
    """
    real_makedirs, real_open = os.makedirs, open

    def makedirs(path, *args, **kwargs):
        if os.path.abspath(path) == denied:
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return real_makedirs(path, *args, **kwargs)

    def opener(path, *args, **kwargs):
        if os.path.abspath(path) == denied:
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(lock.os, "makedirs", makedirs)
    monkeypatch.setattr(lock, "open", opener, raising=False)


@pytest.fixture(params=["folder", "file"])
def foreign_state(request, tmp_path, monkeypatch):
    """An output directory whose lock folder (or lock file) belongs to another user."""
    state = tmp_path / "state"
    folder = state / ".flywheel"
    if request.param == "file":
        folder.mkdir(parents=True)
        (folder / "lock").write_text("")
        (folder / "lock").chmod(0o444)
        folder.chmod(0o555)
        denied = str(folder / "lock")
    else:
        state.mkdir()
        state.chmod(0o555)
        denied = str(folder)
    _deny(monkeypatch, denied)
    yield str(state), denied
    state.chmod(0o755)
    if folder.exists():
        folder.chmod(0o755)


def test_a_lock_owned_by_another_user_is_a_clear_error_naming_the_path_and_the_fix(foreign_state):
    state, denied = foreign_state
    with pytest.raises(lock.LockPermissionError) as raised:
        with lock.exclusive(state):
            pytest.fail("the lock was taken")
    message = str(raised.value)
    assert denied in message and "permission denied" in message
    assert "make it writable by this user (chown, or fsGroup on the volume)" in message
    assert "\n" not in message and raised.value.__cause__ is None


def test_retrain_on_a_foreign_state_volume_prints_one_line_and_no_traceback(foreign_state, tmp_path, capsys):
    state, denied = foreign_state
    span = tmp_path / "spans" / "span-0"
    span.mkdir(parents=True)
    (span / "data.csv").write_text("fare,tips\n1.0,0.0\n")
    code = cli.main(["retrain", "taxi", "--data", str(tmp_path / "spans"), "--output-dir", state])
    err = capsys.readouterr().err
    assert code == exits.USAGE  # a folder this user cannot write is a bad location, not a busy one
    assert err.count("\n") == 1 and err.startswith("flywheel: ") and denied in err and "Traceback" not in err
