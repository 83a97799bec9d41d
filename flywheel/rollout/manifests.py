"""Production manifests of a rollout state, written where a user applies them (`flywheel rollout manifests`):
TF Serving's `models.config` (`flywheel.rollout.models_config`) and KServe `InferenceService` manifests.

KServe: the `InferenceService` for the stable revision and, while a candidate runs, the one that rolls it out
(`spec.predictor.canaryTrafficPercent`), the storage URI of each version from a template.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Any, Optional

import yaml

from flywheel import storage
from flywheel.rollout import models_config, state, store

KSERVE_API_VERSION = "serving.kserve.io/v1beta1"
DEFAULT_STORAGE_URI = "pvc://flywheel-serving/kserve/{model}-{version}"
_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
SHADOW_NOTE = ("KServe has no shadow mode: only the stable InferenceService is written; run the shadow with "
               "`flywheel serve`")
TF_SERVING_NOTE = ("TF Serving: run with --model_config_file and --allow_version_labels_for_unavailable_models "
                   "(a label may name a version still loading)")


def storage_uri(template: str, model: str, version: int) -> str:
    """A version's storage URI: `{model}` and `{version}` in the template are replaced; without `{version}`,
    `/<version>` is appended."""
    if "{version}" not in template:
        template = template.rstrip("/") + "/{version}"
    return template.format(model=model, version=version)


def _service(model: str, uri: str, rollout: state.RolloutState, canary_percent: Optional[int]) -> dict[str, Any]:
    predictor: dict[str, Any] = {"model": {"modelFormat": {"name": "tensorflow"}, "storageUri": uri}}
    if canary_percent is not None:
        predictor = {"canaryTrafficPercent": canary_percent, **predictor}
    annotations = {"flywheel/rollout-generation": str(rollout.generation), "flywheel/stable": str(rollout.stable)}
    if rollout.candidate is not None:
        annotations.update({"flywheel/candidate": str(rollout.candidate), "flywheel/mode": rollout.mode})
    return {"apiVersion": KSERVE_API_VERSION, "kind": "InferenceService",
            "metadata": {"name": model, "annotations": annotations}, "spec": {"predictor": predictor}}


def kserve_manifests(rollout: state.RolloutState, template: str = DEFAULT_STORAGE_URI) -> dict[str, dict[str, Any]]:
    """{file name: InferenceService} for a state: `<model>-stable.yaml` (the stable version, all traffic) and,
    while a canary or blue/green rollout runs, `<model>-candidate.yaml` (the candidate with canaryTrafficPercent:
    the canary's percent, 100 for blue/green). KServe has no shadow mode: a shadow rollout gets the stable
    manifest only. KServe's canaryTrafficPercent is a whole number: a fractional canary percent is refused."""
    model = rollout.model
    if not _DNS_LABEL.match(model) or len(model) > 63:
        raise state.RolloutError(f"rollout manifests: model name {model!r}: expected a Kubernetes name "
                                 "(lower-case letters, digits and '-', starting with a letter, at most 63)")
    out = {f"{model}-stable.yaml": _service(model, storage_uri(template, model, rollout.stable), rollout, None)}
    if rollout.running and rollout.mode != state.SHADOW:
        if rollout.percent != int(rollout.percent):
            raise state.RolloutError(f"rollout manifests: canary percent {rollout.percent:g}: KServe's "
                                     "canaryTrafficPercent is a whole number; start the rollout with one")
        out[f"{model}-candidate.yaml"] = _service(model, storage_uri(template, model, rollout.candidate), rollout,
                                                  int(rollout.percent))
    return out


@dataclasses.dataclass(frozen=True)
class Written:
    """The manifest files written (models.config first) and what they do not cover (notes)."""

    files: list[str]
    notes: list[str]


def write(serving_dir: str, model: str, output: str, template: str = DEFAULT_STORAGE_URI) -> Written:
    """Writes `models.config` (every model of serving_dir) and the model's KServe InferenceServices into `output`.
    RolloutError when the model has no rollout state; KeyError or IndexError from a template naming a field other
    than {model} and {version}."""
    found = store.load(serving_dir, model)
    if found is None:
        raise state.RolloutError(f"rollout manifests: {model} has no rollout state in {serving_dir} (start a "
                                 "rollout first)")
    services = kserve_manifests(found, template)
    config = store.models_config_text(serving_dir)
    storage.makedirs(output)
    files = [os.path.join(output, models_config.FILE_NAME)]
    storage.write_text(files[0], config)
    for name, service in services.items():
        files.append(os.path.join(output, name))
        storage.write_text(files[-1], yaml.safe_dump(service, sort_keys=False))
    notes = [SHADOW_NOTE] if found.mode == state.SHADOW else []
    return Written(files=files, notes=notes + [TF_SERVING_NOTE])
