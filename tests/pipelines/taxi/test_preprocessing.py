"""preprocessing_fn through tf.Transform's Beam implementation on a few rows: buckets, vocabulary, label, z-scores."""

from __future__ import annotations

import os
import tempfile

import numpy as np
import pytest
import tensorflow_data_validation as tfdv
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

from flywheel import schemas
from flywheel.pipelines.taxi import features
from flywheel.pipelines.taxi.preprocessing import preprocessing_fn

# payment_type: Cash x3, Credit Card x2, Dispute x1 -> vocabulary ordered by frequency.
ROWS = [
    # fare, tips, trip_miles, trip_seconds, lat, lon, hour, day, month, payment
    (10.0, 3.0, 1.0, 300, 41.65, -87.93, 0, 1, 1, "Cash"),          # tip 30% -> label 1
    (10.0, 1.0, 2.0, 600, 41.70, -87.90, 5, 2, 6, "Cash"),          # tip 10% -> 0
    (20.0, 4.0, 3.0, 900, 41.99, -87.55, 23, 7, 12, "Credit Card"),  # 20% exactly -> 0 (strictly greater)
    (20.0, 5.0, 4.0, 1200, 41.60, -87.99, 12, 3, 3, "Credit Card"),  # 25% -> 1; below both lowest boundaries
    (30.0, 0.0, 5.0, 1500, 42.10, -87.50, 18, 5, 9, "Cash"),        # above both highest boundaries
    (40.0, 9.0, 6.0, 1800, 41.85, -87.70, 9, 4, 4, "Dispute"),      # 22.5% -> 1
]


def _raw_metadata():
    schema = tfdv.load_schema_text(schemas.schema_path("taxi"))
    spec = schema_utils.schema_as_feature_spec(schema).feature_spec
    return dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(spec)), spec


def _instance(row, spec):
    fare, tips, miles, seconds, lat, lon, hour, day, month, payment = row
    values = {"fare": fare, "tips": tips, "trip_miles": miles, "trip_seconds": seconds, "pickup_latitude": lat,
              "pickup_longitude": lon, "trip_start_hour": hour, "trip_start_day": day, "trip_start_month": month,
              "payment_type": payment}
    out = {}
    for name, feature_spec in spec.items():
        value = values.get(name)
        is_str = feature_spec.dtype.name == "string"
        if value is None:
            value = "" if is_str else 0
        value = value.encode() if is_str else value
        out[name] = [value] if not hasattr(feature_spec, "shape") or feature_spec.shape != [] else value
    return out


@pytest.fixture(scope="module")
def transformed():
    metadata, spec = _raw_metadata()
    rows = [_instance(r, spec) for r in ROWS]
    with tempfile.TemporaryDirectory() as tmp, tft_beam.Context(temp_dir=os.path.join(tmp, "tft")):
        (data, _), transform_fn = (rows, metadata) | tft_beam.AnalyzeAndTransformDataset(
            preprocessing_fn, output_record_batches=False)
        (transform_fn_path,), _ = transform_fn  # outside a Beam pipeline: [SavedModel path], metadata
        with open(os.path.join(transform_fn_path, "assets", features.VOCAB_FEATURE_KEYS[0]), encoding="utf-8") as f:
            vocab = [line.rstrip("\n") for line in f]
        return data, vocab


def _column(data, key):
    return np.array([d[features.transformed_name(key) if key != features.LABEL_XF else key] for d in data])


def test_label_is_tip_strictly_above_a_fifth_of_the_fare(transformed):
    data, _ = transformed
    assert list(_column(data, features.LABEL_XF)) == [1, 0, 0, 1, 0, 1]


def test_location_buckets_use_the_fixed_boundaries(transformed):
    data, _ = transformed
    # boundaries 41.68, 41.72, ..., 42.00 (latitude) and -87.90, ..., -87.58 (longitude); 10 buckets each
    assert list(_column(data, "pickup_latitude")) == [0, 1, 8, 0, 9, 5]  # 41.99 is below the last boundary
    assert list(_column(data, "pickup_longitude")) == [0, 1, 9, 0, 9, 6]


def test_payment_type_vocabulary_by_frequency(transformed):
    data, vocab = transformed
    assert vocab == ["Cash", "Credit Card", "Dispute"]
    assert list(_column(data, "payment_type")) == [0, 0, 1, 1, 0, 2]


def test_dense_floats_are_z_scores_and_categoricals_pass_through(transformed):
    data, _ = transformed
    fare = np.array([r[0] for r in ROWS])
    np.testing.assert_allclose(_column(data, "fare"), (fare - fare.mean()) / fare.std(), rtol=1e-5)
    assert list(_column(data, "trip_start_hour")) == [r[6] for r in ROWS]
