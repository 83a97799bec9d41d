"""DriftMonitor's keys and its artifact types (the report, and the per-span data profiles Ingest writes)."""

from tfx.types.artifact import Artifact

PROFILE_KEY = "profile"
REPORT_KEY = "drift_report"
REPORT_HTML_KEY = "report_html"  # report.html as a system.HTML artifact, which the KFP UI shows
SUMMARY_KEY = "summary"  # the verdict and the features as a system.Markdown artifact, which the KFP UI shows
BASELINE_PROFILE_KEY = "baseline_profile"
SCHEMA_PATH_KEY = "schema_path"

# Custom properties of the DriftReport (and keys of drift.json, `flywheel.monitoring.monitor.RESULT_FILE`)
RETRAIN = "retrain"  # 1 when drift was found or there is no baseline: what tfx.dsl.Cond tests
DRIFT_DETECTED = "drift_detected"  # 1/0; absent when there is no baseline (drift.json: null)
REASON = "reason"
REPORT = "report"
SPAN = "span"

SPANS = "spans"


class DriftReport(Artifact):
    """drift.json + report.html; `retrain` (1/0) is a custom property usable in tfx.dsl.Cond."""

    TYPE_NAME = "flywheel.DriftReport"


class DataProfile(Artifact):
    """Per-span profiles of the typed rows (what the drift checks need): one `profile-span-<N>.json` per span
    (`flywheel.monitoring.profile.profile_file`).

    Written by Ingest from within its Beam pipeline; read by DriftMonitor (the newest span vs the serving
    model's baseline) and Push (the training window, merged exactly, kept beside the model as its baseline).
    Custom property `spans`: "1,2,3".
    """

    TYPE_NAME = "flywheel.DataProfile"
