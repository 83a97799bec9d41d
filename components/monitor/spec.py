"""DriftMonitor's keys and its report artifact type."""

from tfx.types.artifact import Artifact

EXAMPLES_KEY = "examples"
REPORT_KEY = "drift_report"
BASELINE_PROFILE_KEY = "baseline_profile"

DRIFT_DETECTED = "drift_detected"
REASON = "reason"
REPORT_FILE = "report.html"
RESULT_FILE = "drift.json"


class DriftReport(Artifact):
    """drift.json + report.html; `drift_detected` (1/0) is a custom property usable in tfx.dsl.Cond."""

    TYPE_NAME = "flywheel.DriftReport"
