"""DataGate's and Evaluate's reports on object storage: artifacts on ram:// are read and written through fileio."""

from __future__ import annotations

import json

from tensorflow_metadata.proto.v0 import anomalies_pb2, statistics_pb2
from tfx.types import artifact_utils, standard_artifacts

from flywheel.components import data_gate, evaluate
from flywheel.components.common import ui_artifacts
from flywheel.components.data_gate import executor as gate_executor
from flywheel.components.evaluate import executor as evaluate_executor
from flywheel.components.evaluate import tfma_summary
from tests import ram_filesystem


def _split_artifact(kind, uri: str, filename: str, proto) -> object:
    artifact = kind()
    artifact.uri = uri
    artifact.split_names = artifact_utils.encode_split_names(["eval"])
    ram_filesystem.write(f"{uri}/Split-eval/{filename}", proto.SerializeToString())
    return artifact


def _anomalies() -> anomalies_pb2.Anomalies:
    anomalies = anomalies_pb2.Anomalies()
    reason = anomalies.anomaly_info["payment_type"].reason.add()
    reason.type = anomalies_pb2.AnomalyInfo.ENUM_TYPE_UNEXPECTED_STRING_VALUES
    reason.description = "Examples contain values missing from the schema: Bitcoin (<1%)."
    return anomalies


def _statistics() -> statistics_pb2.DatasetFeatureStatisticsList:
    statistics = statistics_pb2.DatasetFeatureStatisticsList()
    dataset = statistics.datasets.add(num_examples=3)
    feature = dataset.features.add(type=statistics_pb2.FeatureNameStatistics.FLOAT)
    feature.path.step.append("fare")
    feature.num_stats.mean = 12.5
    feature.num_stats.common_stats.num_non_missing = 3
    return statistics


def test_the_data_gate_reads_its_inputs_and_writes_its_verdict_on_object_storage(ram):
    anomalies = _split_artifact(standard_artifacts.ExampleAnomalies, f"{ram}/ExampleValidator/anomalies/5",
                                "SchemaDiff.pb", _anomalies())
    statistics = _split_artifact(standard_artifacts.ExampleStatistics, f"{ram}/StatisticsGen/statistics/4",
                                 "FeatureStats.pb", _statistics())
    verdict, report_html, summary = data_gate.spec.GateVerdict(), ui_artifacts.HTML(), ui_artifacts.Markdown()
    verdict.uri = f"{ram}/DataGate/verdict/6"
    report_html.uri, summary.uri = f"{ram}/DataGate/report_html/6", f"{ram}/DataGate/summary/6"
    gate_executor.run_gate(anomalies, statistics, verdict, "", report_html, summary)
    decision = json.loads(ram_filesystem.read(f"{verdict.uri}/{data_gate.spec.VERDICT_FILE}"))
    assert decision["passed"] is False and [f["feature"] for f in decision["findings"]] == ["payment_type"]
    html = ram_filesystem.read(f"{verdict.uri}/{data_gate.spec.REPORT_FILE}").decode("utf-8")
    assert "Bitcoin" in html and "Statistics, split eval" in html
    assert verdict.get_string_custom_property("report") == f"{verdict.uri}/{data_gate.spec.REPORT_FILE}"
    assert ram_filesystem.read(report_html.uri).decode("utf-8") == html
    assert "| eval | payment_type | ENUM_TYPE_UNEXPECTED_STRING_VALUES |" in ram_filesystem.read(summary.uri).decode()


def test_evaluate_copies_the_serving_model_and_writes_its_summary_on_object_storage(ram):
    served = f"{ram}/serving/taxi/3"
    for name, content in (("saved_model.pb", b"graph"), ("variables/variables.index", b"index"),
                          ("push.json", b'{"model_sha256": "abc"}')):
        ram_filesystem.write(f"{served}/{name}", content)
    baseline, version = evaluate_executor.baseline_from_serving(f"{ram}/serving", "taxi", f"{ram}/Evaluate/.temp/9")
    assert version == 3 and baseline.uri == f"{ram}/Evaluate/.temp/9/baseline_model"
    assert ram_filesystem.read(f"{baseline.uri}/Format-Serving/variables/variables.index") == b"index"
    evaluation, blessing = standard_artifacts.ModelEvaluation(), standard_artifacts.ModelBlessing()
    evaluation.uri, blessing.uri = f"{ram}/Evaluate/evaluation/9", f"{ram}/Evaluate/blessing/9"
    summary = {"blessed": True, "thresholds": {}, "baseline_version": 3, "failures": [], "slices": {},
               "candidate": {tfma_summary.AUC: 0.81, tfma_summary.EXAMPLE_COUNT: 100},
               "baseline": {tfma_summary.AUC: 0.8, tfma_summary.EXAMPLE_COUNT: 100},
               "blessing_rule": "blessed when overall AUC does not drop"}
    report_html, markdown = ui_artifacts.HTML(), ui_artifacts.Markdown()
    report_html.uri, markdown.uri = f"{ram}/Evaluate/report_html/9", f"{ram}/Evaluate/summary/9"
    evaluate_executor.record(evaluation, blessing, summary, report_html, markdown)
    assert json.loads(ram_filesystem.read(f"{evaluation.uri}/{evaluate.spec.SUMMARY_FILE}")) == summary
    html = ram_filesystem.read(f"{evaluation.uri}/{evaluate.spec.REPORT_FILE}").decode("utf-8")
    assert "BLESSED" in html and "serving version 3" in html
    assert evaluation.get_string_custom_property("report") == f"{evaluation.uri}/{evaluate.spec.REPORT_FILE}"
    assert ram_filesystem.read(report_html.uri).decode("utf-8") == html
    text = ram_filesystem.read(markdown.uri).decode("utf-8")
    assert text.startswith("## Model evaluation: BLESSED\n\nBlessed when overall AUC does not drop.\n")
    assert "Overall AUC: **0.8100**; serving model (version 3) 0.8000, change +0.0100." in text
