"""Decide's execution: `flywheel.retraining.plan` (the decision `flywheel retrain` takes), recorded."""

from __future__ import annotations

import json
import os
from typing import Any

from tfx import types

from flywheel import retraining, storage
from flywheel.components.common import ui_artifacts
from flywheel.components.decide import spec
from flywheel.monitoring import report
from flywheel.reports import html_report


def decision_record(plan: retraining.RetrainPlan) -> dict[str, Any]:
    """decision.json: the verdict, why, and what the training branch reads."""
    drift = plan.drift_decision
    return {
        spec.RETRAIN: plan.retrain,
        spec.VERDICT: plan.verdict,
        spec.REASON: plan.reason,
        spec.NEW_DATA: plan.new_data,
        spec.DRIFT_DETECTED: drift["drift_detected"],
        "drift_reason": drift["reason"],
        spec.REPORT: drift.get("report"),
        "span": plan.span,
        "window": list(plan.window),
        "fingerprint": plan.fingerprint,
        spec.SERVING_VERSION: plan.serving_version,
        "baseline_profile": plan.baseline_profile,
    }


def record(decision: types.Artifact, result: dict[str, Any]) -> None:
    """The decision as custom properties; `retrain` (1/0) is what the training branch's condition tests."""
    decision.set_int_custom_property(spec.RETRAIN, int(result[spec.RETRAIN]))
    decision.set_string_custom_property(spec.VERDICT, result[spec.VERDICT])
    decision.set_string_custom_property(spec.REASON, result[spec.REASON])
    decision.set_int_custom_property(spec.NEW_DATA, int(result[spec.NEW_DATA]))
    if result[spec.DRIFT_DETECTED] is not None:
        decision.set_int_custom_property(spec.DRIFT_DETECTED, int(result[spec.DRIFT_DETECTED]))
    decision.set_string_custom_property(spec.SPANS, ",".join(str(s) for s in result["window"]))
    decision.set_int_custom_property(spec.SERVING_VERSION, result[spec.SERVING_VERSION] or 0)
    if result[spec.REPORT]:
        decision.set_string_custom_property(spec.REPORT, result[spec.REPORT])


def render_markdown(plan: retraining.RetrainPlan) -> str:
    """The decision for the KFP UI: verdict and reason, then the drift monitor's table when it was checked."""
    word = {retraining.RETRAIN: "retrain", retraining.NO_DRIFT: "no retraining (no drift)",
            retraining.NOTHING_NEW: "no retraining (nothing new)"}[plan.verdict]
    served = f"version {plan.serving_version}" if plan.serving_version is not None else "no model"
    lines = [f"# Continuous training: {word}", "", plan.reason + ".", "",
             f"Newest span {plan.span}; training window {list(plan.window)}; in serving: {served}.", ""]
    if plan.drift.get("features") is not None or plan.drift.get("rows"):
        lines.append(report.render_markdown(plan.drift_decision))
    return "\n".join(lines)


def render_html(plan: retraining.RetrainPlan) -> str:
    """The drift report (with its charts) when drift was checked; otherwise a page with the decision."""
    if plan.drift.get("report"):
        return storage.read_text(plan.drift["report"])
    served = f"version {plan.serving_version}" if plan.serving_version is not None else "no model"
    body = html_report.table(["verdict", "reason", "newest span", "training window", "in serving"],
                             [(plan.verdict, plan.reason, plan.span, list(plan.window), served)])
    return html_report.page("Continuous-training decision", [html_report.card("Decision", body)])


def run_decide(decision: types.Artifact, span: types.Artifact, fingerprint: types.Artifact,
               serving_version: types.Artifact, data_root: str, serving_dir: str, model_name: str, window: int,
               if_drift: bool, schema_path: str, report_html: types.Artifact | None = None,
               summary: types.Artifact | None = None) -> dict[str, Any]:
    plan = retraining.plan(data_root, serving_dir, model_name, window, schema_path, report_dir=decision.uri,
                        if_drift=if_drift)
    result = decision_record(plan)
    storage.makedirs(decision.uri)
    storage.write_text(os.path.join(decision.uri, spec.DECISION_FILE), json.dumps(result, indent=2))
    record(decision, result)
    if report_html is not None:
        ui_artifacts.write_html(report_html, render_html(plan))
    if summary is not None:
        ui_artifacts.write_markdown(summary, render_markdown(plan))
    span.value = plan.span
    fingerprint.value = plan.fingerprint
    serving_version.value = plan.serving_version or 0
    return result
