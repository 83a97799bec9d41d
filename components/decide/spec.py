"""Decide's keys and its decision artifact type."""

from tfx.types.artifact import Artifact

# Outputs
DECISION_KEY = "decision"
REPORT_HTML_KEY = "report_html"  # system.HTML: the drift report (or the decision, when drift was not checked)
SUMMARY_KEY = "summary"  # system.Markdown: the decision and the drift table
SPAN_KEY = "span"  # Integer: the newest span (Ingest's `span`)
FINGERPRINT_KEY = "fingerprint"  # String: the training window's data fingerprint (Ingest checks it)
SERVING_VERSION_KEY = "serving_version"  # Integer: the version in serving now, 0 when none (Evaluate, Push)
# Execution properties
DATA_ROOT_KEY = "data_root"
SERVING_DIR_KEY = "serving_dir"
MODEL_NAME_KEY = "model_name"
WINDOW_KEY = "window"
IF_DRIFT_KEY = "if_drift"
SCHEMA_PATH_KEY = "schema_path"

# Custom properties of the decision (and keys of decision.json)
RETRAIN = "retrain"  # 1/0: what tfx.dsl.Cond tests
VERDICT = "verdict"  # retrain | no_drift | nothing_new
REASON = "reason"
NEW_DATA = "new_data"
DRIFT_DETECTED = "drift_detected"  # 1/0; absent when not checked or no baseline
SPANS = "spans"  # "1,2,3": the training window
SERVING_VERSION = "serving_version"
REPORT = "report"  # the drift report's path, when one was written

DECISION_FILE = "decision.json"


class RetrainDecision(Artifact):
    """decision.json (+ the drift report under span-N/); `retrain` (1/0) is a custom property for tfx.dsl.Cond."""

    TYPE_NAME = "flywheel.RetrainDecision"
