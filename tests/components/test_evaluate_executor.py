"""Evaluate's executor on a tiny real run's examples and model: blessed, not blessed, against a baseline.

sklearn's roc_auc_score on the model's own predictions is the oracle for the AUC the summary reads.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter

import numpy as np
import pytest
import tensorflow as tf
from sklearn.metrics import roc_auc_score
from tfx.dsl.components.base import base_beam_executor
from tfx.types import standard_artifacts
from tfx.utils import json_utils, proto_utils

from flywheel.components.common import ui_artifacts
from flywheel.components.evaluate import executor, spec, tfma_summary
from flywheel.metadata import run_record
from flywheel.pipelines.taxi import features, pipeline
from flywheel.store import layout, publish
from tests import tiny_runs

pytestmark = pytest.mark.slow  # trains (the tiny runs) and runs Evaluate's Beam job (TFMA)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tiny_runs.two_runs(str(tmp_path_factory.mktemp("tiny")))
    records = run_record.latest_run(os.path.join(out, "metadata.sqlite"), "taxi")
    examples = records["Ingest"].output("examples")
    return {"out": out, "examples": examples, "model": records["Trainer"].output("model")["uri"],
            "schema": records["ImportSchemaGen"].output("schema")["uri"],
            "versions": layout.versions(os.path.join(out, "serving"), "taxi")}


def _evaluate(run, tmp_path, config, served_versions=(), model_name="taxi"):
    """Runs Evaluate's executor with `served_versions` copied from the tiny run's serving folder as serving."""
    serving_dir = tmp_path / "serving"
    for version in served_versions:
        shutil.copytree(os.path.join(run["out"], "serving", "taxi", str(version)), serving_dir / "taxi" / str(version))
    examples = standard_artifacts.Examples()
    examples.uri = run["examples"]["uri"]
    examples.split_names = run["examples"]["split_names"]
    model, schema = standard_artifacts.Model(), standard_artifacts.Schema()
    model.uri, schema.uri = run["model"], run["schema"]
    evaluation, blessing = standard_artifacts.ModelEvaluation(), standard_artifacts.ModelBlessing()
    evaluation.uri, blessing.uri = str(tmp_path / "evaluation"), str(tmp_path / "blessing")
    report_html, markdown = ui_artifacts.HTML(), ui_artifacts.Markdown()
    report_html.uri, markdown.uri = str(tmp_path / "report_html" / "value"), str(tmp_path / "summary" / "value")
    context = base_beam_executor.BaseBeamExecutor.Context(tmp_dir=str(tmp_path / "tmp"), unique_id="test",
                                                          beam_pipeline_args=["--direct_num_workers=1"])
    executor.Executor(context).Do(
        {spec.EXAMPLES_KEY: [examples], spec.MODEL_KEY: [model], spec.SCHEMA_KEY: [schema]},
        {spec.EVALUATION_KEY: [evaluation], spec.BLESSING_KEY: [blessing], spec.REPORT_HTML_KEY: [report_html],
         spec.SUMMARY_KEY: [markdown]},
        {spec.EVAL_CONFIG_KEY: proto_utils.proto_to_json(config), spec.EXAMPLE_SPLITS_KEY: json_utils.dumps(["eval"]),
         spec.SERVING_DIR_KEY: str(serving_dir), spec.MODEL_NAME_KEY: model_name, spec.SERVING_VERSION_KEY: 0})
    with open(os.path.join(evaluation.uri, spec.SUMMARY_FILE)) as f:
        summary = json.load(f)
    with open(os.path.join(evaluation.uri, spec.REPORT_FILE), encoding="utf-8") as f:
        report = f.read()
    with open(report_html.uri, encoding="utf-8") as f:
        assert f.read() == report  # the KFP UI shows the very report
    with open(markdown.uri, encoding="utf-8") as f:
        markdown_text = f.read()
    return summary, report, blessing, evaluation, markdown_text


def _config(run, min_auc, max_auc_drop=0.0):
    return pipeline.eval_config(tiny_runs.config(run["out"], run["out"], min_auc=min_auc, max_auc_drop=max_auc_drop))


def _oracle(run):
    """Labels, the model's predictions and payment types for every eval example, straight from the files."""
    raw = publish.sample_examples(run["examples"]["uri"], "eval", 1_000_000)
    predictions = publish.check_serving_signature(os.path.join(run["model"], "Format-Serving"), raw)
    labels, payments = [], []
    for record in raw:
        f = tf.train.Example.FromString(record).features.feature
        # As preprocessing_fn computes it: float32, a missing value read as 0.
        fare = np.float32((list(f[features.FARE_KEY].float_list.value) or [0.0])[0])
        tips = np.float32((list(f[features.LABEL_KEY].float_list.value) or [0.0])[0])
        labels.append(int(tips > fare * np.float32(features.BIG_TIP_SHARE)))
        payments.append(f["payment_type"].bytes_list.value[0].decode())
    return np.array(labels), np.array(predictions), payments


def test_blessed_without_serving_and_auc_matches_sklearn(run, tmp_path):
    summary, report, blessing, evaluation, markdown = _evaluate(run, tmp_path, _config(run, min_auc=0.01))
    labels, predictions, payments = _oracle(run)
    assert summary["blessed"] and blessing.get_int_custom_property("blessed") == 1
    assert summary["baseline_version"] is None and not summary["failures"]
    overall = summary["candidate"]
    assert overall[tfma_summary.EXAMPLE_COUNT] == len(labels)
    assert overall[tfma_summary.POSITIVES] == labels.sum()
    assert overall[tfma_summary.AUC] == pytest.approx(roc_auc_score(labels, predictions), abs=0.01)
    assert evaluation.get_float_custom_property("auc") == pytest.approx(overall[tfma_summary.AUC])
    for payment, count in Counter(payments).items():
        in_slice = np.array(payments) == payment
        got = summary["slices"][f"payment_type={payment}"]
        assert (got[tfma_summary.EXAMPLE_COUNT], got[tfma_summary.POSITIVES]) == (count, labels[in_slice].sum())
        if 0 < labels[in_slice].sum() < count:
            assert got[tfma_summary.AUC] == pytest.approx(
                roc_auc_score(labels[in_slice], predictions[in_slice]), abs=0.02)
        else:  # one class only: undefined, shown as n/a with the slice's counts
            assert got[tfma_summary.AUC] is None
            assert f"<td>{payment}</td><td>{count:,}</td><td>{labels[in_slice].sum():,}</td><td>n/a</td>" in report
    assert "blessed when overall AUC ≥ 0.01 (no model in serving" in summary["blessing_rule"]
    assert "{" not in report.split("<h2>")[0].split("</style>")[1]  # no raw dict in the verdict
    assert markdown.startswith("## Model evaluation: BLESSED\n\nBlessed when overall AUC ≥ 0.01 (no model in serving")
    assert f"Overall AUC: **{overall[tfma_summary.AUC]:.4f}**, required ≥ 0.01.\n" in markdown
    assert "Baseline: none in serving (absolute thresholds only)." in markdown and "All thresholds met." in markdown
    for payment, count in Counter(payments).items():
        positives = labels[np.array(payments) == payment].sum()
        assert f"| payment_type={payment} | {count:,} | {positives:,} | " in markdown


def test_not_blessed_below_the_absolute_threshold(run, tmp_path):
    summary, report, blessing, _, markdown = _evaluate(run, tmp_path, _config(run, min_auc=0.99))
    assert not summary["blessed"] and blessing.get_int_custom_property("blessed") == 0
    [failure] = summary["failures"]
    assert (failure["slice"], failure["metric"], failure["is_diff"]) == ("Overall", "auc", False)
    assert failure["value"] == pytest.approx(summary["candidate"][tfma_summary.AUC])
    assert "NOT BLESSED" in report and "blessed when overall AUC ≥ 0.99" in report
    assert markdown.startswith("## Model evaluation: NOT BLESSED\n") and "### Why not blessed" in markdown
    assert f"| Overall | auc | value | {failure['value']:.4f} | " in markdown and "All thresholds met" not in markdown


def test_against_serving_no_drop_blesses_an_equal_model(run, tmp_path):
    same = run["versions"][-1]  # the tiny run pushed this very model
    summary, report, blessing, _, markdown = _evaluate(run, tmp_path, _config(run, min_auc=0.01),
                                                       served_versions=[same])
    assert summary["baseline_version"] == same and blessing.get_int_custom_property("baseline_version") == same
    assert summary["baseline"][tfma_summary.AUC] == pytest.approx(summary["candidate"][tfma_summary.AUC])
    assert summary["blessed"] and blessing.get_int_custom_property("blessed") == 1
    base_auc = summary["baseline"][tfma_summary.AUC]
    assert (f"AUC does not drop against the serving model (version {same}, AUC {base_auc:.4f})"
            in summary["blessing_rule"])
    assert f"; serving model (version {same}) {base_auc:.4f}, change +0.0000." in markdown
    assert f"Baseline: serving version {same}." in markdown


def test_against_serving_a_required_gain_is_not_met_by_an_equal_model(run, tmp_path):
    config = _config(run, min_auc=0.01)
    auc = next(m for m in config.metrics_specs[0].metrics if m.class_name == "AUC")
    auc.per_slice_thresholds[0].threshold.change_threshold.absolute.value = 0.01
    same = run["versions"][-1]
    summary, report, blessing, _, markdown = _evaluate(run, tmp_path, config, served_versions=[same])
    assert not summary["blessed"] and blessing.get_int_custom_property("blessed") == 0
    assert [(f["metric"], f["is_diff"]) for f in summary["failures"]] == [("auc", True)]
    assert "AUC improves by at least 0.01 against the serving model" in summary["blessing_rule"]
    assert "change against baseline" in report
    assert "| auc | change against baseline | " in markdown and "NOT BLESSED" in markdown


def test_a_bad_model_name_from_a_run_parameter_fails_before_evaluating(run, tmp_path):
    with pytest.raises(ValueError, match=r"Evaluate: model_name: expected a non-empty name without '/', got 'a/b'"):
        _evaluate(run, tmp_path, _config(run, min_auc=0.01), model_name="a/b")
    assert not (tmp_path / "evaluation").exists()


def test_the_tiny_run_recorded_the_gate_and_evaluation_reports_as_types_the_kfp_ui_renders(run):
    """TFX's local runner made the value artifacts' files; ML-Metadata names their types as KFP's UI looks for."""
    metadata = os.path.join(run["out"], "metadata.sqlite")
    records = run_record.latest_run(metadata, "taxi")
    store = run_record.open_store(metadata)
    for node, title in (("DataGate", "flywheel data validation gate"), ("Evaluate", "flywheel model evaluation")):
        html, markdown = records[node].output(spec.REPORT_HTML_KEY), records[node].output(spec.SUMMARY_KEY)
        artifacts = {a.id: a for a in store.get_artifacts_by_id([html["id"], markdown["id"]])}
        names = {t.id: t.name for t in store.get_artifact_types_by_id([a.type_id for a in artifacts.values()])}
        assert [names[artifacts[a["id"]].type_id] for a in (html, markdown)] == ["system.HTML", "system.Markdown"], node
        with open(html["uri"], encoding="utf-8") as f:
            assert f"<title>{title}</title>" in f.read(), node
        with open(markdown["uri"], encoding="utf-8") as f:
            assert f.read().startswith(f"## {'Data validation gate' if node == 'DataGate' else 'Model evaluation'}: ")


def test_the_blessing_passes_tfxs_kubeflow_entrypoint_without_an_mlmd_baseline():
    """TFX's Evaluator records the baseline model's MLMD id; ours comes from the serving folder (id 0), which
    TFX's Kubeflow entrypoint cannot rename. Evaluate drops it (the version is `baseline_version`)."""
    from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_entrypoint_utils as entry

    blessing = standard_artifacts.ModelBlessing()
    blessing.set_int_custom_property("baseline_model_id", 0)
    blessing.set_int_custom_property("current_model_id", 7)
    with pytest.raises(KeyError):
        entry.refactor_model_blessing(blessing, {7: "pipelines/p/artifacts/7"})
    executor.forget_baseline_model_id(blessing)
    entry.refactor_model_blessing(blessing, {7: "pipelines/p/artifacts/7"})
    assert not blessing.has_custom_property("baseline_model_id")
    assert blessing.get_string_custom_property("current_model_id") == "pipelines/p/artifacts/7"
