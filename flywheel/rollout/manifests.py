"""Production mirrors of the rollout state: TF Serving's `models.config` and KServe `InferenceService` manifests.

- `<serving_dir>/models.config`: TF Serving's ModelServerConfig (text proto, `--model_config_file`), rewritten on
  every state change. A model with a rollout state loads exactly its stable (and candidate) versions
  (`model_version_policy { specific { ... } }`) with the version labels `stable` and `canary`; a model without
  one keeps TF Serving's default policy (the latest version). TF Serving refuses a label on a version it has not
  loaded yet unless it runs with `--allow_version_labels_for_unavailable_models`.
- KServe: the `InferenceService` for the stable revision and, while a candidate runs, the one that rolls it
  out (`spec.predictor.canaryTrafficPercent`), the storage URI of each version from a template.
"""

from __future__ import annotations

import os
import re
from typing import Any, Optional

from flywheel import storage
from flywheel.rollout import state as rollout_state
from flywheel.store import layout

CONFIG_FILE = "models.config"
KSERVE_API_VERSION = "serving.kserve.io/v1beta1"
DEFAULT_STORAGE_URI = "pvc://flywheel-serving/kserve/{model}-{version}"
_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def _base_path(serving_dir: str, model: str) -> str:
    root = os.path.join(serving_dir, model)
    return os.path.abspath(root) if storage.is_local(root) else root


def _models(serving_dir: str) -> list[str]:
    """Model folders that hold a version or a rollout state, sorted."""
    return sorted(name for name in storage.listdir(serving_dir)
                  if layout.numeric_folders(serving_dir, name)
                  or storage.filesystem(rollout_state.state_path(serving_dir, name)).exists(
                      rollout_state.state_path(serving_dir, name)))


def models_config(serving_dir: str) -> str:
    """The ModelServerConfig text proto for every model under serving_dir (its rollout state, if any)."""
    lines = ["# TF Serving model config (--model_config_file), written by flywheel from each model's rollout.json.",
             "model_config_list {"]
    for model in _models(serving_dir):
        found = rollout_state.load(serving_dir, model)
        lines += ["  config {", f'    name: "{model}"', f'    base_path: "{_base_path(serving_dir, model)}"',
                  '    model_platform: "tensorflow"']
        if found is None:
            lines.append("    model_version_policy { latest { num_versions: 1 } }")
        else:
            routes = rollout_state.routes(found)
            versions = " ".join(f"versions: {v}" for v in routes.load)
            lines.append(f"    model_version_policy {{ specific {{ {versions} }} }}")
            lines += [f'    version_labels {{ key: "{label}" value: {version} }}'
                      for label, version in routes.labels.items()]
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def write_models_config(serving_dir: str) -> str:
    """Rewrites `<serving_dir>/models.config` atomically; returns its path."""
    path = os.path.join(serving_dir, CONFIG_FILE)
    rollout_state.write_atomic(path, models_config(serving_dir))
    return path


def storage_uri(template: str, model: str, version: int) -> str:
    """A version's storage URI: `{model}` and `{version}` in the template are replaced; without `{version}`,
    `/<version>` is appended."""
    if "{version}" not in template:
        template = template.rstrip("/") + "/{version}"
    return template.format(model=model, version=version)


def _service(model: str, uri: str, state: rollout_state.RolloutState, canary_percent: Optional[int]
             ) -> dict[str, Any]:
    predictor: dict[str, Any] = {"model": {"modelFormat": {"name": "tensorflow"}, "storageUri": uri}}
    if canary_percent is not None:
        predictor = {"canaryTrafficPercent": canary_percent, **predictor}
    annotations = {"flywheel/rollout-generation": str(state.generation), "flywheel/stable": str(state.stable)}
    if state.candidate is not None:
        annotations.update({"flywheel/candidate": str(state.candidate), "flywheel/mode": state.mode})
    return {"apiVersion": KSERVE_API_VERSION, "kind": "InferenceService",
            "metadata": {"name": model, "annotations": annotations}, "spec": {"predictor": predictor}}


def kserve_manifests(state: rollout_state.RolloutState, template: str = DEFAULT_STORAGE_URI
                     ) -> dict[str, dict[str, Any]]:
    """{file name: InferenceService} for a state: `<model>-stable.yaml` (the stable version, all traffic) and,
    while a canary or blue/green rollout runs, `<model>-candidate.yaml` (the candidate with canaryTrafficPercent:
    the canary's percent, 100 for blue/green). KServe has no shadow mode: a shadow rollout gets the stable
    manifest only. KServe's canaryTrafficPercent is a whole number: a fractional canary percent is refused."""
    model = state.model
    if not _DNS_LABEL.match(model) or len(model) > 63:
        raise rollout_state.RolloutError(f"rollout manifests: model name {model!r}: expected a Kubernetes name "
                                         "(lower-case letters, digits and '-', starting with a letter, at most 63)")
    out = {f"{model}-stable.yaml": _service(model, storage_uri(template, model, state.stable), state, None)}
    if state.running and state.mode != rollout_state.SHADOW:
        if state.percent != int(state.percent):
            raise rollout_state.RolloutError(f"rollout manifests: canary percent {state.percent:g}: KServe's "
                                             "canaryTrafficPercent is a whole number; start the rollout with one")
        out[f"{model}-candidate.yaml"] = _service(model, storage_uri(template, model, state.candidate), state,
                                                  int(state.percent))
    return out
