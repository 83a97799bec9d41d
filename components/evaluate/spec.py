"""Evaluate's keys and ComponentSpec (the stock Evaluator's, plus where serving is)."""

from tfx.components.evaluator import constants as evaluator_constants
from tfx.types import standard_artifacts
from tfx.types import standard_component_specs as std
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from flywheel.components.common import ui_artifacts

EXAMPLES_KEY = std.EXAMPLES_KEY
MODEL_KEY = std.MODEL_KEY
SCHEMA_KEY = std.SCHEMA_KEY
EVALUATION_KEY = std.EVALUATION_KEY
BLESSING_KEY = std.BLESSING_KEY
REPORT_HTML_KEY = "report_html"  # report.html as a system.HTML artifact, which the KFP UI shows
SUMMARY_KEY = "summary"  # the verdict and why, as a system.Markdown artifact, which the KFP UI shows
EVAL_CONFIG_KEY = std.EVAL_CONFIG_KEY
EXAMPLE_SPLITS_KEY = std.EXAMPLE_SPLITS_KEY
SERVING_DIR_KEY = "serving_dir"
MODEL_NAME_KEY = "model_name"
SERVING_VERSION_KEY = "serving_version"

# Custom properties
BASELINE_VERSION = "baseline_version"
METRICS_JSON = "metrics"
REPORT = "report"  # path of report.html
AUC = "auc"  # the candidate's overall AUC
BLESSED = evaluator_constants.ARTIFACT_PROPERTY_BLESSED_KEY  # on the blessing, written as the stock Evaluator does
REPORT_FILE = "report.html"
SUMMARY_FILE = "summary.json"


class EvaluateSpec(ComponentSpec):
    PARAMETERS = {
        EVAL_CONFIG_KEY: ExecutionParameter(type=str),
        EXAMPLE_SPLITS_KEY: ExecutionParameter(type=str, optional=True),
        SERVING_DIR_KEY: ExecutionParameter(type=str),
        MODEL_NAME_KEY: ExecutionParameter(type=str),  # a str or a RuntimeParameter (a Kubeflow run parameter)
        # The latest serving version when the pipeline was built: part of the cache key only.
        SERVING_VERSION_KEY: ExecutionParameter(type=int, optional=True),
    }
    INPUTS = {
        EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples),
        MODEL_KEY: ChannelParameter(type=standard_artifacts.Model),
        SCHEMA_KEY: ChannelParameter(type=standard_artifacts.Schema, optional=True),
    }
    OUTPUTS = {
        EVALUATION_KEY: ChannelParameter(type=standard_artifacts.ModelEvaluation),
        BLESSING_KEY: ChannelParameter(type=standard_artifacts.ModelBlessing),
        REPORT_HTML_KEY: ChannelParameter(type=ui_artifacts.HTML),
        SUMMARY_KEY: ChannelParameter(type=ui_artifacts.Markdown),
    }
