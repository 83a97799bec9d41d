"""The drift monitor and the retraining plan on object storage: data root, serving dir, schema, profiles and
reports on ram:// give the decision a local copy gives, and write their reports there."""

from __future__ import annotations

import json
import os
import shutil

import apache_beam as beam
import pytest

from flywheel import retraining, schemas
from flywheel.components.common import ui_artifacts
from flywheel.components.monitor import executor, spec
from flywheel.data import inputs, parsing
from flywheel.monitoring import monitor, profile, profile_beam
from tests import ram_filesystem

TESTDATA = os.path.join(os.path.dirname(__file__), "..", "..", "components", "ingest", "testdata", "spans")
MANIFEST = {"model_sha256": "abc", "metrics": {"auc": 0.75}, "baseline_profile": "baseline_profile.json"}


def _rooted(result: dict, root: str) -> dict:
    """The result with its root folder (local or ram://) named ROOT, so both can be compared."""
    return json.loads(json.dumps(result).replace(root, "ROOT"))


def _serving(root: str, write, baseline: profile.DatasetProfile) -> str:
    """A serving dir holding version 1 of taxi, whose training profile is `baseline`."""
    version = f"{root}/taxi/1"
    write(f"{version}/baseline_profile.json", baseline.to_json().encode())
    write(f"{version}/push.json", json.dumps(MANIFEST).encode())
    write(f"{version}/saved_model.pb", b"graph")
    return root


def _write_local(path: str, content: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(content)


@pytest.fixture
def local(tmp_path_factory):
    """The shipped spans, the taxi schema and a serving dir whose baseline is span 1, on the local disk."""
    root = tmp_path_factory.mktemp("local")
    shutil.copytree(TESTDATA, root / "data")
    shutil.copy(schemas.schema_path("taxi"), root / "schema.pbtxt")
    baseline, _ = monitor.profile_span(str(root / "data"), 1, str(root / "schema.pbtxt"))
    _serving(str(root / "serving"), _write_local, baseline)
    return str(root)


@pytest.fixture
def remote(local, ram):
    """The same files on ram://."""
    ram_filesystem.upload(local, ram)
    return ram


def test_the_retraining_plan_reads_and_reports_on_object_storage_as_locally(local, remote):
    args = dict(model_name="taxi", window=2)
    here = retraining.plan(f"{local}/data", f"{local}/serving", schema_path=f"{local}/schema.pbtxt",
                        report_dir=f"{local}/reports", **args)
    there = retraining.plan(f"{remote}/data", f"{remote}/serving", schema_path=f"{remote}/schema.pbtxt",
                         report_dir=f"{remote}/reports", **args)
    assert (there.span, there.window, there.serving_version) == (here.span, here.window, here.serving_version) \
        == (2, (1, 2), 1)
    assert there.baseline_profile == f"{remote}/serving/taxi/1/baseline_profile.json"
    assert _rooted(there.drift, remote) == _rooted(here.drift, local)
    assert there.drift["data"]["rows_read"] == 40 and there.drift["rows"] == {"baseline": 30, "current": 40}
    assert there.drift["report"] == f"{remote}/reports/span-2/{monitor.REPORT_FILE}"
    written = json.loads(ram_filesystem.read(f"{remote}/reports/span-2/{monitor.RESULT_FILE}"))
    assert written["drift_detected"] == here.drift["drift_detected"] and written["report"] == there.drift["report"]
    assert b"<html" in ram_filesystem.read(there.drift["report"])


def test_a_serving_model_without_a_profile_on_object_storage_is_named_not_skipped(remote):
    manifest = {k: v for k, v in MANIFEST.items() if k != "baseline_profile"}
    ram_filesystem.write(f"{remote}/serving/taxi/2/push.json", json.dumps(manifest).encode())
    ram_filesystem.write(f"{remote}/serving/taxi/2/saved_model.pb", b"graph")
    plan = retraining.plan(f"{remote}/data", f"{remote}/serving", "taxi", 1, f"{remote}/schema.pbtxt")
    assert plan.serving_version == 2 and plan.baseline_profile == ""
    assert plan.drift["drift_detected"] is None and "serving version 2 has no training profile" in plan.drift["reason"]


def test_run_monitor_reads_data_profiles_and_metrics_on_object_storage_and_saves_there(local, remote):
    def run(root):
        return monitor.run_monitor(f"{root}/data/span-1", f"{root}/data/span-2", f"{root}/schema.pbtxt",
                                   report_dir=f"{root}/report", save_profile=f"{root}/current.json",
                                   reference_metrics=f"{root}/serving/taxi/1/push.json", label_column="tips")

    here, there = run(local), run(remote)
    assert _rooted(there, remote) == _rooted(here, local)
    assert "no 'prediction' column" in there["performance"]["skipped"]
    saved = profile.load(f"{remote}/current.json")
    assert saved.rows == profile.load(f"{local}/current.json").rows == there["rows"]["current"]
    again = monitor.run_monitor(f"{remote}/serving/taxi/1/baseline_profile.json", f"{remote}/current.json",
                                f"{remote}/schema.pbtxt", report_dir=f"{remote}/again")
    assert again["rows"] == {"baseline": 30, "current": there["rows"]["current"]}
    assert json.loads(ram_filesystem.read(f"{remote}/again/{monitor.RESULT_FILE}"))["reason"] == again["reason"]


def test_a_monitor_input_missing_on_object_storage_is_an_error_naming_it(remote):
    with pytest.raises(profile.MonitorError, match=rf"monitor: input '{remote}/nope' does not exist"):
        monitor.run_monitor(f"{remote}/nope", f"{remote}/data/span-1")
    with pytest.raises(profile.MonitorError, match=rf"baseline profile {remote}/nope.json does not exist"):
        monitor.load_baseline(f"{remote}/nope.json")


def test_span_profiles_and_the_drift_monitor_on_object_storage(local, remote):
    columns = parsing.columns_from_schema(parsing.load_schema(f"{remote}/schema.pbtxt"))
    files = inputs.resolve_input(f"{remote}/data", -1, 2).files
    rows = [(inputs.span_of(path, f"{remote}/data"), row.values) for path in files
            for row in parsing.file_rows(path, columns, (), (("all", 1),)) if isinstance(row, parsing.Parsed)]
    profile_uri = f"{remote}/Ingest/profile/7"
    with beam.Pipeline() as pipeline:
        _ = (pipeline | beam.Create(rows)
             | profile_beam.SpanProfiles(profile.schema_kinds(columns), [1, 2, 3], profile_uri))
    found = profile_beam.check_span_profiles(profile_uri, [1, 2, 3])
    assert {span: p.rows for span, p in found.items()} == {1: 30, 2: len(rows) - 30, 3: 0}
    with pytest.raises(profile.MonitorError, match=r"no profile for span\(s\) \[4\]"):
        profile_beam.check_span_profiles(profile_uri, [1, 4])
    data_profile, report = spec.DataProfile(), spec.DriftReport()
    data_profile.uri, report.uri = profile_uri, f"{remote}/DriftMonitor/drift_report/8"
    html, markdown = ui_artifacts.HTML(), ui_artifacts.Markdown()
    html.uri, markdown.uri = f"{remote}/DriftMonitor/report_html/8", f"{remote}/DriftMonitor/summary/8"
    result = executor.run_drift_monitor(data_profile, report, f"{remote}/serving/taxi/1/baseline_profile.json",
                                        f"{remote}/schema.pbtxt", html, markdown)
    assert result[spec.SPAN] == 3 and report.get_string_custom_property(spec.REPORT) == f"{report.uri}/report.html"
    assert json.loads(ram_filesystem.read(f"{report.uri}/{monitor.RESULT_FILE}"))["reason"] == result["reason"]
    assert ram_filesystem.read(html.uri) == ram_filesystem.read(f"{report.uri}/report.html")
    assert ram_filesystem.read(markdown.uri).decode("utf-8").startswith("## Drift monitor: ")
