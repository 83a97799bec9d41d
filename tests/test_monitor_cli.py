"""`flywheel monitor`: JSON shape, exit codes like diff (0 none, 1 drift, 2 error), reports, performance, bad input."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pytest
from sklearn.metrics import roc_auc_score

from flywheel import schemas
from flywheel.components.monitor import monitor, report
from tests.conftest import call_cli, run_cli, shipped_data


def _drifted_copy(tmp_path, tips_factor: float = 1.0) -> str:
    table = pcsv.read_csv(shipped_data())
    fare = table.column("fare").to_numpy() * 1.5
    payment = np.where(np.arange(table.num_rows) % 3 == 0, "Cash", table.column("payment_type").to_pylist())
    tips = table.column("tips").to_numpy() * tips_factor
    for name, values in (("fare", fare), ("payment_type", payment), ("tips", tips)):
        table = table.set_column(table.column_names.index(name), name, pa.array(values))
    path = str(tmp_path / f"current-{tips_factor}.csv")
    pcsv.write_csv(table, path)
    return path


def test_same_data_no_drift_exit_0(tmp_path, capfd):
    result = call_cli(capfd, "monitor", "--baseline", shipped_data(), "--current", shipped_data(), "--json",
                      "--schema", schemas.schema_path("taxi"))
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["drift_detected"] is False and out["rows"] == {"baseline": 15002, "current": 15002}
    assert set(out["features"]) >= {"fare", "payment_type", "trip_start_hour"} and "tips" not in out["features"]
    assert all(f["severity"] == 0 for f in out["features"].values())
    assert "performance" not in out, "nothing asked for performance"


def test_drift_exit_1_with_evidence_report_and_a_saved_profile(tmp_path, capfd):
    report_dir = tmp_path / "report"
    saved = tmp_path / "current_profile.json"
    current = _drifted_copy(tmp_path)
    result = call_cli(capfd, "monitor", "--baseline", shipped_data(), "--current", current, "--json",
                      "--report", str(report_dir), "--save-profile", str(saved))
    assert result.returncode == 1, result.stderr
    out = json.loads(result.stdout)
    drifted = [k for k, v in out["features"].items() if v["drift"]]
    assert sorted(drifted) == ["fare", "payment_type"] and list(out["features"])[:2] == drifted
    assert out["reason"] == "drift in " + ", ".join(drifted)
    check = out["features"]["fare"]["checks"][1]
    assert check["metric"] == "ks_statistic" and check["rule"] == "drift when the Kolmogorov–Smirnov distance D > 0.1"
    assert "chart" not in out["features"]["fare"], "chart data goes to drift.json, not stdout"
    html = (report_dir / "report.html").read_text()
    assert "DRIFT DETECTED" in html and "<svg" in html and "<script" not in html
    on_disk = json.loads((report_dir / "drift.json").read_text())
    assert on_disk["drift_detected"] is True and on_disk["report"] == str(report_dir / "report.html")
    again = call_cli(capfd, "monitor", "--baseline", str(saved), "--current", current, "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["drift_detected"] is False


def test_label_drift_is_reported_apart_and_does_not_decide(tmp_path):
    out = monitor.run_monitor(shipped_data(), _drifted_copy(tmp_path, tips_factor=3.0),
                              schema_path=schemas.schema_path("taxi"))
    assert "tips" not in out["features"] and out["label_drift"]["features"]["tips"]["drift"] is True
    assert out["reason"] == "drift in fare, payment_type; label drift in tips"


def test_errors_exit_2_and_name_the_problem(tmp_path):
    """The installed `flywheel monitor` in its own process: the exit status is the process's."""
    missing = run_cli("monitor", "--baseline", str(tmp_path / "nope.csv"), "--current", shipped_data())
    assert missing.returncode == 2 and "nope.csv: no such file or directory" in missing.stderr
    narrow = tmp_path / "narrow.csv"
    narrow.write_text("fare,tips\n1.0,0.5\n")
    mismatch = run_cli("monitor", "--baseline", shipped_data(), "--current", str(narrow))
    assert mismatch.returncode == 2 and "lacks column(s)" in mismatch.stderr and "'company'" in mismatch.stderr
    bad = tmp_path / "bad.csv"
    lines = open(shipped_data()).read().splitlines()
    cells = lines[7].split(",")
    cells[lines[0].split(",").index("fare")] = "abc"
    bad.write_text("\n".join(lines[:7] + [",".join(cells)] + lines[8:]) + "\n")
    typed = run_cli("monitor", "--baseline", shipped_data(), "--current", str(bad), "--schema",
                    schemas.schema_path("taxi"))
    assert typed.returncode == 2 and "column 'fare': expected numbers" in typed.stderr, typed.stderr


# ---- performance decay --------------------------------------------------------------------------------------

def test_auc_by_ranks_equals_sklearn():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 3000)
    scores = np.round(labels * 0.3 + rng.random(3000), 2)  # ties included
    assert monitor.auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert np.isnan(monitor.auc(np.ones(5), np.arange(5.0)))


def test_performance_decay_against_reference(tmp_path):
    rng = np.random.default_rng(6)
    n = 4000
    label = rng.integers(0, 2, n)
    for name, pred in (("good", np.clip(label * 0.6 + rng.random(n) * 0.5, 0, 1)), ("noisy", rng.random(n))):
        pcsv.write_csv(pa.table({"x": rng.normal(size=n), "label": label, "prediction": pred}),
                       str(tmp_path / f"{name}.csv"))
    (tmp_path / "ref.json").write_text(json.dumps({"metrics": {"auc": 0.9}}))
    ref = str(tmp_path / "ref.json")
    ok = monitor.run_monitor(str(tmp_path / "good.csv"), str(tmp_path / "good.csv"), reference_metrics=ref)
    bad = monitor.run_monitor(str(tmp_path / "good.csv"), str(tmp_path / "noisy.csv"), reference_metrics=ref)
    assert ok["performance"]["drift"] is False and ok["performance"]["value"] > 0.9
    assert bad["performance"]["drift"] is True and bad["performance"]["value"] == pytest.approx(0.5, abs=0.05)
    assert bad["drift_detected"] and bad["prediction"]["drift"] and "AUC dropped by" in bad["reason"]
    assert "label" not in bad["features"] and "label" in bad["label_drift"]["features"]


def test_performance_that_cannot_be_computed_says_why(tmp_path, capfd):
    (tmp_path / "ref.json").write_text(json.dumps({"auc": 0.8}))
    result = call_cli(capfd, "monitor", "--baseline", shipped_data(), "--current", shipped_data(), "--json",
                      "--reference-metrics", str(tmp_path / "ref.json"), "--label-column", "big_tipper")
    assert result.returncode == 0, result.stderr
    skipped = json.loads(result.stdout)["performance"]["skipped"]
    assert "no 'big_tipper' or 'prediction' column" in skipped
    assert f"performance not computed: {skipped}" in result.stderr


def test_report_without_baseline_and_with_skipped_performance_renders():
    result = {"drift_detected": None, "reason": "no baseline: no model in serving", "rows": {"current": 10},
              "features": {}, "label_drift": {"drift_detected": None, "features": {}},
              "performance": {"skipped": "no labels"}}
    html = report.render(result)
    assert "NO BASELINE" in html and "this is not drift" in html and "Performance not computed: no labels" in html


def test_a_saved_profile_gives_the_column_kinds_without_a_schema(tmp_path):
    table = pcsv.read_csv(shipped_data())
    saved = tmp_path / "base.json"
    assert monitor.run_monitor(shipped_data(), shipped_data(), save_profile=str(saved))["drift_detected"] is False
    empty = table.set_column(table.column_names.index("company"), "company", pa.nulls(table.num_rows, pa.string()))
    pcsv.write_csv(empty.slice(0, 2000), str(tmp_path / "cur.csv"))
    result = monitor.run_monitor(str(saved), str(tmp_path / "cur.csv"))
    company = result["features"]["company"]
    company_before = json.loads(saved.read_text())["columns"]["company"]
    missing_before = company_before["missing"] / company_before["count"]
    assert 0.2 < missing_before < 0.5, "blank cells are missing, as Ingest types them"
    assert company["kind"] == "categorical" and company["drift"]
    assert company["checks"][0]["value"] == pytest.approx(1.0 - missing_before, abs=1e-6)
