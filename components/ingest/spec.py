"""Ingest's keys and ComponentSpec: the one place their names are written."""

from tfx.types import standard_artifacts
from tfx.types.artifact import Artifact
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from flywheel.components.monitor.spec import PROFILE_KEY, DataProfile

# Inputs
SCHEMA_KEY = "schema"
# Outputs
EXAMPLES_KEY = "examples"
QUARANTINE_KEY = "quarantine"
# PROFILE_KEY ("profile", a flywheel.DataProfile) is the monitor's: per-span profiles of the raw rows.
# Execution properties
INPUT_BASE_KEY = "input_base"
SPAN_KEY = "span"
NUM_SPANS_KEY = "num_spans"
SPLIT_KEY_COLUMNS_KEY = "split_key_columns"
SPLITS_KEY = "splits"
QUARANTINE_LIMIT_KEY = "quarantine_limit"
# The fingerprint the data must have ('' or absent: any), e.g. the one a continuous-training decision read.
EXPECTED_FINGERPRINT_KEY = "expected_fingerprint"
# Written by the driver: the resolved input, so that changed data is a new execution.
INPUT_FINGERPRINT_KEY = "input_fingerprint"
RESOLVED_INPUT_KEY = "resolved_input"

# Custom properties recorded on the outputs
ROWS_READ = "rows_read"
ROWS_WRITTEN = "rows_written"
ROWS_QUARANTINED = "rows_quarantined"
PHYSICAL_ROWS = "physical_rows"  # data rows the files hold, counted apart from the parser
FINGERPRINT = "data_fingerprint"
SPANS = "spans"
INPUT_FILES = "input_files"

QUARANTINE_FILE = "quarantine.jsonl"
COUNTS_FILE = "counts.json"
FAILED_QUARANTINE_DIR = "quarantine_failed"


class Quarantine(Artifact):
    """Rows that did not parse, one JSON object a line: file, line, column, reason, raw."""

    TYPE_NAME = "flywheel.Quarantine"


class IngestSpec(ComponentSpec):
    PARAMETERS = {
        INPUT_BASE_KEY: ExecutionParameter(type=str),
        SPAN_KEY: ExecutionParameter(type=int),
        NUM_SPANS_KEY: ExecutionParameter(type=int),
        SPLIT_KEY_COLUMNS_KEY: ExecutionParameter(type=str),
        SPLITS_KEY: ExecutionParameter(type=str),
        QUARANTINE_LIMIT_KEY: ExecutionParameter(type=float),
        EXPECTED_FINGERPRINT_KEY: ExecutionParameter(type=str, optional=True),
        INPUT_FINGERPRINT_KEY: ExecutionParameter(type=str, optional=True),
        RESOLVED_INPUT_KEY: ExecutionParameter(type=str, optional=True),
    }
    INPUTS = {SCHEMA_KEY: ChannelParameter(type=standard_artifacts.Schema)}
    OUTPUTS = {
        EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples),
        QUARANTINE_KEY: ChannelParameter(type=Quarantine),
        PROFILE_KEY: ChannelParameter(type=DataProfile),
    }
