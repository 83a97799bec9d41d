"""DriftMonitor's execution: the newest span's profile (written by Ingest) against the baseline profile."""

from __future__ import annotations

from typing import Optional

from tfx import types

from flywheel import storage
from flywheel.components.common import ui_artifacts
from flywheel.components.monitor import spec
from flywheel.monitoring import monitor, profile, report


def record(drift_report: types.Artifact, result: dict) -> None:
    """The verdict as custom properties: `retrain` (1 on drift or no baseline) guards training in tfx.dsl.Cond."""
    drift_report.set_int_custom_property(spec.RETRAIN, int(result[spec.DRIFT_DETECTED] is not False))
    if result[spec.DRIFT_DETECTED] is not None:
        drift_report.set_int_custom_property(spec.DRIFT_DETECTED, int(result[spec.DRIFT_DETECTED]))
    drift_report.set_string_custom_property(spec.REASON, result[spec.REASON])
    drift_report.set_string_custom_property(spec.REPORT, result[spec.REPORT])
    drift_report.set_int_custom_property(spec.SPAN, result[spec.SPAN])


def run_drift_monitor(data_profile: types.Artifact, drift_report: types.Artifact, baseline_profile: str,
                      schema_path: str = "", report_html: Optional[types.Artifact] = None,
                      summary: Optional[types.Artifact] = None) -> dict:
    """Decides and records the verdict; with report_html and summary, also the two artifacts the KFP UI shows."""
    profiles = profile.read_span_profiles(data_profile.uri)
    newest = max(profiles)
    baseline, why = monitor.load_baseline(baseline_profile)
    result = monitor.check(baseline, profiles[newest], schema_path, why, drift_report.uri,
                           extra={spec.SPAN: int(newest)})
    record(drift_report, result)
    if report_html is not None or summary is not None:
        write_ui_artifacts(result, report_html, summary)
    return result


def write_ui_artifacts(verdict: dict, html_artifact: types.Artifact, markdown_artifact: types.Artifact) -> None:
    """The drift report as the two artifacts the KFP UI shows: the HTML report `monitor.check` wrote (at
    verdict["report"], with its charts) into a system.HTML artifact, and `report.render_markdown(verdict)` into
    a system.Markdown one. `verdict` is what `monitor.check(..., report_dir=...)` returned."""
    if not verdict.get("report"):
        raise ValueError("drift monitor: the verdict has no HTML report to show (monitor.check was called without "
                         f"report_dir); reason {verdict.get('reason')!r}")
    ui_artifacts.write_html(html_artifact, storage.read_text(verdict["report"]))
    ui_artifacts.write_markdown(markdown_artifact, report.render_markdown(verdict))
