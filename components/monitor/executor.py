"""DriftMonitor's execution: the newest span's profile (written by Ingest) against the baseline profile."""

from __future__ import annotations

import json
import os

from tfx import types
from tfx.dsl.io import fileio

from flywheel.components.monitor import drift, monitor, profile, report, spec


def run_drift_monitor(data_profile: types.Artifact, drift_report: types.Artifact, baseline_profile: str,
                      schema_path: str = "") -> dict:
    profiles = profile.read_span_profiles(data_profile.uri)
    newest = max(profiles)
    fileio.makedirs(drift_report.uri)
    if not baseline_profile or not fileio.exists(baseline_profile):
        result = {"drift_detected": True, "reason": "no baseline: no model in serving yet", "span": int(newest)}
    else:
        with fileio.open(baseline_profile, "r") as f:
            base = profile.DatasetProfile.from_json(f.read(), baseline_profile)
        cur = profiles[newest]
        result = drift.compare(base, cur, *monitor.thresholds(schema_path))
        result.update(span=int(newest), baseline=baseline_profile,
                      reason="drift in " + ", ".join(k for k, v in result["features"].items() if v["drift"])
                      if result["drift_detected"] else "no drift")
        with fileio.open(os.path.join(drift_report.uri, spec.REPORT_FILE), "w") as f:
            f.write(report.render(result))
        drift_report.set_string_custom_property("report", os.path.join(drift_report.uri, spec.REPORT_FILE))
    with fileio.open(os.path.join(drift_report.uri, spec.RESULT_FILE), "w") as f:
        f.write(json.dumps(result, indent=2))
    drift_report.set_int_custom_property(spec.DRIFT_DETECTED, int(result["drift_detected"]))
    drift_report.set_string_custom_property(spec.REASON, result["reason"])
    drift_report.set_int_custom_property("span", int(newest))
    return result
