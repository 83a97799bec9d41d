"""Evaluate: the thin component class."""

from __future__ import annotations

from typing import Optional, Union

import tensorflow_model_analysis as tfma
from tfx import types
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.types import standard_artifacts
from tfx.utils import json_utils, proto_utils

from flywheel.components.evaluate import executor, spec


class Evaluate(base_beam_component.BaseBeamComponent):
    """TFMA evaluation of `model` on `examples`, against the latest model pushed to `serving_dir`.

    Args:
      examples: the Examples to evaluate on (`example_splits` of them).
      model: the candidate Model (Trainer output, Format-Serving).
      eval_config: a tfma.EvalConfig with one unnamed model spec; when a model is in serving it becomes the
        baseline (change thresholds apply), otherwise the absolute thresholds alone decide.
      serving_dir, model_name: where the model in serving is found, `<serving_dir>/<model_name>/<version>/`.
      schema: optional Schema channel for TFMA.
      example_splits: the splits evaluated, default ("eval",).
      serving_version: the latest version when the pipeline was built (0 none, -1 not known); it keys the
        cache only, so a changed serving folder is never answered by a cached evaluation.

    Outputs:
      evaluation: ModelEvaluation (TFMA output, `summary.json`, `report.html`); custom properties `metrics`,
        `auc`, `report`.
      blessing: ModelBlessing with `blessed` (1/0) and `baseline_version`, as the stock Evaluator writes it.
    """

    SPEC_CLASS = spec.EvaluateSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(self, examples: types.BaseChannel, model: types.BaseChannel, eval_config: tfma.EvalConfig,
                 serving_dir: Union[str, types.Property], model_name: str,
                 schema: Optional[types.BaseChannel] = None, example_splits: tuple[str, ...] = ("eval",),
                 serving_version: int = -1):
        if len(eval_config.model_specs) != 1 or eval_config.model_specs[0].name:
            raise ValueError("Evaluate: eval_config must hold exactly one unnamed model spec (the baseline is "
                             f"added from serving); got {[m.name for m in eval_config.model_specs]}")
        if not isinstance(model_name, str) or not model_name or "/" in model_name:
            raise ValueError(f"Evaluate: model_name: expected a non-empty name without '/', got {model_name!r}")
        if isinstance(serving_dir, str) and not serving_dir:
            raise ValueError("Evaluate: serving_dir: expected the serving folder (or a runtime parameter), got ''")
        if isinstance(example_splits, str) or not example_splits:
            raise ValueError(f"Evaluate: example_splits: expected a non-empty tuple of split names, "
                             f"got {example_splits!r}")
        super().__init__(spec.EvaluateSpec(
            examples=examples, model=model, schema=schema,
            eval_config=proto_utils.proto_to_json(eval_config),
            example_splits=json_utils.dumps(list(example_splits)),
            serving_dir=serving_dir, model_name=model_name, serving_version=serving_version,
            evaluation=types.Channel(type=standard_artifacts.ModelEvaluation),
            blessing=types.Channel(type=standard_artifacts.ModelBlessing),
        ))
