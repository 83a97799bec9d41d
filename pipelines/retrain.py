"""The scheduled retraining job: newest span -> monitor -> (retrain -> evaluate -> push) when needed.

Shares create_pipeline and the output layout with `flywheel run`. A no-drift check with --if-drift
answers from the monitor library alone (no TensorFlow, no pipeline run): scheduled jobs run often
and mostly find nothing new. The orchestration (lock, plan, run, summary) is `flywheel.api.retrain`.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Optional

from flywheel.components.common import serving
from flywheel.components.ingest import inputs
from flywheel.components.monitor import monitor


@dataclasses.dataclass(frozen=True)
class RetrainPlan:
    """What the scheduled job decided before running anything.

    drift: `monitor.check`'s result (the same shape as `flywheel monitor` and the DriftMonitor's drift.json):
    `drift_detected` True/False, or None when there is no baseline (not drift: the first model is trained);
    `reason`; `report` (the HTML report's path, None without report_dir); `features`, `label_drift`, `rows`,
    and `data` (rows read and quarantined in the newest span, as Ingest types them).
    """

    span: int
    window: tuple[int, ...]
    baseline_profile: str  # '' when no model is in serving
    serving_version: Optional[int]
    drift: dict[str, Any]


def plan(data_root: str, serving_dir: str, model_name: str, window: int, schema_path: str = "",
         report_dir: Optional[str] = None) -> RetrainPlan:
    """Newest span, the training window, and the drift decision against the serving model's training profile.

    The newest span is profiled through Ingest's typed parsing: a bad cell quarantines its row (counted in
    drift["data"]) instead of failing the check. With report_dir, drift.json and report.html are written in
    its `span-<N>/` folder (N: the newest span), so each night's decision is kept.
    """
    spans = inputs.available_spans(data_root)
    if not spans:
        raise inputs.InputError(f"retrain: {data_root} has no span-N folders; the retraining job reads spans")
    newest = spans[-1]
    window_spans = tuple(s for s in spans if newest - window < s <= newest)
    served = serving.latest(serving_dir, model_name)
    baseline = ""
    if served is not None and served.manifest.get("baseline_profile"):
        baseline = os.path.join(served.path, served.manifest["baseline_profile"])
    absent = "no model in serving" if served is None else f"serving version {served.version} has no training profile"
    current, data = monitor.profile_span(data_root, newest, schema_path)
    base, why = monitor.load_baseline(baseline, absent)
    span_report_dir = os.path.join(report_dir, f"span-{newest}") if report_dir else None
    verdict = monitor.check(base, current, schema_path, why, span_report_dir, extra={"span": newest, "data": data})
    return RetrainPlan(newest, window_spans, baseline, served.version if served else None, verdict)


def summary_from_records(records: dict, span: int, serving_dir: str, model_name: str,
                         drift: dict[str, Any]) -> dict[str, Any]:
    """The job's answer from a retraining run's ML-Metadata records and the plan's drift decision.

    retrained: the Trainer executed in this run (COMPLETE), not a cache hit; model_version: the newest
    version in serving after the run.
    """
    from tfx.types import standard_component_specs as std

    from flywheel.components.evaluate import spec as evaluate_spec
    from flywheel.components.push import spec as push_spec

    trainer = records.get("Trainer")
    retrained = bool(trainer and trainer.state == "COMPLETE" and trainer.output(std.MODEL_KEY))
    evaluate = records.get("Evaluate")
    blessing = evaluate.output(evaluate_spec.BLESSING_KEY) if evaluate else None
    push = records.get("Push")
    pushed = push.output(push_spec.PUSHED_MODEL_KEY) if push else None
    served = serving.latest(serving_dir, model_name)
    return {
        "span": span,
        "drift_detected": drift.get("drift_detected"),
        "drift_reason": drift.get("reason"),
        "drift_report": drift.get("report"),
        "retrained": retrained,
        "blessed": bool(blessing.get(evaluate_spec.BLESSED)) if blessing else None,
        "pushed": bool(pushed.get(push_spec.PUSHED)) if pushed else False,
        "model_version": served.version if served else None,
    }
