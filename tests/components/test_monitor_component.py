"""Profiles from Ingest's Beam pipeline, DriftMonitor's executor on them, and the retraining plan: one decision."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from flywheel import retraining, schemas
from flywheel.components.common import ui_artifacts
from flywheel.components.monitor import executor, spec
from flywheel.data import parsing
from flywheel.monitoring import monitor, profile, profile_beam
from tests.components.test_ingest_executor import TESTDATA, _run_executor

SCHEMA = schemas.schema_path("taxi")


@pytest.fixture(scope="module")
def ingested(tmp_path_factory):
    """Ingest's executor (Beam) on the two test spans: its DataProfile artifact."""
    return _run_executor(tmp_path_factory.mktemp("ingest"), TESTDATA)[2]


def _report(tmp_path, name):
    artifact = spec.DriftReport()
    artifact.uri = str(tmp_path / name)
    return artifact


def _ui_artifacts(tmp_path, name):
    html, markdown = ui_artifacts.HTML(), ui_artifacts.Markdown()
    html.uri, markdown.uri = str(tmp_path / name / "report_html" / "value"), str(tmp_path / name / "summary" / "value")
    return html, markdown


def _typed_profile(files, source):
    """The oracle: every row typed by Ingest's parsing, profiled in one pass without Beam."""
    columns = parsing.columns_from_schema(parsing.load_schema(SCHEMA))
    builder = profile.Builder(profile.schema_kinds(columns))
    for path in files:
        for row in parsing.file_rows(path, columns, (), (("all", 1),)):
            assert isinstance(row, parsing.Parsed)
            builder.add(row.values)
    return builder.result(source)


def test_ingest_profiles_each_span_in_beam_from_the_typed_rows(ingested):
    profiles = profile.read_span_profiles(ingested.uri)
    assert sorted(profiles) == [1, 2] and ingested.get_string_custom_property(spec.SPANS) == "1,2"
    span2 = sorted(os.path.join(TESTDATA, "span-2", f) for f in os.listdir(os.path.join(TESTDATA, "span-2")))
    expected = _typed_profile(span2, "span 2")
    assert profiles[2].rows == expected.rows == 40
    for name, column in expected.columns.items():
        got = profiles[2].columns[name]
        assert (got.kind, got.count, got.missing, got.values, got.minimum, got.maximum) == \
            (column.kind, column.count, column.missing, column.values, column.minimum, column.maximum), name
        assert got.m2 == pytest.approx(column.m2) and (got.mean == pytest.approx(column.mean, nan_ok=True)), name
    assert profiles[2].columns["pickup_census_tract"].missing == expected.columns["pickup_census_tract"].count
    assert profiles[2].columns["trip_start_hour"].kind == profile.NUMERIC  # schema INT
    assert profiles[2].columns["payment_type"].kind == profile.CATEGORICAL  # schema BYTES


def test_a_span_without_a_profile_is_an_error(ingested, tmp_path):
    copy = tmp_path / "profile"
    shutil.copytree(ingested.uri, copy)
    os.remove(copy / profile.profile_file(1))
    with pytest.raises(profile.MonitorError, match=r"no profile for span\(s\) \[1\]"):
        profile_beam.check_span_profiles(str(copy), (1, 2))


def test_a_span_whose_rows_are_all_quarantined_still_gets_a_profile(tmp_path):
    import apache_beam as beam

    kinds = {"fare": profile.NUMERIC}
    with beam.Pipeline() as p:
        rows = p | beam.Create([(1, {"fare": 2.5}), (1, {"fare": 3.5}), (1, {})])
        _ = rows | profile_beam.SpanProfiles(kinds, [1, 2], str(tmp_path))
    found = profile_beam.check_span_profiles(str(tmp_path), [1, 2])
    assert found[2].rows == 0 and found[1].rows == 3 and found[1].columns["fare"].values == {2.5: 1, 3.5: 1}
    assert found[1].columns["fare"].missing == 1


def test_monitor_reads_the_newest_span_and_records_its_verdict(ingested, tmp_path):
    baseline = os.path.join(ingested.uri, profile.profile_file(2))
    same = _report(tmp_path, "same")
    result = executor.run_drift_monitor(ingested, same, baseline, SCHEMA)
    assert result["span"] == 2 and result["drift_detected"] is False and result["reason"] == "no drift"
    assert same.get_int_custom_property(spec.DRIFT_DETECTED) == 0 and same.get_int_custom_property(spec.RETRAIN) == 0
    assert "tips" in result["label_drift"]["features"] and "tips" not in result["features"]
    assert os.path.exists(same.get_string_custom_property(spec.REPORT))
    on_disk = json.loads(open(os.path.join(same.uri, monitor.RESULT_FILE)).read())
    assert on_disk["drift_detected"] is False and "chart" in on_disk["features"]["fare"]

    shifted = profile.DatasetProfile.from_json(open(baseline).read())
    fare = shifted.columns["fare"]
    fare.values = {v * 3 + 20: c for v, c in fare.values.items()}
    path = tmp_path / "baseline.json"
    path.write_text(shifted.to_json())
    drifted = _report(tmp_path, "drifted")
    html, markdown = _ui_artifacts(tmp_path, "drifted")
    result = executor.run_drift_monitor(ingested, drifted, str(path), SCHEMA, html, markdown)
    assert result["features"]["fare"]["drift"] and drifted.get_int_custom_property(spec.RETRAIN) == 1
    assert drifted.get_int_custom_property(spec.DRIFT_DETECTED) == 1
    assert drifted.get_string_custom_property(spec.REASON) == "drift in fare"
    with open(html.uri, encoding="utf-8") as f:  # the report with its charts, as the KFP UI shows it
        assert f.read() == open(drifted.get_string_custom_property(spec.REPORT), encoding="utf-8").read()
    with open(markdown.uri, encoding="utf-8") as f:
        text = f.read()
    assert text.startswith("## Drift monitor: DRIFT DETECTED\n\nDrift in fare.\n\nCurrent data: span 2.")
    features = result["features"]
    assert f"1 of {len(features)} features drifted." in text
    [fare] = [line for line in text.splitlines() if line.startswith("| fare |")]
    crossed = [c for c in features["fare"]["checks"] if c["drift"]]
    assert fare.startswith("| fare | numeric | **drift** | ") and crossed
    assert all(f"{c['metric']} {c['value']:.4f} (" in fare for c in crossed)
    assert "| trip_miles | numeric | ok | every check below its threshold |" in text
    assert "Label columns (reported apart, they do not decide)" in text and "| tips |" in text


def test_no_baseline_is_not_drift_but_retrains(ingested, tmp_path):
    report = _report(tmp_path, "none")
    html, markdown = _ui_artifacts(tmp_path, "none")
    result = executor.run_drift_monitor(ingested, report, "", SCHEMA, html, markdown)
    assert result["drift_detected"] is None and result["reason"] == "no baseline: no model in serving"
    assert report.get_int_custom_property(spec.RETRAIN) == 1
    assert not report.has_custom_property(spec.DRIFT_DETECTED)
    assert json.loads(open(os.path.join(report.uri, monitor.RESULT_FILE)).read())["drift_detected"] is None
    assert "NO BASELINE" in open(os.path.join(report.uri, monitor.REPORT_FILE)).read()
    assert "NO BASELINE" in open(html.uri, encoding="utf-8").read()
    text = open(markdown.uri, encoding="utf-8").read()
    assert text.startswith("## Drift monitor: NO BASELINE\n\nNo baseline: no model in serving.\n")
    assert "this is not drift, and the model is (re)trained" in text and "|" not in text


def test_ui_artifacts_need_the_report_monitor_check_wrote(ingested, tmp_path):
    """The drift report's charts are only in the HTML check wrote: a verdict without one is an error, not a bare
    page (the function the retraining decision also calls)."""
    profiles = profile.read_span_profiles(ingested.uri)
    verdict = monitor.check(profiles[1], profiles[2], SCHEMA, report_dir=None)
    html, markdown = _ui_artifacts(tmp_path, "no-report")
    with pytest.raises(ValueError, match=r"drift monitor: the verdict has no HTML report to show .*report_dir"):
        executor.write_ui_artifacts(verdict, html, markdown)
    with pytest.raises(TypeError, match=r"ui_artifacts: expected a system.HTML artifact, got Markdown"):
        executor.write_ui_artifacts(monitor.check(profiles[1], profiles[2], SCHEMA, report_dir=str(tmp_path / "r")),
                                  markdown, html)


# ---- the retraining plan -------------------------------------------------------------------------------------

def _serve(serving_dir, version: int, baseline_text: str | None):
    folder = serving_dir / "taxi" / str(version)
    folder.mkdir(parents=True)
    manifest = {"version": version}
    if baseline_text is not None:
        (folder / "baseline_profile.json").write_text(baseline_text)
        manifest["baseline_profile"] = "baseline_profile.json"
    (folder / "push.json").write_text(json.dumps(manifest))
    (folder / "saved_model.pb").write_bytes(b"")  # a version is complete with its manifest and saved_model.pb


def test_plan_survives_a_bad_cell_and_makes_the_same_decision_as_the_component(ingested, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(TESTDATA, data)
    csv = data / "span-2" / "part-0.csv"
    lines = csv.read_text().splitlines()
    cells = lines[3].split(",")
    cells[1] = "abc"  # fare
    lines[3] = ",".join(cells)
    csv.write_text("\n".join(lines) + "\n")
    serving = tmp_path / "serving"
    _serve(serving, 5, open(os.path.join(ingested.uri, profile.profile_file(2))).read())

    plan = retraining.plan(str(data), str(serving), "taxi", 2, SCHEMA, report_dir=str(tmp_path / "report"))
    assert (plan.span, plan.window, plan.serving_version) == (2, (1, 2), 5)
    assert plan.drift["data"]["rows_quarantined"] == 1 and plan.drift["data"]["rows_read"] == 40
    assert "line 4: column 'fare': expected FLOAT, got 'abc'" in plan.drift["data"]["first_quarantined"][0]
    assert plan.drift["drift_detected"] is False and plan.drift["rows"]["current"] == 39
    assert plan.drift["report"] == str(tmp_path / "report" / "span-2" / monitor.REPORT_FILE)
    assert os.path.exists(plan.drift["report"])

    component = executor.run_drift_monitor(ingested, _report(tmp_path, "c"), plan.baseline_profile, SCHEMA)
    same_shape = {k for k in component if k not in ("span", "data")}
    assert same_shape == {k for k in plan.drift if k not in ("span", "data")}
    assert component["features"].keys() == plan.drift["features"].keys()
    cli = monitor.run_monitor(plan.baseline_profile, os.path.join(ingested.uri, profile.profile_file(2)), SCHEMA)
    assert {k for k in cli if k != "performance"} == same_shape
    assert cli["features"] == component["features"]


def test_plan_without_a_baseline_says_so(tmp_path):
    serving = tmp_path / "serving"
    first = retraining.plan(TESTDATA, str(serving), "taxi", 3, SCHEMA)
    assert first.drift["drift_detected"] is None and first.drift["reason"] == "no baseline: no model in serving"
    assert first.drift["report"] is None and first.baseline_profile == "" and first.serving_version is None
    _serve(serving, 3, None)
    second = retraining.plan(TESTDATA, str(serving), "taxi", 3, SCHEMA)
    assert second.drift["reason"] == "no baseline: serving version 3 has no training profile"
    _serve(serving, 4, json.dumps({"format": "flywheel.profile.v1", "rows": 1, "columns": {}}))
    third = retraining.plan(TESTDATA, str(serving), "taxi", 3, SCHEMA)
    assert third.drift["drift_detected"] is None and "older flywheel" in third.drift["reason"]


def test_the_cli_profile_of_a_csv_equals_the_profile_of_the_rows_ingest_types():
    from flywheel.monitoring import drift
    from tests.conftest import shipped_data

    policy = drift.Policy.from_schema(SCHEMA)
    by_arrow = profile.load(shipped_data(), [*policy.features, *policy.labels], policy.kinds)
    by_ingest = _typed_profile([shipped_data()], "typed")
    assert by_arrow.columns["company"].missing > 0
    for name, column in by_ingest.columns.items():
        got = by_arrow.columns[name]
        assert (got.kind, got.count, got.missing, got.values) == (column.kind, column.count, column.missing,
                                                                  column.values), name
    assert drift.decide(by_ingest, by_arrow, policy)["reason"] == "no drift"
