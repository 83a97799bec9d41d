"""Push's execution as plain functions: decide under the serving lock, check the model, publish, record."""

from __future__ import annotations

import json
import os
from typing import Any, Optional

import numpy as np
from tfx import types

from flywheel import storage
from flywheel.components.evaluate.spec import BASELINE_VERSION, BLESSED, METRICS_JSON
from flywheel.components.ingest.spec import FINGERPRINT, SPANS
from flywheel.components.push import spec
from flywheel.metadata import artifacts
from flywheel.monitoring import profile
from flywheel.monitoring.drift import Policy
from flywheel.store import layout, publish, warmup

PREDICTION = Policy.prediction_column


def run_push(model: types.Artifact, blessing: types.Artifact, evaluation: types.Artifact, examples: types.Artifact,
             data_profile: types.Artifact, pushed_model: types.Artifact, serving_dir: str, model_name: str,
             num_check_examples: int, num_profile_examples: int = 0) -> dict:
    """num_profile_examples: how many eval examples the model scores for the baseline profile's `prediction`
    column (what the monitor compares a request log's predictions with); 0: none."""
    model_dir = os.path.join(model.uri, "Format-Serving")
    blessed = bool(blessing.get_int_custom_property(BLESSED))
    baseline_version = blessing.get_int_custom_property(BASELINE_VERSION) or None
    if not blessed:
        return record(pushed_model, publish.decide(False, "", baseline_version, None), None)
    digest = publish.tree_digest(model_dir)
    with publish.serving_lock(os.path.join(serving_dir, model_name)):
        reason = publish.decide(True, digest, baseline_version, layout.current(serving_dir, model_name))
        if reason is not None:
            return record(pushed_model, reason, None)
        sample = publish.sample_examples(examples.uri, "eval", max(num_check_examples, num_profile_examples))
        scores = publish.check_serving_signature(model_dir, sample)
        checked = sample[:num_check_examples]
        requests = warmup.to_tfrecord(warmup.predict_logs(model_dir, checked, model_name))
        manifest = build_manifest(model, blessing, evaluation, examples, model_name, digest, baseline_version,
                                  scores[:num_check_examples])
        baseline = baseline_profile(data_profile.uri, scores[:num_profile_examples])
        published = publish.publish(model_dir, serving_dir, model_name, manifest,
                                    extra_files={publish.BASELINE_PROFILE: baseline.to_json()},
                                    binary_files={warmup.WARMUP_PATH: requests})
    return record(pushed_model, None, published)


def baseline_profile(profile_uri: str, scores: list[float]) -> profile.DatasetProfile:
    """The training spans' merged profile plus, from the model's scores on eval examples, a `prediction` column:
    the monitor compares a request log's predictions with it (prediction drift without a reference log)."""
    baseline = profile.merge(list(profile.read_span_profiles(profile_uri).values()))
    if scores:
        baseline.columns[PREDICTION] = profile.numeric_column(np.asarray(scores, dtype=np.float64))
    return baseline


def build_manifest(model: types.Artifact, blessing: types.Artifact, evaluation: types.Artifact,
                   examples: types.Artifact, model_name: str, digest: str, baseline_version: Optional[int],
                   predictions: list[float]) -> dict[str, Any]:
    return {
        "model_name": model_name,
        "model_uri": model.uri,
        "model_sha256": digest,
        "data_fingerprint": examples.get_string_custom_property(FINGERPRINT),
        "spans": [int(s) for s in examples.get_string_custom_property(SPANS).split(",") if s],
        "examples_uri": examples.uri,
        "evaluation_uri": evaluation.uri,
        "metrics": json.loads(evaluation.get_string_custom_property(METRICS_JSON) or "{}"),
        "blessing": {"blessed": True, "blessing_uri": blessing.uri, "baseline_version": baseline_version},
        "signature_check": {"examples": len(predictions), "predictions": [round(p, 4) for p in predictions]},
    }


def record(pushed_model: types.Artifact, reason: Optional[str], published: Optional[tuple[int, str]]) -> dict:
    """Sets the PushedModel's properties the way the stock Pusher does, plus `reason`; returns them."""
    pushed_model.set_int_custom_property(artifacts.PUSHED, int(published is not None))
    pushed_model.set_string_custom_property(artifacts.PUSH_REASON, reason or spec.PUSHED_REASON)
    result: dict[str, Any] = {"pushed": published is not None, "reason": reason or spec.PUSHED_REASON}
    if published is not None:
        version, path = published
        pushed_model.set_string_custom_property(artifacts.PUSHED_VERSION, str(version))
        pushed_model.set_string_custom_property(artifacts.PUSHED_DESTINATION, path)
        link_or_copy_manifest(pushed_model.uri, path)
        result.update(version=version, path=path)
    return result


def link_or_copy_manifest(artifact_uri: str, version_path: str) -> None:
    """Makes the PushedModel artifact stand for the published version.

    On a local filesystem the artifact's folder becomes a link to the version folder: if that
    version is later removed from serving, TFX finds the cached push's output missing and pushes
    again instead of reporting a model that is no longer served. Elsewhere (gs://) it holds a copy
    of push.json. Links exist on local filesystems only, so only they use `os`.
    """
    if storage.is_local(artifact_uri) and storage.is_local(version_path):
        if os.path.islink(artifact_uri):
            os.remove(artifact_uri)
        elif storage.filesystem(artifact_uri).isdir(artifact_uri):
            storage.filesystem(artifact_uri).rmtree(artifact_uri)
        elif storage.filesystem(artifact_uri).exists(artifact_uri):
            storage.filesystem(artifact_uri).remove(artifact_uri)
        storage.filesystem(artifact_uri).makedirs(os.path.dirname(artifact_uri))
        os.symlink(os.path.abspath(version_path), artifact_uri, target_is_directory=True)
        return
    storage.filesystem(artifact_uri).makedirs(artifact_uri)
    manifest = layout.read_manifest(os.path.join(version_path, layout.MANIFEST_FILE))
    with storage.filesystem(artifact_uri).open(os.path.join(artifact_uri, layout.MANIFEST_FILE), "w") as f:
        f.write(json.dumps(manifest, indent=2))
