"""Rows for batch inference: the serving columns, the tf.Examples the model reads, the scores read back."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2
from tfx_bsl.coders import example_coder

from flywheel.batch import model_version, rows
from flywheel.components.ingest.beam_ingest import _to_example
from flywheel.data import parsing
from flywheel.schemas import schema_path

COLUMNS = (parsing.Column("fare", parsing.FLOAT, True), parsing.Column("hour", parsing.INT, True),
           parsing.Column("payment", parsing.BYTES, True), parsing.Column("company", parsing.BYTES, False),
           parsing.Column("tips", parsing.FLOAT, False))


def _features(serialized: bytes) -> dict:
    """{name: values} of a tf.Example; a feature with no values counts as absent (parse_example reads both so)."""
    example = tf.train.Example.FromString(serialized)
    found = {}
    for name, feature in example.features.feature.items():
        kind = feature.WhichOneof("kind")
        if kind and list(getattr(feature, kind).value):
            found[name] = list(getattr(feature, kind).value)
    return found


def test_the_label_is_optional_and_everything_else_keeps_its_presence():
    columns = {c.name: c for c in rows.serving_columns(parsing.load_schema(schema_path("taxi")))}
    assert columns["tips"].required is False
    assert columns["fare"].required is True and columns["trip_start_hour"].required is True
    assert columns["company"].required is False


def test_examples_carry_the_values_ingest_writes():
    typed = [{"fare": 8.25, "hour": 14, "payment": b"Cash", "company": b"Flash Cab", "tips": 1.1},
             {"fare": 0.1, "hour": 3, "payment": "Crédit".encode()},
             {"fare": 1e-7, "hour": -2, "payment": b"", "tips": 3.3}]
    batch = rows.Batch(COLUMNS)
    for line, values in enumerate(typed, start=2):
        batch.add(values, line)
    record_batch = batch.record_batch()
    assert record_batch.column("company").to_pylist() == ["Flash Cab", None, None]
    assert batch.lines == [2, 3, 4] and "source_line" not in record_batch.schema.names, "the key is no model input"
    encoded = rows.to_examples(record_batch, example_coder.RecordBatchToExamplesEncoder())
    assert [_features(e) for e in encoded] == [_features(_to_example(values)) for values in typed]


def _log(values: np.ndarray) -> prediction_log_pb2.PredictionLog:
    log = prediction_log_pb2.PredictionLog()
    log.predict_log.response.outputs["outputs"].CopyFrom(tf.make_tensor_proto(values))
    return log


def test_scores_read_one_value_per_row_and_refuse_more():
    logs = [_log(np.array([0.25], np.float32)), _log(np.array([0.125], np.float32))]
    np.testing.assert_array_equal(rows.scores(logs, "outputs"), [0.25, 0.125])
    np.testing.assert_array_equal(rows.scores([_log(np.array([[0.5]], np.float64))], "outputs"), [0.5])
    with pytest.raises(model_version.PredictError, match="'outputs' has 2 values for 1 rows"):
        rows.scores([_log(np.array([0.25, 0.75], np.float32))], "outputs")
