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


class DataProfile(Artifact):
    """Per-span profiles of raw rows (what the drift checks need): one `profile-span-<N>.json` per span.

    Written by Ingest; read by DriftMonitor (the newest span vs the serving model's baseline) and Push (the
    training window, merged, kept beside the model as its baseline). Custom property `spans`: "1,2,3".
    """

    TYPE_NAME = "flywheel.DataProfile"


PROFILE_KEY = "profile"
SPANS = "spans"


def profile_file(span: int) -> str:
    return f"profile-span-{span}.json"
