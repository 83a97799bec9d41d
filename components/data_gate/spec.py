"""DataGate's keys and its verdict artifact type."""

from tfx.types.artifact import Artifact

ANOMALIES_KEY = "anomalies"
STATISTICS_KEY = "statistics"
VERDICT_KEY = "verdict"
REPORT_HTML_KEY = "report_html"  # the report as a system.HTML artifact, which the KFP UI shows
SUMMARY_KEY = "summary"  # verdict and anomalies as a system.Markdown artifact, which the KFP UI shows
ALLOWED_ANOMALIES_KEY = "allowed_anomalies"

PASSED = "passed"
NUM_ANOMALIES = "num_anomalies"
NUM_BLOCKING = "num_blocking"
REPORT = "report"  # path of report.html
GATE = "gate"  # which gate decided ("data_validation")
REPORT_FILE = "report.html"
VERDICT_FILE = "verdict.json"


class GateVerdict(Artifact):
    """A gate's decision; `passed` (1/0) is a custom property usable in tfx.dsl.Cond."""

    TYPE_NAME = "flywheel.GateVerdict"
