"""Evaluate: the thin component class."""

from __future__ import annotations

from typing import Optional, Union

import tensorflow_model_analysis as tfma
from tfx import types
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.orchestration import data_types
from tfx.types import standard_artifacts
from tfx.utils import json_utils, proto_utils

from flywheel.components.common import ui_artifacts
from flywheel.components.evaluate import executor, spec


def _check_model_name_argument(model_name: object) -> None:
    """A str, or a str RuntimeParameter (a Kubeflow run parameter) whose default, if any, is a valid name."""
    if isinstance(model_name, data_types.RuntimeParameter):
        if model_name.ptype is not str:
            raise TypeError(f"Evaluate: model_name: expected a str runtime parameter, got {model_name.name!r} of "
                            f"type {model_name.ptype.__name__}")
        if model_name.default is not None:
            executor.check_model_name(model_name.default,
                                      f"Evaluate: model_name (runtime parameter {model_name.name!r}, its default)")
        return
    executor.check_model_name(model_name)


class Evaluate(base_beam_component.BaseBeamComponent):
    """TFMA evaluation of `model` on `examples`, against the latest model pushed to `serving_dir`.

    Args:
      examples: the Examples to evaluate on (`example_splits` of them).
      model: the candidate Model (Trainer output, Format-Serving).
      eval_config: a tfma.EvalConfig with one unnamed model spec; when a model is in serving it becomes the
        baseline (change thresholds apply), otherwise the absolute thresholds alone decide.
      serving_dir, model_name: where the model in serving is found, `<serving_dir>/<model_name>/<version>/`;
        either may be a RuntimeParameter (a Kubeflow run parameter), a str one for model_name, checked again
        when the executor runs.
      schema: optional Schema channel for TFMA.
      example_splits: the splits evaluated, default ("eval",).
      serving_version: the latest version when the pipeline was built (0 none, -1 not known); it keys the
        cache only, so a changed serving folder is never answered by a cached evaluation.

    Outputs:
      evaluation: ModelEvaluation (TFMA output, `summary.json`, `report.html`); custom properties `metrics`,
        `auc`, `report`.
      blessing: ModelBlessing with `blessed` (1/0) and `baseline_version`, as the stock Evaluator writes it.
      report_html: report.html as a system.HTML artifact (the file at its uri), shown in the KFP UI.
      summary: blessed or not and why, overall AUC against the thresholds, the baseline version and a slice
        table, as a system.Markdown artifact shown in the KFP UI.
    """

    SPEC_CLASS = spec.EvaluateSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(self, examples: types.BaseChannel, model: types.BaseChannel, eval_config: tfma.EvalConfig,
                 serving_dir: Union[str, types.Property], model_name: Union[str, data_types.RuntimeParameter],
                 schema: Optional[types.BaseChannel] = None, example_splits: tuple[str, ...] = ("eval",),
                 serving_version: int = -1):
        if len(eval_config.model_specs) != 1 or eval_config.model_specs[0].name:
            raise ValueError("Evaluate: eval_config must hold exactly one unnamed model spec (the baseline is "
                             f"added from serving); got {[m.name for m in eval_config.model_specs]}")
        _check_model_name_argument(model_name)
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
            report_html=types.Channel(type=ui_artifacts.HTML),
            summary=types.Channel(type=ui_artifacts.Markdown),
        ))
