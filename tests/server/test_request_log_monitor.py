"""The monitor on request-log spans written by RequestLog: feature drift and prediction drift."""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from flywheel import schemas
from flywheel.server.request_log import RequestLog, features_from_schema
from tests.conftest import call_cli, shipped_data

MODEL_FEATURES = ["trip_miles", "fare", "trip_seconds", "pickup_latitude", "pickup_longitude", "trip_start_hour",
                  "trip_start_day", "trip_start_month", "payment_type"]


def _score(fare: float) -> float:
    return float(1.0 / (1.0 + np.exp(-(fare - 10.0) / 5.0)))


def _log_span(folder: str, records: list[dict], fare_factor: float) -> str:
    log = RequestLog(folder, features=features_from_schema(schemas.schema_path("taxi"), MODEL_FEATURES),
                     clock=lambda: 5.0)
    for start in range(0, len(records), 50):
        rows = [{f: r[f] for f in MODEL_FEATURES} for r in records[start:start + 50]]
        for row in rows:
            row["fare"] = row["fare"] * fare_factor
        log.log(f"req-{start}", "taxi", 1, "serving_default", rows, [_score(r["fare"]) for r in rows], 2.0)
    log.close()
    return os.path.join(folder, "span-0")


def _records() -> list[dict]:
    table = pcsv.read_csv(shipped_data())
    for name in ("pickup_latitude", "trip_seconds"):
        table = table.filter(pc.is_valid(table.column(name)))
    order = np.random.default_rng(0).permutation(table.num_rows)  # the file is ordered: two random halves
    return table.take(order).to_pylist()


def test_monitor_flags_the_drifted_feature_and_the_prediction_shift(tmp_path, capfd):
    records = _records()
    reference = _log_span(str(tmp_path / "reference"), records[:4000], 1.0)
    same = _log_span(str(tmp_path / "same"), records[4000:8000], 1.0)
    drifted = _log_span(str(tmp_path / "drifted"), records[4000:8000], 1.6)
    schema = schemas.schema_path("taxi")

    quiet = call_cli(capfd, "monitor", "--baseline", reference, "--current", same, "--schema", schema, "--json")
    assert quiet.returncode == 0, quiet.stdout + quiet.stderr
    out = json.loads(quiet.stdout)
    assert out["prediction"]["drift"] is False and "request_id" not in out["features"]
    assert out["label_drift"]["features"] == {}, "neither log has a label"
    assert "pickup_community_area" in out["not_logged"]

    found = call_cli(capfd, "monitor", "--baseline", reference, "--current", drifted, "--schema", schema, "--json")
    assert found.returncode == 1, found.stderr
    out = json.loads(found.stdout)
    drifted_features = [n for n, f in out["features"].items() if f["drift"]]
    assert drifted_features[:2] == ["fare", "prediction"] or set(drifted_features) >= {"fare", "prediction"}
    assert set(drifted_features) <= {"fare", "prediction"}, drifted_features
    assert out["prediction"]["drift"] is True


def test_training_baseline_with_reference_predictions(tmp_path, capfd):
    """Feature drift against the training data, prediction drift against a reference log span."""
    records = _records()
    reference = _log_span(str(tmp_path / "reference"), records[:4000], 1.0)
    drifted = _log_span(str(tmp_path / "drifted"), records[4000:8000], 1.6)
    profile = str(tmp_path / "baseline_profile.json")
    saved = call_cli(capfd, "monitor", "--baseline", shipped_data(), "--current", shipped_data(), "--schema",
                     schemas.schema_path("taxi"), "--save-profile", profile)
    assert saved.returncode == 0, saved.stderr

    without = json.loads(call_cli(capfd, "monitor", "--baseline", profile, "--current", drifted, "--schema",
                                  schemas.schema_path("taxi"), "--json").stdout)
    assert "fare" in [n for n, f in without["features"].items() if f["drift"]]
    assert "has no 'prediction' column" in without["prediction"]["skipped"]
    label_drift = without["label_drift"]
    assert label_drift["drift_detected"] is None and "no label column ['tips']" in label_drift["skipped"]

    found = call_cli(capfd, "monitor", "--baseline", profile, "--current", drifted, "--schema",
                     schemas.schema_path("taxi"), "--reference-predictions", reference, "--json")
    assert found.returncode == 1, found.stderr
    out = json.loads(found.stdout)
    assert out["prediction"]["drift"] is True and out["features"]["fare"]["drift"] is True
    assert not out["features"]["trip_start_hour"]["drift"]

    bad = call_cli(capfd, "monitor", "--baseline", profile, "--current", drifted, "--reference-predictions",
                   shipped_data())
    assert bad.returncode == 2 and "have no 'prediction' column" in bad.stderr


def test_failed_requests_and_shadow_copies_are_not_production_data(tmp_path, capfd):
    """A rollout's log: shadow copies (a candidate answering 1.0 for every row) and failed requests (no prediction,
    garbled features) are left out of the monitor's comparison, with and without a schema."""
    records = _records()
    reference = _log_span(str(tmp_path / "reference"), records[:4000], 1.0)
    log = RequestLog(str(tmp_path / "rollout"), features=features_from_schema(schemas.schema_path("taxi"),
                                                                              MODEL_FEATURES), clock=lambda: 5.0)
    for start in range(4000, 8000, 50):
        rows = [{f: r[f] for f in MODEL_FEATURES} for r in records[start:start + 50]]
        log.log(f"req-{start}", "taxi", 1, "serving_default", rows, [_score(r["fare"]) for r in rows], 2.0,
                role="stable")
        log.log(f"req-{start}", "taxi", 2, "serving_default", rows, [1.0] * len(rows), 2.0, role="shadow")
        garbled = [dict(row, fare=row["fare"] * 100.0) for row in rows]
        log.log(f"bad-{start}", "taxi", 1, "serving_default", garbled, [None] * len(rows), 2.0, role="stable",
                status=400, error="input fare: out of range")
    log.close()
    current = os.path.join(str(tmp_path / "rollout"), "span-0")
    for schema in (["--schema", schemas.schema_path("taxi")], []):
        out = call_cli(capfd, "monitor", "--baseline", reference, "--current", current, *schema, "--json")
        result = json.loads(out.stdout)
        assert out.returncode == 0, result
        assert result["rows"]["current"] == 4000 and result["prediction"]["drift"] is False
        assert not {"status", "error", "rollout_role"} & set(result["features"]), result["features"].keys()
