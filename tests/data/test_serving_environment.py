"""The "not in SERVING" label rule (`parsing.in_serving`), and the two that apply it: batch inference's optional
columns and the drift monitor's label columns."""

from __future__ import annotations

import pytest
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2

from flywheel import schemas
from flywheel.batch import rows
from flywheel.data import parsing
from flywheel.monitoring import drift

SCHEMA = """
feature { name: "fare" type: FLOAT presence { min_fraction: 1.0 } }
feature { name: "tips" type: FLOAT presence { min_fraction: 1.0 } not_in_environment: "SERVING" }
feature { name: "big_tipper" type: INT in_environment: "TRAINING" }
feature { name: "hour" type: INT presence { min_fraction: 1.0 } in_environment: "TRAINING"
          in_environment: "SERVING" }
feature { name: "company" type: BYTES not_in_environment: "TRAINING" }
"""


def _schema(tmp_path) -> str:
    path = tmp_path / "schema.pbtxt"
    path.write_text(SCHEMA)
    return str(path)


@pytest.mark.parametrize("feature, served", [
    ('name: "x" type: INT', True),
    ('name: "x" type: INT not_in_environment: "SERVING"', False),
    ('name: "x" type: INT in_environment: "TRAINING"', False),
    ('name: "x" type: INT in_environment: "TRAINING" in_environment: "SERVING"', True),
    ('name: "x" type: INT not_in_environment: "TRAINING"', True),
    ('name: "x" type: INT in_environment: "SERVING" not_in_environment: "SERVING"', False),
])
def test_a_feature_is_in_serving_unless_an_environment_rule_leaves_it_out(feature, served):
    assert parsing.in_serving(text_format.Parse(feature, schema_pb2.Feature())) is served


def test_label_names_are_the_features_not_in_serving_in_schema_order(tmp_path):
    assert parsing.label_names(parsing.load_schema(_schema(tmp_path))) == ("tips", "big_tipper")


def test_batch_inference_and_the_monitor_read_the_same_labels(tmp_path):
    path = _schema(tmp_path)
    optional = {c.name for c in rows.serving_columns(parsing.load_schema(path)) if not c.required}
    assert optional == {"tips", "big_tipper", "company"}  # company: not required by its presence anyway
    policy = drift.Policy.from_schema(path)
    assert policy.labels == ("tips", "big_tipper") and policy.features == ("fare", "hour", "company")


def test_the_taxi_schemas_label_is_its_only_feature_not_in_serving():
    schema = parsing.load_schema(schemas.schema_path("taxi"))
    assert parsing.label_names(schema) == drift.Policy.from_schema(schemas.schema_path("taxi")).labels == ("tips",)
