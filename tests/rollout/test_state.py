"""The rollout state on real serving folders: its rules, its atomic writes under Push's lock, and what serves."""

from __future__ import annotations

import json
import os
import threading
import time

import pytest

from flywheel.rollout import state
from flywheel.store import layout, publish
from tests.rollout.conftest import MODEL, add_version


def _read(serving_dir: str) -> dict:
    with open(os.path.join(serving_dir, MODEL, state.STATE_FILE)) as f:
        return json.load(f)


def test_first_start_pins_the_newest_version_as_stable_and_writes_state_beside_the_versions(serving_dir):
    started = state.start(serving_dir, MODEL, 1, state.CANARY, 10, reason="older model back as canary")
    assert (started.stable, started.candidate, started.mode, started.percent, started.generation) == (
        2, 1, "canary", 10.0, 1)
    on_disk = _read(serving_dir)
    assert on_disk["schema_version"] == state.SCHEMA_VERSION and on_disk["stable"] == 2 and on_disk["candidate"] == 1
    assert on_disk["decisions"][0]["action"] == "start" and on_disk["decisions"][0]["reason"].startswith("older")
    assert state.load(serving_dir, MODEL) == started
    assert layout.versions(serving_dir, MODEL) == [1, 2]  # rollout.json is no version
    assert sorted(os.listdir(os.path.join(serving_dir, MODEL))) == [".push.lock", "1", "2", "rollout.json"]


def test_a_version_pushed_after_the_pin_is_not_served_until_promoted(serving_dir, saved_model):
    pinned = state.pin(serving_dir, MODEL)
    assert (pinned.stable, pinned.candidate, pinned.decisions) == (2, None, ())
    version, _ = publish.publish(saved_model, serving_dir, MODEL, {"model_name": MODEL})
    assert layout.latest(serving_dir, MODEL).version == version
    assert layout.current(serving_dir, MODEL).version == 2
    state.start(serving_dir, MODEL, version, state.CANARY, 25)
    assert layout.current(serving_dir, MODEL).version == 2
    promoted = state.promote(serving_dir, MODEL, reason="analysis passed", evidence={"auc": 0.8})
    assert (promoted.stable, promoted.candidate, promoted.mode, promoted.started) == (version, None, None, None)
    assert promoted.generation == 3 and [d.action for d in promoted.decisions] == ["start", "promote"]
    assert promoted.decisions[-1].evidence == {"auc": 0.8, "previous_stable": 2, "mode": "canary"}
    assert layout.current(serving_dir, MODEL).version == version


def test_rollback_keeps_stable_and_the_folder_but_never_serves_the_candidate_by_default(serving_dir, saved_model):
    state.pin(serving_dir, MODEL)
    add_version(serving_dir, saved_model, 3)
    state.start(serving_dir, MODEL, 3, state.BLUE_GREEN)
    rolled = state.rollback(serving_dir, MODEL, reason="errors", evidence={"error_rate": 0.2})
    assert (rolled.stable, rolled.candidate, rolled.rolled_back) == (2, None, (3,))
    assert os.path.isdir(os.path.join(serving_dir, MODEL, "3"))
    assert layout.latest(serving_dir, MODEL).version == 3 and layout.current(serving_dir, MODEL).version == 2
    assert rolled.decisions[-1].to_dict()["evidence"] == {"error_rate": 0.2, "stable": 2, "mode": "blue_green"}


def test_without_a_rollout_state_the_newest_version_serves(serving_dir):
    assert state.load(serving_dir, MODEL) is None
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
        state.start(serving_dir, MODEL, 1, mode, percent)
    assert state.load(serving_dir, MODEL) is None


def test_candidate_must_be_a_complete_version_other_than_stable(serving_dir, saved_model):
    with pytest.raises(state.RolloutError, match=r"candidate version 2: expected a version other than the stable one"):
        state.start(serving_dir, MODEL, 2, state.SHADOW)
    with pytest.raises(state.RolloutError, match=r"version 9: expected a complete version .*complete versions: "
                                                 r"\[1, 2\]"):
        state.start(serving_dir, MODEL, 9, state.SHADOW)
    partial = add_version(serving_dir, saved_model, 3)
    os.remove(os.path.join(partial, layout.SAVED_MODEL_FILE))
    with pytest.raises(state.RolloutError, match=r"version 3: expected a complete version"):
        state.start(serving_dir, MODEL, 3, state.SHADOW)


def test_one_rollout_at_a_time_and_promote_or_rollback_need_one(serving_dir):
    with pytest.raises(state.RolloutError, match=r"cannot promote: expected a running rollout, found no rollout "
                                                 r"state"):
        state.promote(serving_dir, MODEL)
    state.start(serving_dir, MODEL, 1, state.CANARY, 5)
    with pytest.raises(state.RolloutError, match=r"a rollout is already running \(canary 5% of version 1 against "
                                                 r"stable 2"):
        state.start(serving_dir, MODEL, 1, state.SHADOW)
    state.rollback(serving_dir, MODEL)
    with pytest.raises(state.RolloutError, match=r"cannot rollback: expected a running rollout, found no rollout: "
                                                 r"stable 2"):
        state.rollback(serving_dir, MODEL)
    with pytest.raises(state.RolloutError, match=r"cannot analyze"):
        state.record_analysis(serving_dir, MODEL, "wait", {})


def test_a_rollout_needs_a_model_in_serving(tmp_path):
    with pytest.raises(state.RolloutError, match=r"no model in serving under .*: a rollout needs a stable version"):
        state.start(str(tmp_path), MODEL, 1, state.SHADOW)
    assert state.pin(str(tmp_path), MODEL) is None


def test_routes_say_what_a_server_does_in_each_mode(serving_dir):
    assert state.routes(state.RolloutState(MODEL, 2)).to_dict() == {
        "stable": 2, "candidate": None, "mode": None, "candidate_percent": 0.0, "mirror": False, "load": (2,),
        "labels": {"stable": 2}}
    canary = state.routes(state.start(serving_dir, MODEL, 1, state.CANARY, 12.5))
    assert (canary.candidate_percent, canary.mirror, canary.load, canary.labels) == (
        12.5, False, (2, 1), {"stable": 2, "canary": 1})
    state.rollback(serving_dir, MODEL)
    shadow = state.routes(state.start(serving_dir, MODEL, 1, state.SHADOW))
    assert (shadow.candidate_percent, shadow.mirror) == (0.0, True)
    state.rollback(serving_dir, MODEL)
    blue_green = state.routes(state.start(serving_dir, MODEL, 1, state.BLUE_GREEN))
    assert (blue_green.candidate_percent, blue_green.mirror) == (100.0, False)


def test_analysis_decisions_and_a_round_trip_through_json(serving_dir):
    state.start(serving_dir, MODEL, 1, state.CANARY, 10)
    waited = state.record_analysis(serving_dir, MODEL, "too few requests", {"requests": 12})
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
    with open(os.path.join(serving_dir, MODEL, state.STATE_FILE), "w") as f:
        f.write(content)
    with pytest.raises(state.RolloutError, match=message):
        state.load(serving_dir, MODEL)


def test_a_state_pinning_a_missing_version_fails_current_with_the_file_named(serving_dir):
    with open(os.path.join(serving_dir, MODEL, state.STATE_FILE), "w") as f:
        json.dump({"schema_version": 1, "model": MODEL, "stable": 7, "generation": 1}, f)
    with pytest.raises(layout.ManifestError, match=r"rollout\.json pins stable version 7, expected a complete "
                                                     r"version .*complete versions: \[1, 2\]"):
        layout.current(serving_dir, MODEL)


def test_writes_wait_for_the_serving_lock_and_leave_no_temporary_file(serving_dir):
    done = []
    with publish.serving_lock(os.path.join(serving_dir, MODEL)):
        worker = threading.Thread(target=lambda: done.append(state.start(serving_dir, MODEL, 1, state.SHADOW)))
        worker.start()
        time.sleep(0.5)
        assert done == [] and state.load(serving_dir, MODEL) is None
    worker.join(10)
    assert done and done[0].candidate == 1
    assert not [n for n in os.listdir(os.path.join(serving_dir, MODEL)) if n.endswith(".tmp")]
    assert not [n for n in os.listdir(serving_dir) if n.endswith(".tmp")]


@pytest.mark.parametrize("text, expected", [
    ("direct", ("direct", None)), ("canary:10", ("canary", 10.0)), ("canary:2.5", ("canary", 2.5)),
    ("shadow", ("shadow", None)), ("blue-green", ("blue_green", None)),
])
def test_release_options(text, expected):
    assert state.parse_release(text) == expected


@pytest.mark.parametrize("text, message", [
    ("canary", r"expected canary:P with P a number"), ("canary:abc", r"expected canary:P"),
    ("canary:100", r"expected a number in \(0, 100\), got 100"), ("shadow:5", r"got 'shadow:5'"),
    ("linear", r"expected canary:P, shadow, blue-green or direct, got 'linear'"),
])
def test_bad_release_options(text, message):
    with pytest.raises(state.RolloutError, match=message):
        state.parse_release(text)
