"""The rollout state as pure functions (`flywheel.rollout.state`): transitions, routes, the file's format and the
`--release` option, without a serving folder."""

from __future__ import annotations

import json

import pytest

from flywheel.rollout import state

MODEL = "taxi"
AT = "2026-12-07T10:00:00+00:00"
VERSIONS = state.Versions(folder="serving/taxi", served=2, complete=(1, 2, 3), complete_file="saved_model.pb")


def test_a_first_start_pins_the_version_served_now_and_leaves_the_generation_to_the_store():
    started = state.start(None, MODEL, 1, state.CANARY, 10, versions=VERSIONS, at=AT, reason="try")
    assert (started.stable, started.candidate, started.mode, started.percent, started.started) == (
        2, 1, state.CANARY, 10.0, AT)
    assert started.generation == 0
    assert started.decisions == (state.Decision(AT, state.START, 1, "try", {"mode": "canary", "percent": 10.0,
                                                                            "stable": 2}),)


def test_promote_rollback_and_analysis_decisions_follow_the_running_rollout():
    running = state.start(state.RolloutState(MODEL, 2), MODEL, 3, state.SHADOW, None, versions=VERSIONS, at=AT)
    waited = state.record_analysis(running, MODEL, at=AT, reason="few requests", evidence={"requests": 5})
    assert waited.decisions[-1] == state.Decision(AT, state.ANALYZE, 3, "few requests", {"requests": 5})
    rolled = state.rollback(waited, MODEL, at=AT, reason="errors")
    assert (rolled.stable, rolled.candidate, rolled.mode, rolled.rolled_back) == (2, None, None, (3,))
    again = state.start(rolled, MODEL, 3, state.BLUE_GREEN, None, versions=VERSIONS, at=AT)
    promoted = state.promote(again, MODEL, at=AT)
    assert (promoted.stable, promoted.candidate, promoted.rolled_back) == (3, None, ())
    assert promoted.decisions[-1].evidence == {"previous_stable": 2, "mode": "blue_green"}


def test_pin_and_a_direct_release():
    pinned = state.pin(None, MODEL, versions=VERSIONS)
    assert (pinned.stable, pinned.decisions) == (2, ())
    assert state.pin(pinned, MODEL, versions=VERSIONS) is pinned
    released = state.release(pinned, MODEL, 3, versions=VERSIONS, at=AT)
    assert released.stable == 3 and released.decisions[-1].evidence == {"previous_stable": 2, "mode": "direct"}
    with pytest.raises(state.RolloutError, match=r"no model in serving under serving/taxi"):
        state.pin(None, MODEL, versions=state.Versions("serving/taxi", None, (), "saved_model.pb"))


@pytest.mark.parametrize("before, version, message", [
    (None, 9, r"version 9: expected a complete version in serving/taxi \(saved_model.pb\); complete versions: "
              r"\[1, 2, 3\]"),
    (None, 2, r"candidate version 2: expected a version other than the stable one"),
    (state.RolloutState(MODEL, 2, candidate=1, mode=state.SHADOW), 3, r"a rollout is already running"),
])
def test_a_start_that_breaks_a_rule_is_refused(before, version, message):
    with pytest.raises(state.RolloutError, match=message):
        state.start(before, MODEL, version, state.SHADOW, None, versions=VERSIONS, at=AT)


def test_routes_say_what_a_server_does_in_each_mode():
    assert state.routes(state.RolloutState(MODEL, 2)).to_dict() == {
        "stable": 2, "candidate": None, "mode": None, "candidate_percent": 0.0, "mirror": False, "load": (2,),
        "labels": {"stable": 2}}
    stable = state.RolloutState(MODEL, 2)
    canary = state.routes(state.start(stable, MODEL, 1, state.CANARY, 12.5, versions=VERSIONS, at=AT))
    assert (canary.candidate_percent, canary.mirror, canary.load, canary.labels) == (
        12.5, False, (2, 1), {"stable": 2, "canary": 1})
    shadow = state.routes(state.start(stable, MODEL, 1, state.SHADOW, None, versions=VERSIONS, at=AT))
    assert (shadow.candidate_percent, shadow.mirror) == (0.0, True)
    blue_green = state.routes(state.start(stable, MODEL, 1, state.BLUE_GREEN, None, versions=VERSIONS, at=AT))
    assert (blue_green.candidate_percent, blue_green.mirror) == (100.0, False)


def test_the_file_format_round_trips_and_names_what_is_wrong():
    running = state.start(state.RolloutState(MODEL, 2, generation=4), MODEL, 1, state.CANARY, 10, versions=VERSIONS,
                          at=AT)
    text = state.serialize(running)
    assert json.loads(text)["schema_version"] == state.SCHEMA_VERSION and text.endswith("}\n")
    assert state.parse(text, "x/rollout.json", MODEL) == running
    with pytest.raises(state.RolloutError, match=r"x/rollout.json: expected a JSON object, got list"):
        state.parse("[]", "x/rollout.json")
    with pytest.raises(state.RolloutError, match=r"x/rollout.json: model: expected 'other', got 'taxi'"):
        state.parse(text, "x/rollout.json", "other")


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
