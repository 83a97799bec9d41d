"""`flywheel monitor`: JSON shape, exit codes like diff (0 none, 1 drift, 2 error), reports, performance, bad input."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pytest
from sklearn.metrics import roc_auc_score

from flywheel import schemas
from flywheel.monitoring import monitor, report
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


@pytest.mark.slow  # the flywheel command as a process
def test_errors_exit_2_and_name_the_problem(tmp_path):
    """The installed `flywheel monitor` in its own process: the exit status is the process's."""
    missing = run_cli("monitor", "--baseline", str(tmp_path / "nope.csv"), "--current", shipped_data())
    assert missing.returncode == 2 and "nope.csv' does not exist" in missing.stderr
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


# ---- the baseline beside a model is enough ------------------------------------------------------------------

def _served_baseline(tmp_path) -> str:
    """`<serving>/taxi/1/baseline_profile.json` as Push writes it: the training span's profile (Ingest's typing)
    plus the model's scores as the `prediction` column, with push.json naming the model."""
    from flywheel.components.push import executor as push_executor

    span_profile, _ = monitor.profile_span(shipped_data(), 0, schemas.schema_path("taxi"))
    profiles = tmp_path / "profile"
    profiles.mkdir()
    (profiles / "profile-span-0.json").write_text(span_profile.to_json())
    scores = list(np.random.default_rng(3).random(500))
    version = tmp_path / "serving" / "taxi" / "1"
    version.mkdir(parents=True)
    (version / "baseline_profile.json").write_text(push_executor.baseline_profile(str(profiles), scores).to_json())
    (version / "push.json").write_text(json.dumps({"model_name": "taxi", "baseline_profile": "baseline_profile.json"}))
    return str(version / "baseline_profile.json")


def test_a_models_baseline_needs_no_schema_and_says_what_it_skipped(tmp_path, capfd):
    baseline = _served_baseline(tmp_path)
    spans = tmp_path / "spans"
    call_cli(capfd, "simulate", "taxi", "--out", str(spans), "--spans", "2", "--drift-from", "2", "--rows", "3000")
    calm = call_cli(capfd, "monitor", "--baseline", baseline, "--current", str(spans / "span-1"))
    assert calm.returncode == 0, calm.stderr
    assert "no drift" in calm.stdout and f"schema: {schemas.schema_path('taxi')}" in calm.stdout
    assert "prediction drift not checked: the current data" in calm.stdout and "not a request log" in calm.stdout
    drifted = call_cli(capfd, "monitor", "--baseline", baseline, "--current", str(spans / "span-2"), "--json",
                       "--report", str(tmp_path / "report"))
    assert drifted.returncode == 1, drifted.stderr
    out = json.loads(drifted.stdout)
    assert "tips" not in out["features"] and "tips" in out["label_drift"]["features"], "the schema's label"
    assert "prediction" not in out["features"] and "not a request log" in out["prediction"]["skipped"]
    assert out["thresholds"]["schema"] == schemas.schema_path("taxi")
    assert "Prediction drift not checked" in (tmp_path / "report" / "report.html").read_text()


SCHEMA_PROBLEMS = [
    ("missing", None, "expected a file, found nothing there (no such file)"),
    ("folder", "dir", "expected a file, found a folder"),
    ("empty", "", "expected a file with content, found an empty file"),
    ("not a schema", "garbage ::: {", "expected a TFDV schema in text format (schema.pbtxt), could not parse it"),
    ("no features", "string_domain { name: 'x' }", "expected a TFDV schema in text format (schema.pbtxt), found "
                                                   "one with no features"),
    ("not UTF-8", b"\xff\xfe feature", "expected a file of UTF-8 text, found byte 0xff at offset 0"),
]


@pytest.mark.parametrize("command", ["monitor", "ingest"])
@pytest.mark.parametrize("case,content,message", SCHEMA_PROBLEMS, ids=[c[0] for c in SCHEMA_PROBLEMS])
def test_a_bad_schema_file_is_named(tmp_path, capfd, command, case, content, message):
    path = tmp_path / "schema.pbtxt"
    if content == "dir":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    args = {"monitor": ["monitor", "--baseline", shipped_data(), "--current", shipped_data()],
            "ingest": ["ingest", "--data", shipped_data(), "--output-dir", str(tmp_path / "out")]}[command]
    result = call_cli(capfd, *args, "--schema", str(path))
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"flywheel: schema {path}: {message}"), result.stderr


REFERENCE_PROBLEMS = [
    ("missing", None, "expected a file, found nothing there (no such file)"),
    ("folder", "dir", "expected a file, found a folder"),
    ("empty", "", "expected a file with content, found an empty file"),
    ("not JSON", "{{", "expected JSON with 'auc' (or 'metrics.auc', as in a push.json), found text that is not JSON"),
    ("no auc", '{"metrics": {"accuracy": 0.8}}', "expected JSON with 'auc' (or 'metrics.auc', as in a push.json), "
                                                "found none"),
    ("a list", "[0.8]", "expected JSON with 'auc' (or 'metrics.auc', as in a push.json), found none"),
    ("a string", '{"auc": "high"}', "expected JSON with 'auc' (or 'metrics.auc', as in a push.json), found 'high'"),
]


@pytest.mark.parametrize("case,content,message", REFERENCE_PROBLEMS, ids=[c[0] for c in REFERENCE_PROBLEMS])
def test_a_bad_reference_metrics_file_is_named(tmp_path, capfd, case, content, message):
    path = tmp_path / "push.json"
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_text(content)
    result = call_cli(capfd, "monitor", "--baseline", shipped_data(), "--current", shipped_data(),
                      "--reference-metrics", str(path))
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"flywheel: monitor: --reference-metrics {path}: {message}"), result.stderr


def test_text_output_names_label_drift_as_the_json_does(tmp_path, capfd):
    """The text line said `DRIFT in fare, payment_type` while --json had label_drift true for tips."""
    result = call_cli(capfd, "monitor", "--baseline", shipped_data(), "--current", _drifted_copy(tmp_path, 3.0),
                      "--schema", schemas.schema_path("taxi"))
    assert result.returncode == 1, result.stderr
    assert result.stdout.startswith("flywheel monitor: DRIFT in fare, payment_type; label drift in tips "), \
        result.stdout


def test_a_version_folder_is_a_baseline_by_its_training_profile(tmp_path, capfd):
    """`--baseline <serving>/taxi/<version>` was read as data (`.../assets/...: unsupported file type`)."""
    version = tmp_path / "serving" / "taxi" / "7"
    (version / "assets").mkdir(parents=True)
    (version / "assets" / "vocabulary").write_text("Cash\n")
    saved = call_cli(capfd, "monitor", "--baseline", shipped_data(), "--current", shipped_data(),
                     "--save-profile", str(version / "baseline_profile.json"))
    assert saved.returncode == 0, saved.stderr
    (version / "push.json").write_text(json.dumps({"model_name": "taxi", "version": 7,
                                                   "baseline_profile": "baseline_profile.json"}))
    result = call_cli(capfd, "monitor", "--baseline", str(version), "--current", _drifted_copy(tmp_path))
    assert result.returncode == 1, result.stderr
    assert f"  baseline: {version / 'baseline_profile.json'}, the training profile of version 7" in result.stdout
    assert f"the schema of pipeline 'taxi' (named by {version / 'push.json'})" in result.stdout
    (version / "push.json").write_text(json.dumps({"model_name": "taxi", "version": 7}))
    none = call_cli(capfd, "monitor", "--baseline", str(version), "--current", shipped_data())
    assert none.returncode == 2 and "expected a version folder that keeps a training profile" in none.stderr


def test_help_lists_the_model_and_version_folder_forms_of_baseline(capsys):
    from flywheel import cli

    with pytest.raises(SystemExit):
        cli.main(["monitor", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "<serving>/<model>" in text and "<serving>/<model>/<version>" in text
