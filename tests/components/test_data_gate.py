"""The gate's decision on real TFDV anomalies: validate real statistics against the curated schema."""

from __future__ import annotations

import os

import pandas as pd
import pytest
import tensorflow_data_validation as tfdv

from flywheel import schemas
from flywheel.components.data_gate import gate, report
from tests import tiny_runs


def _anomalies(frame: pd.DataFrame):
    stats = tfdv.generate_statistics_from_dataframe(frame)
    return tfdv.validate_statistics(stats, tfdv.load_schema_text(schemas.schema_path("taxi"))), stats


def _frame(payment="Cash", hour=5):
    return pd.DataFrame({"fare": [10.0, 12.0], "tips": [1.0, 3.0], "trip_start_hour": [hour, 6],
                         "trip_start_day": [1, 2], "trip_start_month": [3, 4],
                         "trip_start_timestamp": [1400000000, 1400000100], "trip_miles": [1.0, 2.0],
                         "payment_type": [payment, "Cash"]})


def test_unexpected_values_block_unless_allowed():
    anomalies, stats = _anomalies(_frame(payment="Bitcoin"))
    verdict = gate.decide({"eval": anomalies}, "")
    kinds = {(f.feature, f.type) for f in verdict.blocking}
    assert not verdict.passed and ("payment_type", "ENUM_TYPE_UNEXPECTED_STRING_VALUES") in kinds
    allowed = gate.decide({"eval": anomalies}, ",".join(f"{f}:*" for f, _ in kinds))
    assert allowed.passed and allowed.findings and not allowed.blocking
    html = report.render(verdict, {"eval": stats})
    assert "FAILED" in html and "payment_type" in html and "<svg" in html and "<script" not in html


def test_clean_data_passes(tmp_path):
    """Real rows of the shipped taxi CSV validate against the curated schema with no anomaly at all."""
    sample = tiny_runs.write_sample(str(tmp_path), 0, rows=300)
    stats = tfdv.generate_statistics_from_csv(os.path.join(sample, "data.csv"))
    anomalies = tfdv.validate_statistics(stats, tfdv.load_schema_text(schemas.schema_path("taxi")))
    verdict = gate.decide({"eval": anomalies}, "")
    assert verdict.passed and verdict.findings == () and verdict.to_dict()["decision"].startswith("passed")
    assert "PASSED" in report.render(verdict, {"eval": stats})


@pytest.mark.parametrize("entry,error", [
    ("NOT_A_TYPE", r"unknown anomaly type 'NOT_A_TYPE'"),
    ("payment_type:ENUM_TYPE_UNEXPECTED", r"did you mean one of \['ENUM_TYPE_UNEXPECTED_STRING_VALUES'"),
])
def test_allow_list_typos_are_caught(entry, error):
    with pytest.raises(ValueError, match=error):
        gate.parse_allow_list(entry)
