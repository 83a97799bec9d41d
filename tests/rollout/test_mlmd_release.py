"""Rollout decisions in the tiny runs' real ML-Metadata store, `flywheel lineage`'s rollouts part, and the release
`flywheel retrain --release` makes (the functions it calls, on a copy of the runs' serving folder)."""

from __future__ import annotations

import os

import pytest

import flywheel.api.retraining
from flywheel.api.errors import UsageError
from flywheel.api.pipeline import lineage
from flywheel.api.rollout import rollout_rollback, rollout_start
from flywheel.cli.pipeline import lineage_lines
from flywheel.pipelines import retrain
from flywheel.rollout import mlmd, state, store
from flywheel.store import layout, publish
from tests.rollout.conftest import MODEL


def _paths(out: str) -> tuple[str, str]:
    return os.path.join(out, "serving"), os.path.join(out, "metadata.sqlite")


def test_decisions_are_rollout_executions_linked_to_the_pushed_model_and_shown_by_lineage(run_copy):
    serving_dir, metadata = _paths(run_copy)
    first, second = layout.versions(serving_dir, MODEL)
    started = rollout_start(serving_dir, MODEL, version=first, mode="blue_green", reason="back to the first",
                                metadata=metadata)
    assert started.execution_id is not None and started.pushed_model_id is not None
    rolled = rollout_rollback(serving_dir, MODEL, reason="worse AUC", metadata=metadata)
    found = mlmd.decisions(metadata, MODEL)
    assert [(d["action"], d["version"], d["stable"], d["reason"]) for d in found] == [
        ("start", first, second, "back to the first"), ("rollback", first, second, "worse AUC")]
    assert found[0]["mode"] == "blue_green" and found[0]["percent"] == 100.0
    assert found[0]["pushed_model"] and found[0]["pushed_model"] == found[1]["pushed_model"]
    assert rolled.execution_id == found[1]["execution"]
    described = lineage("taxi", run_copy)
    assert described.version == second and [d["action"] for d in described.rollouts] == ["start", "rollback"]
    text = "\n".join(lineage_lines(described))
    assert "rollouts of taxi" in text and f"rollback version {first} (stable {second}" in text
    assert "worse AUC" in text


def test_a_store_without_rollouts_has_none_and_a_missing_store_is_refused(run_copy, tmp_path):
    serving_dir, metadata = _paths(run_copy)
    assert mlmd.decisions(metadata, MODEL) == []
    with pytest.raises(UsageError, match=r"--metadata .*nothing\.sqlite: expected the ML-Metadata store"):
        rollout_start(serving_dir, MODEL, version=1, mode="shadow", metadata=str(tmp_path / "nothing.sqlite"))
    assert store.load(serving_dir, MODEL) is None


def test_canary_release_pins_stable_before_push_and_starts_the_rollout_after(run_copy):
    serving_dir, metadata = _paths(run_copy)
    served = layout.current(serving_dir, MODEL).version
    pinned = retrain.prepare_release(serving_dir, MODEL, "canary:10")
    assert pinned.stable == served and not pinned.running
    source = layout.latest(serving_dir, MODEL).path
    pushed, _ = publish.publish(source, serving_dir, MODEL, {"model_name": MODEL})
    assert layout.current(serving_dir, MODEL).version == served  # Push did not make it served by default
    after = retrain.finish_release(serving_dir, MODEL, "canary:10", pushed, pinned, "retrain on spans [1]", metadata)
    assert (after.stable, after.candidate, after.mode, after.percent) == (served, pushed, "canary", 10.0)
    assert mlmd.decisions(metadata, MODEL)[-1]["action"] == "start"
    with pytest.raises(state.RolloutError, match=r"retrain --release direct: a rollout of taxi is running \(canary "
                                                 r"10%"):
        retrain.prepare_release(serving_dir, MODEL, "direct")


def test_direct_release_with_a_state_makes_the_pushed_version_stable_and_without_one_changes_nothing(run_copy):
    serving_dir, metadata = _paths(run_copy)
    assert retrain.prepare_release(serving_dir, MODEL, "direct") is None
    newest = layout.latest(serving_dir, MODEL).version
    assert retrain.finish_release(serving_dir, MODEL, "direct", newest, None) is None
    assert store.load(serving_dir, MODEL) is None
    store.pin(serving_dir, MODEL)
    pinned = retrain.prepare_release(serving_dir, MODEL, "direct")
    pushed, _ = publish.publish(layout.latest(serving_dir, MODEL).path, serving_dir, MODEL, {"model_name": MODEL})
    after = retrain.finish_release(serving_dir, MODEL, "direct", pushed, pinned, "retrain", metadata)
    assert (after.stable, after.candidate, after.decisions[-1].action) == (pushed, None, "promote")
    assert after.decisions[-1].evidence["mode"] == "direct"
    assert layout.current(serving_dir, MODEL).version == pushed


def test_the_first_model_is_released_directly(tmp_path):
    assert retrain.prepare_release(str(tmp_path), MODEL, "shadow") is None
    assert retrain.finish_release(str(tmp_path), MODEL, "shadow", None, None) is None


def test_retrain_refuses_a_bad_release_before_running_anything(tmp_path):
    with pytest.raises(UsageError, match=r"--release: expected canary:P, shadow, blue-green or direct"):
        flywheel.api.retraining.retrain("taxi", str(tmp_path / "data"), str(tmp_path / "out"), release="gradual")
    assert not os.path.exists(tmp_path / "out")
