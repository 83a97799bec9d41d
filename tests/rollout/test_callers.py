"""Once a rollout state exists, "the model in serving" is its stable version for every caller that means what
serves: the retraining decision, Evaluate's baseline, Push's check, the up-to-date stamp, warm start, lineage."""

from __future__ import annotations

import json
import os

import pytest

from flywheel import retraining
from flywheel.api.pipeline import lineage, serving_now
from flywheel.components import evaluate, ingest
from flywheel.components.evaluate import executor as evaluate_executor
from flywheel.data import inputs
from flywheel.metadata import artifacts, run_record
from flywheel.pipelines import registry
from flywheel.pipelines.taxi import pipeline as taxi_pipeline
from flywheel.rollout import state, store
from flywheel.store import layout
from tests import tiny_runs
from tests.components.test_push_executor import _push
from tests.rollout.conftest import MODEL, add_version


def _pin_older(serving_dir: str) -> None:
    """Versions 1 and 2 in serving; the rollout state pins 1 as stable (2 was rolled back)."""
    store.start(serving_dir, MODEL, 1, state.CANARY, 10)
    store.promote(serving_dir, MODEL)
    assert layout.latest(serving_dir, MODEL).version == 2 and layout.current(serving_dir, MODEL).version == 1


def test_evaluate_compares_against_the_stable_version(serving_dir, tmp_path):
    _pin_older(serving_dir)
    baseline, version = evaluate_executor.baseline_from_serving(serving_dir, MODEL, str(tmp_path / "work"))
    assert version == 1 and baseline.get_int_custom_property(evaluate.spec.SERVING_VERSION_KEY) == 1


def test_the_retraining_decision_reads_the_stable_versions_manifest(tmp_path, saved_model):
    data = tiny_runs.write_sample(str(tmp_path / "data"), 0, 50)
    fingerprint = inputs.resolve_input(data, -1, 1).fingerprint
    serving_dir = str(tmp_path / "serving")
    add_version(serving_dir, saved_model, 1, {"data_fingerprint": fingerprint})
    add_version(serving_dir, saved_model, 2, {"data_fingerprint": "another"})
    schema = registry.get("taxi").schema_path()
    plan = retraining.plan(data, serving_dir, MODEL, 1, schema)
    assert (plan.verdict, plan.serving_version, plan.new_data) == (retraining.RETRAIN, 2, True)
    _pin_older(serving_dir)
    plan = retraining.plan(data, serving_dir, MODEL, 1, schema)
    assert (plan.verdict, plan.serving_version) == (retraining.NOTHING_NEW, 1) and "serving version 1" in plan.reason


def test_the_pipelines_serving_version_warm_start_and_stamp_follow_the_stable_version(serving_dir, tmp_path):
    cfg = tiny_runs.config(str(tmp_path / "out"), str(tmp_path / "data"), warm_start=True)
    cfg = cfg.__class__(**{**cfg.__dict__, "paths": cfg.paths.__class__(**{**cfg.paths.__dict__,
                                                                           "serving_dir": serving_dir})})
    assert taxi_pipeline.serving_version(cfg) == 2
    _pin_older(serving_dir)
    assert taxi_pipeline.serving_version(cfg) == 1
    assert taxi_pipeline.warm_start_source(cfg) == os.path.join(serving_dir, MODEL, "1")
    assert serving_now(cfg) == 1


@pytest.mark.slow  # Push reads the trained model, examples and evaluation of a run
def test_push_checks_against_the_stable_version_and_a_new_push_is_not_served_by_default(trained_out, tmp_path):
    records = run_record.latest_run(os.path.join(trained_out, "metadata.sqlite"), "taxi")
    outputs = {"model": records["Trainer"].output("model"), "evaluation": records["Evaluate"].output("evaluation"),
               "examples": records["Ingest"].output(ingest.spec.EXAMPLES_KEY),
               "profile": records["Ingest"].output(ingest.spec.PROFILE_KEY)}
    older, newer = layout.versions(os.path.join(trained_out, "serving"), MODEL)
    serving_dir = str(tmp_path / "serving")
    add_version(serving_dir, os.path.join(trained_out, "serving", MODEL, str(older)), 1)
    add_version(serving_dir, os.path.join(trained_out, "serving", MODEL, str(newer)), 2)
    _pin_older(serving_dir)
    work = tmp_path / "work"
    work.mkdir()
    pushed = _push(outputs, work, serving_dir, blessed=True, baseline=1)
    assert pushed.get_int_custom_property(artifacts.PUSHED) == 1, \
        pushed.get_string_custom_property(artifacts.PUSH_REASON)
    version = int(pushed.get_string_custom_property(artifacts.PUSHED_VERSION))
    assert version > 2 and layout.latest(serving_dir, MODEL).version == version
    assert layout.current(serving_dir, MODEL).version == 1


def test_lineage_of_the_model_in_serving_is_the_stable_versions(run_copy):
    serving_dir = os.path.join(run_copy, "serving")
    first, second = layout.versions(serving_dir, MODEL)
    store.start(serving_dir, MODEL, first, state.CANARY, 50)
    store.promote(serving_dir, MODEL)
    found = lineage("taxi", run_copy)
    assert found.version == first
    with open(os.path.join(serving_dir, MODEL, str(first), layout.MANIFEST_FILE)) as f:
        assert found.data_fingerprint == json.load(f)["data_fingerprint"]
