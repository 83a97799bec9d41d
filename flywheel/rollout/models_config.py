"""TF Serving's model config, `<serving_dir>/models.config` (a ModelServerConfig text proto, `--model_config_file`):
the mirror of every model's rollout state, rendered here (pure) and written by `flywheel.rollout.store`.

A model with a rollout state loads exactly its stable (and candidate) versions
(`model_version_policy { specific { ... } }`) with the version labels `stable` and `canary`; a model without one
keeps TF Serving's default policy (the latest version). TF Serving refuses a label on a version it has not loaded
yet unless it runs with `--allow_version_labels_for_unavailable_models`.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

from flywheel.rollout import state

FILE_NAME = "models.config"


@dataclasses.dataclass(frozen=True)
class Model:
    """One model folder of the serving folder: its name, the path TF Serving loads it from, its rollout state."""

    name: str
    base_path: str
    rollout: Optional[state.RolloutState]


def render(models: Sequence[Model]) -> str:
    """The ModelServerConfig text proto for these models, in their order."""
    lines = ["# TF Serving model config (--model_config_file), written by flywheel from each model's rollout.json.",
             "model_config_list {"]
    for model in models:
        lines += ["  config {", f'    name: "{model.name}"', f'    base_path: "{model.base_path}"',
                  '    model_platform: "tensorflow"']
        if model.rollout is None:
            lines.append("    model_version_policy { latest { num_versions: 1 } }")
        else:
            found = state.routes(model.rollout)
            versions = " ".join(f"versions: {v}" for v in found.load)
            lines.append(f"    model_version_policy {{ specific {{ {versions} }} }}")
            lines += [f'    version_labels {{ key: "{label}" value: {version} }}'
                      for label, version in found.labels.items()]
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"
