"""Evaluate's executor: find the serving model, let the stock TFMA Evaluator compare, summarize."""

from __future__ import annotations

import json
import os
from typing import Any, Optional

from tfx import types
from tfx.components.evaluator import executor as evaluator_executor
from tfx.dsl.io import fileio
from tfx.types import artifact_utils, standard_artifacts

from flywheel.components.common import ui_artifacts
from flywheel.components.evaluate import spec, tfma_summary
from flywheel.store import layout


def check_model_name(model_name: object, where: str = "Evaluate: model_name") -> None:
    """A model name becomes a folder under the serving dir: a non-empty str without '/'."""
    if not isinstance(model_name, str) or not model_name or "/" in model_name:
        raise ValueError(f"{where}: expected a non-empty name without '/', got {model_name!r}")


def baseline_from_serving(serving_dir: str, model_name: str, work_dir: str
                          ) -> tuple[Optional[types.Artifact], Optional[int]]:
    """A Model artifact holding a copy of the SavedModel served by default (`layout.current`: the newest pushed
    one, or the stable version of a rollout), or None, None if none."""
    served = layout.current(serving_dir, model_name)
    if served is None:
        return None, None
    baseline = standard_artifacts.Model()
    baseline.uri = os.path.join(work_dir, "baseline_model")
    target = os.path.join(baseline.uri, "Format-Serving")
    if fileio.exists(baseline.uri):
        fileio.rmtree(baseline.uri)
    _copy_tree(served.path, target)
    baseline.set_int_custom_property(spec.SERVING_VERSION_KEY, served.version)
    return baseline, served.version


def _copy_tree(src: str, dst: str) -> None:
    fileio.makedirs(dst)
    for name in fileio.listdir(src):
        name = name.rstrip("/")
        s, d = os.path.join(src, name), os.path.join(dst, name)
        if fileio.isdir(s):
            _copy_tree(s, d)
        else:
            fileio.copy(s, d, overwrite=True)


def thresholds_of(eval_config_json: str) -> dict[str, Any]:
    config = json.loads(eval_config_json)
    out = {}
    for metrics_spec in config.get("metricsSpecs", config.get("metrics_specs", [])):
        for metric in metrics_spec.get("metrics", []):
            name = metric.get("className", metric.get("class_name"))
            if "threshold" in metric:
                out[name] = metric["threshold"]
            for per_slice in metric.get("perSliceThresholds", metric.get("per_slice_thresholds", [])):
                out[name] = per_slice["threshold"]
    return out


def record(evaluation: types.Artifact, blessing: types.Artifact, summary: dict[str, Any],
           report_html: Optional[types.Artifact] = None, markdown: Optional[types.Artifact] = None) -> None:
    """summary.json, report.html and the custom properties; the report again as report_html and a Markdown
    summary as markdown (the artifacts the KFP UI shows), when given."""
    fileio.makedirs(evaluation.uri)
    with fileio.open(os.path.join(evaluation.uri, spec.SUMMARY_FILE), "w") as f:
        f.write(json.dumps(summary, indent=2, default=str))
    html = tfma_summary.render(summary)
    with fileio.open(os.path.join(evaluation.uri, spec.REPORT_FILE), "w") as f:
        f.write(html)
    if report_html is not None:
        ui_artifacts.write_html(report_html, html)
    if markdown is not None:
        ui_artifacts.write_markdown(markdown, tfma_summary.render_markdown(summary))
    evaluation.set_string_custom_property(spec.METRICS_JSON, json.dumps(summary["candidate"]))
    evaluation.set_string_custom_property(spec.REPORT, os.path.join(evaluation.uri, spec.REPORT_FILE))
    for target in (evaluation, blessing):
        target.set_int_custom_property(spec.BASELINE_VERSION, summary["baseline_version"] or 0)
    if summary["candidate"].get(tfma_summary.AUC) is not None:
        evaluation.set_float_custom_property(spec.AUC, summary["candidate"][tfma_summary.AUC])


def forget_baseline_model_id(blessing: types.Artifact) -> None:
    """Drops the `baseline_model_id` TFX's Evaluator records: our baseline is the serving folder's model, not an
    ML-Metadata artifact, so the id is 0, and TFX's Kubeflow entrypoint, which looks that id up to rename it
    (`refactor_model_blessing`), fails with KeyError. The baseline's version is recorded as `baseline_version`."""
    blessing.mlmd_artifact.custom_properties.pop("baseline_model_id", None)


class Executor(evaluator_executor.Executor):
    def Do(self, input_dict: dict[str, list[types.Artifact]], output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict[str, Any]) -> None:
        check_model_name(exec_properties[spec.MODEL_NAME_KEY])  # a run parameter is known only now
        baseline, version = baseline_from_serving(exec_properties[spec.SERVING_DIR_KEY],
                                                  exec_properties[spec.MODEL_NAME_KEY], self._get_tmp_dir())
        inputs = dict(input_dict)
        if baseline is not None:
            inputs["baseline_model"] = [baseline]
        eval_config = tfma_summary.with_report_metrics(exec_properties[spec.EVAL_CONFIG_KEY])
        super().Do(inputs, output_dict, {**exec_properties, spec.EVAL_CONFIG_KEY: eval_config})
        evaluation = artifact_utils.get_single_instance(output_dict[spec.EVALUATION_KEY])
        blessing = artifact_utils.get_single_instance(output_dict[spec.BLESSING_KEY])
        forget_baseline_model_id(blessing)
        summary = tfma_summary.build_summary(evaluation.uri, thresholds_of(eval_config), version, eval_config)
        record(evaluation, blessing, summary, artifact_utils.get_single_instance(output_dict[spec.REPORT_HTML_KEY]),
               artifact_utils.get_single_instance(output_dict[spec.SUMMARY_KEY]))
