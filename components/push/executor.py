"""Push's execution as a plain function: decide, check the model on real examples, publish, record."""

from __future__ import annotations

import json
import os

from tfx import types
from tfx.dsl.io import fileio

from flywheel.components.common import serving
from flywheel.components.ingest import spec as ingest_spec
from flywheel.components.monitor import profile
from flywheel.components.push import publish, spec


def run_push(model: types.Artifact, blessing: types.Artifact, evaluation: types.Artifact, examples: types.Artifact,
             data_profile: types.Artifact, pushed_model: types.Artifact, serving_dir: str, model_name: str,
             num_check_examples: int) -> dict:
    model_dir = os.path.join(model.uri, "Format-Serving")
    blessed = bool(blessing.get_int_custom_property("blessed"))
    digest = publish.tree_digest(model_dir)
    reason = publish.decide(blessed, digest, serving_dir, model_name)
    result = {"pushed": reason is None, "reason": reason or "blessed and different from serving"}
    if reason is None:
        predictions = publish.check_serving_signature(
            model_dir, publish.sample_examples(examples.uri, "eval", num_check_examples))
        manifest = {
            "model_name": model_name,
            "model_uri": model.uri,
            "model_sha256": digest,
            "data_fingerprint": examples.get_string_custom_property(ingest_spec.FINGERPRINT),
            "spans": [int(s) for s in examples.get_string_custom_property(ingest_spec.SPANS).split(",") if s],
            "examples_uri": examples.uri,
            "evaluation_uri": evaluation.uri,
            "metrics": json.loads(evaluation.get_string_custom_property("metrics") or "{}"),
            "blessing": {
                "blessed": blessed,
                "blessing_uri": blessing.uri,
                "baseline_version": blessing.get_int_custom_property("baseline_version") or None,
            },
            "signature_check": {"examples": len(predictions), "predictions": [round(p, 4) for p in predictions]},
        }
        baseline = profile.merge(list(profile.read_span_profiles(data_profile.uri).values()))
        version, path = publish.publish(model_dir, serving_dir, model_name, manifest,
                                        extra_files={publish.BASELINE_PROFILE: baseline.to_json()})
        result.update(version=version, path=path)
        pushed_model.set_int_custom_property(spec.PUSHED_VERSION, version)
        pushed_model.set_string_custom_property(spec.PUSHED_DESTINATION, path)
        link_or_copy_manifest(pushed_model.uri, path)
    pushed_model.set_int_custom_property(spec.PUSHED, int(result["pushed"]))
    pushed_model.set_string_custom_property(spec.REASON, result["reason"])
    return result


def link_or_copy_manifest(artifact_uri: str, version_path: str) -> None:
    """Makes the PushedModel artifact stand for the published version.

    On a local filesystem the artifact's folder becomes a link to the version folder: if that
    version is later removed from serving, TFX finds the cached push's output missing and pushes
    again instead of reporting a model that is no longer served. Elsewhere (gs://) it holds a copy
    of push.json.
    """
    if "://" not in artifact_uri and "://" not in version_path:
        if os.path.islink(artifact_uri) or os.path.isfile(artifact_uri):
            os.remove(artifact_uri)
        elif os.path.isdir(artifact_uri):
            fileio.rmtree(artifact_uri)
        os.makedirs(os.path.dirname(artifact_uri), exist_ok=True)
        os.symlink(os.path.abspath(version_path), artifact_uri, target_is_directory=True)
        return
    fileio.makedirs(artifact_uri)
    with fileio.open(os.path.join(artifact_uri, serving.MANIFEST_FILE), "w") as f:
        f.write(json.dumps(serving.read_manifest(os.path.join(version_path, serving.MANIFEST_FILE)), indent=2))
