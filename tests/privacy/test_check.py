"""`flywheel privacy check` and `flywheel.privacy_check`: the verdict, its exit status, the report and errors."""

from __future__ import annotations

import json
import re

import pytest

import flywheel
from flywheel.cli import main
from flywheel.pipelines.taxi.config import shipped_data
from flywheel.pipelines.taxi.simulate import simulate_spans
from flywheel.privacy import policy

TAXI_POLICY = policy.beside(flywheel.schemas.schema_path("taxi"))


def test_shipped_data_is_below_the_taxi_policys_threshold(tmp_path, capsys):
    code = main(["privacy", "check", "taxi", "--data", shipped_data(), "--report", str(tmp_path), "--json"])
    found = json.loads(capsys.readouterr().out)
    assert code == 1
    assert (found["k"], found["l"], found["rows"], found["passed"]) == (1, 1, 15_002, False)
    assert found["report"] == str(tmp_path / "report.html")
    assert json.loads((tmp_path / "privacy.json").read_text())["classes"] == found["classes"] == 14_996
    html = (tmp_path / "report.html").read_text()
    assert "k = 1 (threshold 5)" in html and "The 10 smallest classes" in html and "Datafly" in html
    assert "Painted on the cab" in html  # the policy's reasons are in the report
    assert found["plan"][-1]["rows_under_k"] <= 0.01 * 15_002  # the rows the plan would leave out


def test_a_policy_that_is_met_exits_0_with_text(tmp_path, capsys):
    spans = tmp_path / "spans"
    simulate_spans(str(spans), spans=1, drift_from=None, rows=2000, seed=1)
    document = json.loads(open(TAXI_POLICY).read())
    for name, column in document["columns"].items():
        if column["role"] == "quasi_identifier" and name not in ("trip_start_month", "trip_start_day"):
            document["columns"][name] = {"role": "ordinary", "reason": "not measured here"}
    document["thresholds"] = {"k": 2, "l": 1}
    loose = tmp_path / "loose.json"
    loose.write_text(json.dumps(document))
    code = main(["privacy", "check", "--data", str(spans), "--policy", str(loose)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert out.startswith("flywheel privacy check: passed: k = ")
    assert "quasi-identifiers: trip_start_day, trip_start_month" in out


@pytest.mark.parametrize("change, message", [
    (lambda d: d["columns"]["company"].update(role="secret"), "column 'company': role: expected one of"),
    (lambda d: d["columns"].update(fares={"role": "ordinary", "reason": "typo"}),
     "column 'fares': expected a column of pipeline 'taxi''s schema"),
    (lambda d: d["columns"].pop("tips"), "column 'tips' of pipeline 'taxi''s schema .*: expected a role"),
    (lambda d: d["thresholds"].update(k=0), "thresholds.k: expected a whole number >= 1, found 0"),
])
def test_a_bad_policy_is_a_usage_error_naming_it(tmp_path, capsys, change, message):
    document = json.loads(open(TAXI_POLICY).read())
    change(document)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(document))
    assert main(["privacy", "check", "--data", shipped_data(), "--policy", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"flywheel: privacy policy {path}: ")
    assert re.search(message, err), err


def test_missing_data_and_a_report_path_that_is_a_file_are_usage_errors(tmp_path, capsys):
    assert main(["privacy", "check", "--data", str(tmp_path / "none")]) == 2
    assert "privacy: input" in capsys.readouterr().err
    (tmp_path / "file").write_text("")
    assert main(["privacy", "check", "--data", shipped_data(), "--report", str(tmp_path / "file")]) == 2
    assert "--report" in capsys.readouterr().err


def test_the_library_call_returns_a_typed_result():
    result = flywheel.privacy_check("taxi", shipped_data())
    assert isinstance(result, flywheel.PrivacyResult) and not result.passed
    assert result.anonymity.k == 1 and result.files == 1 and result.report is None
