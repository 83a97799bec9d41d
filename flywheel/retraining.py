"""The continuous-training decision: newest span -> new data? drifted? -> retrain, or not.

One decision, `plan`, for both places it is taken: the scheduled job (`flywheel retrain`, orchestrated by
`flywheel.api.retraining.retrain` with `flywheel.pipelines.retrain`) and the head of the compiled Kubeflow
pipeline (the `Decide` component). It answers from the data's fingerprint, the serving model's push.json and the monitor
library alone (no TensorFlow, no pipeline run): scheduled jobs run often and mostly find nothing new.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Optional

from flywheel.data import inputs
from flywheel.monitoring import monitor
from flywheel.store import layout

RETRAIN, NO_DRIFT, NOTHING_NEW = "retrain", "no_drift", "nothing_new"


@dataclasses.dataclass(frozen=True)
class RetrainPlan:
    """What the continuous-training decision found before running anything.

    drift: `monitor.check`'s result (the same shape as `flywheel monitor` and the DriftMonitor's drift.json):
    `drift_detected` True/False, or None when there is no baseline (not drift: the first model is trained);
    `reason`; `report` (the HTML report's path, None without report_dir); `features`, `label_drift`, `rows`,
    and `data` (rows read and quarantined in the newest span, as Ingest types them). When the serving model was
    trained on exactly this data, drift is not checked (`drift_detected` None, the reason says so).
    fingerprint: the training window's data fingerprint, as Ingest computes it for (span, len(window)); new_data
    is False when it equals the serving model's `data_fingerprint` (push.json).
    """

    span: int
    window: tuple[int, ...]
    baseline_profile: str  # '' when no model is in serving
    serving_version: Optional[int]
    drift: dict[str, Any]
    fingerprint: str = ""
    new_data: bool = True
    if_drift: bool = False

    @property
    def drift_decision(self) -> dict[str, Any]:
        """The drift verdict, with drift_detected None (not drift) when there is no baseline."""
        drift = dict(self.drift)
        if self.new_data and not self.baseline_profile:
            reason = str(drift.get("reason") or "")
            drift["drift_detected"] = None
            drift["reason"] = reason if reason.startswith("no baseline") else f"no baseline ({reason})"
        drift.setdefault("report", None)
        return drift

    @property
    def verdict(self) -> str:
        """nothing_new (serving was trained on this data), no_drift (if_drift and none found) or retrain."""
        if not self.new_data:
            return NOTHING_NEW
        if self.if_drift and self.drift_decision["drift_detected"] is False:
            return NO_DRIFT
        return RETRAIN

    @property
    def retrain(self) -> bool:
        return self.verdict == RETRAIN

    @property
    def reason(self) -> str:
        """The decision in words."""
        drift = self.drift_decision
        if self.verdict == NOTHING_NEW:
            return drift["reason"]
        if self.verdict == NO_DRIFT:
            return f"new data in span {self.span} did not drift ({drift['reason']}): serving keeps version " \
                   f"{self.serving_version}"
        why = {None: "no baseline", True: "drift", False: "new data"}[drift["drift_detected"]]
        return f"retrain on spans {', '.join(map(str, self.window))}: {why} ({drift['reason']})"


def plan(data_root: str, serving_dir: str, model_name: str, window: int, schema_path: str = "",
         report_dir: Optional[str] = None, if_drift: bool = False) -> RetrainPlan:
    """Newest span, the training window, whether it is new data, and the drift decision against the serving
    model's training profile. `.retrain` / `.verdict` / `.reason` are the decision.

    A folder without span-N folders is span 0. The newest span is profiled through Ingest's typed parsing: a
    bad cell quarantines its row (counted in drift["data"]) instead of failing the check. With report_dir,
    drift.json and report.html are written in its `span-<N>/` folder (N: the newest span), so each night's
    decision is kept.
    """
    if window < 1:
        raise inputs.InputError(f"retrain: window: expected >= 1 span, got {window}")
    resolved = inputs.resolve_input(data_root, -1, window)
    newest = max(resolved.spans)
    served = layout.current(serving_dir, model_name)
    version = served.version if served else None
    baseline = ""
    if served is not None and served.manifest.get("baseline_profile"):
        baseline = os.path.join(served.path, served.manifest["baseline_profile"])
    if served is not None and served.manifest.get("data_fingerprint") == resolved.fingerprint:
        reason = (f"nothing new: serving version {version} was trained on spans {', '.join(map(str, resolved.spans))} "
                  f"(data fingerprint {resolved.fingerprint[:12]})")
        return RetrainPlan(newest, resolved.spans, baseline, version,
                           {"drift_detected": None, "reason": reason, "report": None, "span": newest},
                           resolved.fingerprint, False, if_drift)
    absent = "no model in serving" if served is None else f"serving version {version} has no training profile"
    current, data = monitor.profile_span(data_root, newest, schema_path)
    base, why = monitor.load_baseline(baseline, absent)
    span_report_dir = os.path.join(report_dir, f"span-{newest}") if report_dir else None
    verdict = monitor.check(base, current, schema_path, why, span_report_dir, extra={"span": newest, "data": data})
    return RetrainPlan(newest, resolved.spans, baseline, version, verdict, resolved.fingerprint, True, if_drift)
