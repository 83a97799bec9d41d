"""The rollout state on real serving folders (`flywheel.rollout.store`): its rules, its atomic writes under the
serving locks, its models.config mirror, and what serves."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading

import pytest

from flywheel.rollout import models_config, state, store
from flywheel.store import layout, publish
from tests.conftest import REPO
from tests.rollout.conftest import MODEL, add_version


def _read(serving_dir: str) -> dict:
    with open(os.path.join(serving_dir, MODEL, state.FILE_NAME)) as f:
        return json.load(f)


def test_first_start_pins_the_newest_version_as_stable_and_writes_state_beside_the_versions(serving_dir):
    started = store.start(serving_dir, MODEL, 1, state.CANARY, 10, reason="older model back as canary")
    assert (started.stable, started.candidate, started.mode, started.percent, started.generation) == (
        2, 1, "canary", 10.0, 1)
    on_disk = _read(serving_dir)
    assert on_disk["schema_version"] == state.SCHEMA_VERSION and on_disk["stable"] == 2 and on_disk["candidate"] == 1
    assert on_disk["decisions"][0]["action"] == "start" and on_disk["decisions"][0]["reason"].startswith("older")
    assert store.load(serving_dir, MODEL) == started
    assert layout.versions(serving_dir, MODEL) == [1, 2]  # rollout.json is no version
    assert sorted(os.listdir(os.path.join(serving_dir, MODEL))) == [".push.lock", "1", "2", "rollout.json"]


def test_a_version_pushed_after_the_pin_is_not_served_until_promoted(serving_dir, saved_model):
    pinned = store.pin(serving_dir, MODEL)
    assert (pinned.stable, pinned.candidate, pinned.decisions) == (2, None, ())
    version, _ = publish.publish(saved_model, serving_dir, MODEL, {"model_name": MODEL})
    assert layout.latest(serving_dir, MODEL).version == version
    assert layout.current(serving_dir, MODEL).version == 2
    store.start(serving_dir, MODEL, version, state.CANARY, 25)
    assert layout.current(serving_dir, MODEL).version == 2
    promoted = store.promote(serving_dir, MODEL, reason="analysis passed", evidence={"auc": 0.8})
    assert (promoted.stable, promoted.candidate, promoted.mode, promoted.started) == (version, None, None, None)
    assert promoted.generation == 3 and [d.action for d in promoted.decisions] == ["start", "promote"]
    assert promoted.decisions[-1].evidence == {"auc": 0.8, "previous_stable": 2, "mode": "canary"}
    assert layout.current(serving_dir, MODEL).version == version


def test_rollback_keeps_stable_and_the_folder_but_never_serves_the_candidate_by_default(serving_dir, saved_model):
    store.pin(serving_dir, MODEL)
    add_version(serving_dir, saved_model, 3)
    store.start(serving_dir, MODEL, 3, state.BLUE_GREEN)
    rolled = store.rollback(serving_dir, MODEL, reason="errors", evidence={"error_rate": 0.2})
    assert (rolled.stable, rolled.candidate, rolled.rolled_back) == (2, None, (3,))
    assert os.path.isdir(os.path.join(serving_dir, MODEL, "3"))
    assert layout.latest(serving_dir, MODEL).version == 3 and layout.current(serving_dir, MODEL).version == 2
    assert rolled.decisions[-1].to_dict()["evidence"] == {"error_rate": 0.2, "stable": 2, "mode": "blue_green"}


def test_without_a_rollout_state_the_newest_version_serves(serving_dir):
    assert store.load(serving_dir, MODEL) is None
    assert layout.current(serving_dir, MODEL).version == 2


@pytest.mark.parametrize("mode, percent, message", [
    ("canary", None, r"canary percent: expected a number in \(0, 100\), got None"),
    ("canary", 0, r"canary percent: expected a number in \(0, 100\), got 0"),
    ("canary", 100, r"got 100"),
    ("shadow", 5, r"shadow takes no percent .*got 5"),
    ("blue_green", 50, r"blue_green takes no percent"),
    ("linear", None, r"mode: expected one of \['canary', 'shadow', 'blue_green'\], got 'linear'"),
])
def test_bad_modes_and_percents_are_refused(serving_dir, mode, percent, message):
    with pytest.raises(state.RolloutError, match=message):
        store.start(serving_dir, MODEL, 1, mode, percent)
    assert store.load(serving_dir, MODEL) is None


def test_candidate_must_be_a_complete_version_other_than_stable(serving_dir, saved_model):
    with pytest.raises(state.RolloutError, match=r"candidate version 2: expected a version other than the stable one"):
        store.start(serving_dir, MODEL, 2, state.SHADOW)
    with pytest.raises(state.RolloutError, match=r"version 9: expected a complete version .*complete versions: "
                                                 r"\[1, 2\]"):
        store.start(serving_dir, MODEL, 9, state.SHADOW)
    partial = add_version(serving_dir, saved_model, 3)
    os.remove(os.path.join(partial, layout.SAVED_MODEL_FILE))
    with pytest.raises(state.RolloutError, match=r"version 3: expected a complete version"):
        store.start(serving_dir, MODEL, 3, state.SHADOW)


def test_one_rollout_at_a_time_and_promote_or_rollback_need_one(serving_dir):
    with pytest.raises(state.RolloutError, match=r"cannot promote: expected a running rollout, found no rollout "
                                                 r"state"):
        store.promote(serving_dir, MODEL)
    store.start(serving_dir, MODEL, 1, state.CANARY, 5)
    with pytest.raises(state.RolloutError, match=r"a rollout is already running \(canary 5% of version 1 against "
                                                 r"stable 2"):
        store.start(serving_dir, MODEL, 1, state.SHADOW)
    store.rollback(serving_dir, MODEL)
    with pytest.raises(state.RolloutError, match=r"cannot rollback: expected a running rollout, found no rollout: "
                                                 r"stable 2"):
        store.rollback(serving_dir, MODEL)
    with pytest.raises(state.RolloutError, match=r"cannot analyze"):
        store.record_analysis(serving_dir, MODEL, "wait", {})


def test_a_rollout_needs_a_model_in_serving(tmp_path):
    with pytest.raises(state.RolloutError, match=r"no model in serving under .*: a rollout needs a stable version"):
        store.start(str(tmp_path), MODEL, 1, state.SHADOW)
    assert store.pin(str(tmp_path), MODEL) is None


def test_analysis_decisions_and_a_round_trip_through_json(serving_dir):
    store.start(serving_dir, MODEL, 1, state.CANARY, 10)
    waited = store.record_analysis(serving_dir, MODEL, "too few requests", {"requests": 12})
    assert waited.decisions[-1].action == "analyze" and waited.decisions[-1].version == 1
    assert state.RolloutState.from_dict(json.loads(json.dumps(waited.to_dict()))) == waited


@pytest.mark.parametrize("content, message", [
    ("{\"stable\": 2", r"rollout\.json is not valid JSON"),
    (json.dumps({"schema_version": 7, "model": MODEL, "stable": 2, "generation": 1}),
     r"schema_version: expected 1, got 7"),
    (json.dumps({"schema_version": 1, "model": MODEL, "generation": 1}), r"expected the rollout state's fields"),
    (json.dumps({"schema_version": 1, "model": MODEL, "stable": 2, "candidate": 1, "generation": 1}),
     r"mode None with candidate 1: expected a mode"),
    (json.dumps({"schema_version": 1, "model": "other", "stable": 2, "generation": 1}),
     r"model: expected 'taxi', got 'other'"),
])
def test_a_damaged_state_file_is_named_in_the_error(serving_dir, content, message):
    with open(os.path.join(serving_dir, MODEL, state.FILE_NAME), "w") as f:
        f.write(content)
    with pytest.raises(state.RolloutError, match=message):
        store.load(serving_dir, MODEL)


def test_a_state_pinning_a_missing_version_fails_current_with_the_file_named(serving_dir):
    with open(os.path.join(serving_dir, MODEL, state.FILE_NAME), "w") as f:
        json.dump({"schema_version": 1, "model": MODEL, "stable": 7, "generation": 1}, f)
    with pytest.raises(layout.ManifestError, match=r"rollout\.json pins stable version 7, expected a complete "
                                                     r"version .*complete versions: \[1, 2\]"):
        layout.current(serving_dir, MODEL)


@pytest.mark.parametrize("lock", ["model", "serving folder"])
def test_writes_wait_for_the_serving_locks_and_leave_no_temporary_file(serving_dir, lock):
    done = []
    with publish.serving_lock(os.path.join(serving_dir, MODEL) if lock == "model" else serving_dir):
        worker = threading.Thread(target=lambda: done.append(store.start(serving_dir, MODEL, 1, state.SHADOW)))
        worker.start()
        worker.join(1.0)  # the write waits for the lock: the worker is still there at this deadline
        assert worker.is_alive() and done == [] and store.load(serving_dir, MODEL) is None
    worker.join(10)
    assert not worker.is_alive() and done and done[0].candidate == 1
    assert not [n for n in os.listdir(os.path.join(serving_dir, MODEL)) if n.endswith(".tmp")]
    assert not [n for n in os.listdir(serving_dir) if n.endswith(".tmp")]


# Changes one model's rollout `rounds` times (start, rollback), then starts a last one and leaves it running; waits
# for a line on stdin before it begins, so two of them start together.
_CHURN = """
import sys
from flywheel.rollout import state, store

serving_dir, model, rounds, mode, percent = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
percent = float(percent) if percent != "-" else None
print("ready", flush=True)
sys.stdin.readline()
for _ in range(rounds):
    store.start(serving_dir, model, 1, mode, percent)
    store.rollback(serving_dir, model)
store.start(serving_dir, model, 1, mode, percent)
"""


def test_two_models_changed_at_once_by_two_processes_leave_models_config_matching_both(serving_dir):
    """Each write mirrors every model's state into models.config under the serving folder's lock: the file a
    process writes last holds the other model's state as it is, never as it was before that process read it."""
    shutil.copytree(os.path.join(serving_dir, MODEL), os.path.join(serving_dir, "other"),
                    ignore=shutil.ignore_patterns(publish.LOCK_FILE))
    rounds = 15
    workers = [subprocess.Popen([sys.executable, "-c", _CHURN, serving_dir, model, str(rounds), mode, percent],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                cwd=REPO)
               for model, mode, percent in ((MODEL, state.CANARY, "10"), ("other", state.SHADOW, "-"))]
    try:
        for worker in workers:
            assert worker.stdout.readline() == "ready\n", worker.stderr.read()
        for worker in workers:
            worker.stdin.write("go\n")
            worker.stdin.flush()
        for worker in workers:
            _, err = worker.communicate(timeout=240)
            assert worker.returncode == 0, err
    finally:
        for worker in workers:
            worker.kill()
    taxi, other = store.load(serving_dir, MODEL), store.load(serving_dir, "other")
    assert (taxi.mode, taxi.candidate, taxi.generation) == (state.CANARY, 1, 2 * rounds + 1)
    assert (other.mode, other.candidate, other.generation) == (state.SHADOW, 1, 2 * rounds + 1)
    with open(os.path.join(serving_dir, models_config.FILE_NAME)) as f:
        assert f.read() == models_config.render([
            models_config.Model("other", os.path.abspath(os.path.join(serving_dir, "other")), other),
            models_config.Model(MODEL, os.path.abspath(os.path.join(serving_dir, MODEL)), taxi)])
