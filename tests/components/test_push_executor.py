"""Push's executor (through the component's own executor class) on the real outputs of the session's taxi run."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from tfx.components.pusher import executor as stock_pusher
from tfx.types import standard_artifacts

from flywheel.components import evaluate, ingest
from flywheel.components.monitor.spec import DataProfile
from flywheel.components.push import spec
from flywheel.components.push.component import Push
from flywheel.metadata import artifacts, run_record
from flywheel.store import layout, publish

pytestmark = pytest.mark.slow  # reads a pipeline run's artifacts (the session's local run)


@pytest.fixture(scope="module")
def run_outputs(local_run) -> dict:
    """The Trainer, Evaluate and Ingest outputs of a real run (the model was trained, not faked)."""
    records = run_record.latest_run(os.path.join(local_run.output_dir, "metadata.sqlite"), "taxi")
    return {"model": records["Trainer"].output("model"), "evaluation": records["Evaluate"].output("evaluation"),
            "examples": records["Ingest"].output(ingest.spec.EXAMPLES_KEY),
            "profile": records["Ingest"].output(ingest.spec.PROFILE_KEY)}


def _artifact(cls, uri: str, **props):
    artifact = cls()
    artifact.uri = uri
    for name, value in props.items():
        if isinstance(value, int):
            artifact.set_int_custom_property(name, value)
        else:
            artifact.set_string_custom_property(name, value)
    return artifact


def _push(run_outputs, tmp_path, serving_dir: str, blessed: bool, baseline: int = 0,
          model_uri: str | None = None) -> standard_artifacts.PushedModel:
    found = run_outputs
    examples = _artifact(standard_artifacts.Examples, found["examples"]["uri"],
                         **{k: found["examples"][k] for k in (ingest.spec.FINGERPRINT, ingest.spec.SPANS)})
    inputs = {
        spec.MODEL_KEY: [_artifact(standard_artifacts.Model, model_uri or found["model"]["uri"])],
        spec.BLESSING_KEY: [_artifact(standard_artifacts.ModelBlessing, str(tmp_path / "blessing"),
                                      blessed=int(blessed), **{evaluate.spec.BASELINE_VERSION: baseline})],
        spec.EVALUATION_KEY: [_artifact(standard_artifacts.ModelEvaluation, found["evaluation"]["uri"],
                                        **{evaluate.spec.METRICS_JSON: found["evaluation"]["metrics"]})],
        spec.EXAMPLES_KEY: [examples],
        spec.PROFILE_KEY: [_artifact(DataProfile, found["profile"]["uri"])],
    }
    pushed = _artifact(standard_artifacts.PushedModel, str(tmp_path / f"pushed-{len(os.listdir(tmp_path))}"))
    Push.EXECUTOR_SPEC.executor_class().Do(inputs, {spec.PUSHED_MODEL_KEY: [pushed]}, {
        spec.SERVING_DIR_KEY: serving_dir, spec.MODEL_NAME_KEY: "taxi", spec.NUM_CHECK_EXAMPLES_KEY: 4,
        spec.NUM_PROFILE_EXAMPLES_KEY: PROFILED})
    return pushed


PROFILED = 50


def _props(artifact) -> dict:
    return {name: (value.WhichOneof("value"), run_record.artifact_props(artifact.mlmd_artifact)[name])
            for name, value in artifact.mlmd_artifact.custom_properties.items()}


def test_a_blessed_model_is_pushed_like_the_stock_pusher_with_a_complete_manifest(run_outputs, tmp_path):
    import tensorflow as tf

    serving_dir = str(tmp_path / "serving")
    pushed = _push(run_outputs, tmp_path, serving_dir, blessed=True)
    served = layout.latest(serving_dir, "taxi")
    assert served is not None and layout.versions(serving_dir, "taxi") == [served.version]
    ours = _props(pushed)
    assert ours[artifacts.PUSHED] == ("int_value", 1) and ours[artifacts.PUSH_REASON][1] == spec.PUSHED_REASON
    stock = standard_artifacts.PushedModel()
    stock_pusher.Executor()._MarkPushed(stock, pushed_destination=served.path, pushed_version=str(served.version))
    assert _props(stock) == {name: ours[name] for name in _props(stock)}, "read the way stock Pusher output is read"
    model_dir = os.path.join(run_outputs["model"]["uri"], "Format-Serving")
    manifest = served.manifest
    assert manifest["model_uri"] == run_outputs["model"]["uri"]
    assert manifest["model_sha256"] == publish.tree_digest(model_dir)
    assert manifest["data_fingerprint"] == run_outputs["examples"][ingest.spec.FINGERPRINT]
    assert manifest["spans"] == [0] and manifest["blessing"]["baseline_version"] is None
    assert manifest["signature_check"]["examples"] == 4 and manifest["baseline_profile"] == publish.BASELINE_PROFILE
    assert json.load(open(os.path.join(served.path, publish.BASELINE_PROFILE)))
    assert os.path.realpath(pushed.uri) == os.path.realpath(served.path)
    assert not [n for n in os.listdir(os.path.join(serving_dir, "taxi")) if n.startswith(publish.TMP_PREFIX)]
    loaded = tf.saved_model.load(served.path)
    examples = publish.sample_examples(run_outputs["examples"]["uri"], "eval", 4)
    answer = next(iter(loaded.signatures["serving_examples"](examples=tf.constant(examples)).values()))
    assert answer.numpy().reshape(-1).tolist() == pytest.approx(manifest["signature_check"]["predictions"], abs=1e-4)


def test_the_baseline_profile_holds_the_models_scores_on_eval_examples_for_prediction_drift(run_outputs, tmp_path):
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    import tensorflow as tf

    from flywheel.monitoring import monitor, profile

    serving_dir = str(tmp_path / "serving")
    _push(run_outputs, tmp_path, serving_dir, blessed=True)
    served = layout.latest(serving_dir, "taxi")
    baseline_path = os.path.join(served.path, publish.BASELINE_PROFILE)
    column = profile.load(baseline_path).columns["prediction"]
    examples = publish.sample_examples(run_outputs["examples"]["uri"], "eval", PROFILED)
    scores = next(iter(tf.saved_model.load(served.path).signatures["serving_examples"](
        examples=tf.constant(examples)).values())).numpy().reshape(-1)
    assert column.kind == profile.NUMERIC and column.count == len(examples) == PROFILED and column.missing == 0
    assert column.mean == pytest.approx(float(scores.mean()), abs=1e-5)

    # A request-log span whose predictions are the same scores: no prediction drift; all ones: drift.
    for name, predictions, drifted in [("same", scores, False), ("shifted", np.ones(len(scores)), True)]:
        span = tmp_path / name / "span-1"
        span.mkdir(parents=True)
        pq.write_table(pa.table({"prediction": predictions.astype(np.float64)}), str(span / "part-0.parquet"))
        found = monitor.run_monitor(baseline_path, str(span), schema_path=None)
        assert found["prediction"]["drift"] is drifted, found["prediction"]


def test_an_unblessed_model_is_not_pushed_and_says_why(run_outputs, tmp_path):
    serving_dir = str(tmp_path / "serving")
    pushed = _push(run_outputs, tmp_path, serving_dir, blessed=False)
    assert _props(pushed) == {artifacts.PUSHED: ("int_value", 0),
                              artifacts.PUSH_REASON: ("string_value", "model not blessed by evaluation")}
    assert not os.path.exists(serving_dir)


def test_the_model_already_in_serving_is_not_pushed_again(run_outputs, tmp_path):
    serving_dir = str(tmp_path / "serving")
    first = _push(run_outputs, tmp_path, serving_dir, blessed=True)
    version = int(first.get_string_custom_property(artifacts.PUSHED_VERSION))
    again = _push(run_outputs, tmp_path, serving_dir, blessed=True, baseline=version)
    assert _props(again) == {artifacts.PUSHED: ("int_value", 0),
                             artifacts.PUSH_REASON: ("string_value", f"identical to serving version {version}")}
    assert layout.versions(serving_dir, "taxi") == [version]


def test_a_model_blessed_against_an_older_version_is_not_published_over_a_newer_one(run_outputs, tmp_path):
    serving_dir = str(tmp_path / "serving")
    newer = int(_push(run_outputs, tmp_path, serving_dir, blessed=True).get_string_custom_property(
        artifacts.PUSHED_VERSION))
    other = tmp_path / "other_model"
    shutil.copytree(os.path.join(run_outputs["model"]["uri"], "Format-Serving"), other / "Format-Serving")
    (other / "Format-Serving" / "assets").mkdir(exist_ok=True)
    (other / "Format-Serving" / "assets" / "note.txt").write_text("a different model")
    stale = _push(run_outputs, tmp_path, serving_dir, blessed=True, baseline=0, model_uri=str(other))
    assert stale.get_int_custom_property(artifacts.PUSHED) == 0
    assert stale.get_string_custom_property(artifacts.PUSH_REASON).startswith(
        f"blessed against no model in serving, but serving now has version {newer}")
    assert layout.versions(serving_dir, "taxi") == [newer]
    current = _push(run_outputs, tmp_path, serving_dir, blessed=True, baseline=newer, model_uri=str(other))
    assert current.get_int_custom_property(artifacts.PUSHED) == 1
    assert layout.versions(serving_dir, "taxi") == [newer, int(current.get_string_custom_property(
        artifacts.PUSHED_VERSION))]
