"""The committed Kubeflow spec is current, parses as a KFP PipelineSpec and runs on open-source KFP."""

from __future__ import annotations

import os

import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from tests.conftest import REPO, run_cli

COMMITTED = os.path.join(REPO, "kubeflow", "taxi_pipeline.yaml")
VOLATILE = ("sdkVersion",)  # the only fields allowed to differ between compilations


def _load(path: str) -> dict:
    with open(path) as f:
        spec = yaml.safe_load(f)
    for key in VOLATILE:
        spec.pop(key, None)
    return spec


def test_committed_spec_matches_a_fresh_compile(tmp_path):
    fresh = tmp_path / "taxi_pipeline.yaml"
    result = run_cli("compile", "taxi", "--output", str(fresh))
    assert result.returncode == 0, result.stderr
    assert _load(str(fresh)) == _load(COMMITTED), "kubeflow/taxi_pipeline.yaml is stale: run `make compile`"


def test_spec_parses_and_has_no_resolver_or_local_paths():
    spec = json_format.ParseDict(_load(COMMITTED), pipeline_spec_pb2.PipelineSpec(), ignore_unknown_fields=True)
    assert spec.pipeline_info.name == "taxi"
    executors = _load(COMMITTED)["deploymentSpec"]["executors"]
    assert executors and not any("resolver" in e for e in executors.values())
    assert set(spec.root.input_definitions.parameters) == {"data-root", "serving-dir"}
    text = open(COMMITTED).read()
    assert REPO not in text and "/tmp/" not in text and "/home/" not in text
    guarded = [name for name, task in spec.root.dag.tasks.items() if task.trigger_policy.condition]
    assert set(guarded) == {"Transform", "Trainer", "Evaluate", "Push"}
