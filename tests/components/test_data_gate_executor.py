"""DataGate's execution on real ExampleValidator/StatisticsGen artifacts: verdict property, verdict.json, report,
and the system.HTML/system.Markdown artifacts the KFP UI shows."""

from __future__ import annotations

import json
import os

import pytest
import tensorflow_data_validation as tfdv
from tfx.types import artifact_utils, standard_artifacts

from flywheel import schemas
from flywheel.components.common import ui_artifacts
from flywheel.components.data_gate import executor, spec
from flywheel.metadata import run_record
from tests import tiny_runs


def _artifact(kind, record):
    artifact = kind()
    artifact.uri = record["uri"]
    artifact.split_names = record["split_names"]
    return artifact


@pytest.fixture(scope="module")
def clean(taxi_runs):
    """The anomalies and statistics a tiny real run wrote for clean rows of the shipped data (the checked-in taxi
    runs)."""
    records = run_record.latest_run(os.path.join(taxi_runs, "metadata.sqlite"), "taxi")
    return (_artifact(standard_artifacts.ExampleAnomalies, records["ExampleValidator"].output("anomalies")),
            _artifact(standard_artifacts.ExampleStatistics, records["StatisticsGen"].output("statistics")))


@pytest.fixture(scope="module")
def dirty(tmp_path_factory):
    """Anomalies and statistics laid out as ExampleValidator/StatisticsGen write them, for rows paying in Bitcoin."""
    root = tmp_path_factory.mktemp("dirty")
    sample = tiny_runs.write_sample(str(root / "data"), 0, rows=200)
    path = os.path.join(sample, "data.csv")
    with open(path) as f:
        text = f.read().replace(",Cash,", ",Bitcoin,", 3)
    with open(path, "w") as f:
        f.write(text)
    stats = tfdv.generate_statistics_from_csv(path)
    anomalies = tfdv.validate_statistics(stats, tfdv.load_schema_text(schemas.schema_path("taxi")))
    out = []
    for kind, name, proto in ((standard_artifacts.ExampleAnomalies, "SchemaDiff.pb", anomalies),
                              (standard_artifacts.ExampleStatistics, "FeatureStats.pb", stats)):
        artifact = kind()
        artifact.uri = str(root / name.split(".")[0])
        artifact.split_names = artifact_utils.encode_split_names(["eval"])
        os.makedirs(os.path.join(artifact.uri, "Split-eval"))
        with open(os.path.join(artifact.uri, "Split-eval", name), "wb") as f:
            f.write(proto.SerializeToString())
        out.append(artifact)
    return tuple(out)


def _gate(anomalies, statistics, allow, tmp_path):
    verdict, report_html, summary = spec.GateVerdict(), ui_artifacts.HTML(), ui_artifacts.Markdown()
    verdict.uri = str(tmp_path / "verdict")
    # as TFX lays out a value artifact: a file named `value` in a folder the executor has to create
    report_html.uri = str(tmp_path / "report_html" / "7" / "value")
    summary.uri = str(tmp_path / "summary" / "7" / "value")
    executor.run_gate(anomalies, statistics, verdict, allow, report_html, summary)
    with open(os.path.join(verdict.uri, spec.VERDICT_FILE)) as f:
        decision = json.load(f)
    with open(os.path.join(verdict.uri, spec.REPORT_FILE), encoding="utf-8") as f:
        html = f.read()
    with open(report_html.uri, encoding="utf-8") as f:
        assert f.read() == html  # the KFP UI shows the very report
    with open(summary.uri, encoding="utf-8") as f:
        markdown = f.read()
    return verdict, decision, html, markdown


def test_clean_run_passes(clean, tmp_path):
    verdict, decision, html, markdown = _gate(*clean, "", tmp_path)
    assert verdict.get_int_custom_property(spec.PASSED) == 1
    assert verdict.get_int_custom_property(spec.NUM_ANOMALIES) == 0 and decision["passed"] is True
    assert "PASSED" in html and "Statistics, split train" in html and "Statistics, split eval" in html
    assert markdown.startswith("## Data validation gate: PASSED\n")
    assert "No anomalies: the data matches the schema." in markdown and "|" not in markdown


def test_unexpected_value_stops_the_run(dirty, tmp_path):
    verdict, decision, html, markdown = _gate(*dirty, "", tmp_path)
    assert verdict.get_int_custom_property(spec.PASSED) == 0 and decision["passed"] is False
    assert [(f["feature"], f["type"]) for f in decision["findings"]] == [
        ("payment_type", "ENUM_TYPE_UNEXPECTED_STRING_VALUES")]
    assert verdict.get_int_custom_property(spec.NUM_BLOCKING) == 1
    assert "FAILED" in html and "Bitcoin" in html and "blocking" in html
    assert markdown.startswith("## Data validation gate: FAILED\n")
    assert "Stopped: 1 anomalies not in the allow-list. Anomalies: 1, blocking: 1. Allow-list: (empty)." in markdown
    [row] = [line for line in markdown.splitlines() if line.startswith("| eval ")]
    assert row.startswith("| eval | payment_type | ENUM_TYPE_UNEXPECTED_STRING_VALUES | ") and "Bitcoin" in row
    assert row.endswith(" | **blocking** |")


@pytest.mark.parametrize("allow,passed", [
    ("ENUM_TYPE_UNEXPECTED_STRING_VALUES", 1),
    ("payment_type:ENUM_TYPE_UNEXPECTED_STRING_VALUES", 1),
    ("payment_type:*", 1),
    ("company:*", 0),
    ("trip_start_hour:ENUM_TYPE_UNEXPECTED_STRING_VALUES", 0),
])
def test_allow_list(dirty, tmp_path, allow, passed):
    verdict, decision, _, markdown = _gate(*dirty, allow, tmp_path)
    assert verdict.get_int_custom_property(spec.PASSED) == passed
    assert verdict.get_int_custom_property(spec.NUM_ANOMALIES) == 1
    assert decision["allowed_anomalies"] == [allow]
    assert f"Allow-list: `{allow}`." in markdown
    assert markdown.rstrip().endswith(" | allowed |" if passed else " | **blocking** |")


def test_the_report_and_the_summary_count_the_quarantined_rows_and_say_where_they_are(dirty, tmp_path):
    """Ingest's quarantine, as Ingest records it on its artifact (counts as custom properties, the rows in
    quarantine.jsonl at its uri), reaches the gate's HTML report and the KFP UI's Markdown summary."""
    from flywheel.components import ingest

    quarantine = ingest.spec.Quarantine()
    quarantine.uri = str(tmp_path / "Ingest" / "quarantine" / "4")
    quarantine.set_int_custom_property(ingest.spec.ROWS_QUARANTINED, 17)
    quarantine.set_int_custom_property(ingest.spec.ROWS_READ, 15_002)
    verdict, report_html, summary = spec.GateVerdict(), ui_artifacts.HTML(), ui_artifacts.Markdown()
    verdict.uri = str(tmp_path / "verdict")
    report_html.uri = str(tmp_path / "report_html" / "value")
    summary.uri = str(tmp_path / "summary" / "value")
    executor.run_gate(*dirty, verdict, "", report_html, summary, quarantine)
    said = (f"Ingest quarantined 17 of 15,002 rows read (0.11%); they are not in the statistics or the anomalies "
            f"below. Each is in {os.path.join(quarantine.uri, 'quarantine.jsonl')} with its file, line and reason.")
    with open(os.path.join(verdict.uri, spec.REPORT_FILE), encoding="utf-8") as f:
        assert f"<p>Quarantine: {said}</p>" in f.read()
    with open(summary.uri, encoding="utf-8") as f:
        assert f"\n{said}\n" in f.read()
