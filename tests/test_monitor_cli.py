"""`flywheel monitor`: JSON shape, exit codes like diff (0 none, 1 drift, 2 error), reports, bad input."""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv

from flywheel import schemas
from tests.conftest import run_cli, shipped_data


def _drifted_copy(tmp_path) -> str:
    table = pcsv.read_csv(shipped_data())
    fare = table.column("fare").to_numpy() * 1.5
    payment = np.where(np.arange(table.num_rows) % 3 == 0, "Cash", table.column("payment_type").to_pylist())
    table = table.set_column(table.column_names.index("fare"), "fare", pa.array(fare))
    table = table.set_column(table.column_names.index("payment_type"), "payment_type", pa.array(payment))
    path = str(tmp_path / "current.csv")
    pcsv.write_csv(table, path)
    return path


def test_same_data_no_drift_exit_0(tmp_path):
    result = run_cli("monitor", "--baseline", shipped_data(), "--current", shipped_data(), "--json",
                     "--schema", schemas.schema_path("taxi"))
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["drift_detected"] is False and out["rows"] == {"baseline": 15002, "current": 15002}
    assert set(out["features"]) >= {"fare", "payment_type", "trip_start_hour"}


def test_drift_exit_1_with_evidence_and_report(tmp_path):
    report = tmp_path / "report"
    profile = tmp_path / "current_profile.json"
    result = run_cli("monitor", "--baseline", shipped_data(), "--current", _drifted_copy(tmp_path), "--json",
                     "--report", str(report), "--save-profile", str(profile))
    assert result.returncode == 1, result.stderr
    out = json.loads(result.stdout)
    drifted = {k for k, v in out["features"].items() if v["drift"]}
    assert drifted == {"fare", "payment_type"}, drifted
    check = out["features"]["fare"]["checks"][0]
    assert set(check) == {"metric", "value", "threshold", "drift"}
    assert list(out["features"])[:2] == sorted(drifted, key=list(out["features"]).index)[:2]
    html = (report / "report.html").read_text()
    assert "DRIFT DETECTED" in html and "<svg" in html and "<script" not in html
    assert json.loads((report / "drift.json").read_text())["drift_detected"] is True
    again = run_cli("monitor", "--baseline", str(profile), "--current", _drifted_copy(tmp_path), "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["drift_detected"] is False


def test_errors_exit_2_and_name_the_problem(tmp_path):
    missing = run_cli("monitor", "--baseline", str(tmp_path / "nope.csv"), "--current", shipped_data())
    assert missing.returncode == 2 and "nope.csv: no such file or directory" in missing.stderr
    narrow = tmp_path / "narrow.csv"
    narrow.write_text("fare,tips\n1.0,0.5\n")
    mismatch = run_cli("monitor", "--baseline", shipped_data(), "--current", str(narrow))
    assert mismatch.returncode == 2 and "lacks column(s)" in mismatch.stderr and "'company'" in mismatch.stderr
    assert os.path.exists(shipped_data())
