"""The evaluation summary's plain functions: counts and undefined AUC per slice, the blessing rule in words, HTML."""

from __future__ import annotations

import json

import pytest
import tensorflow_model_analysis as tfma
from google.protobuf import json_format
from tensorflow_model_analysis.metrics import metric_specs, metric_types
from tfx.utils import proto_utils

from flywheel.components.evaluate import tfma_summary
from flywheel.pipelines.taxi import pipeline
from flywheel.pipelines.taxi.config import Paths, TaxiConfig


def _config_json(**overrides) -> str:
    cfg = TaxiConfig(paths=Paths("/data", "/out", "/out/pipeline", "/out/serving", "/out/m.sqlite"), **overrides)
    return proto_utils.proto_to_json(pipeline.eval_config(cfg))


@pytest.mark.parametrize("count,mean_label,auc,positives", [
    (27.0, 0.0, None, 0),       # no positives: AUC undefined, not 0
    (4.0, 1.0, None, 4),        # positives only
    (10.0, 0.3, 0.8, 3),
])
def test_slice_counts_and_undefined_auc(count, mean_label, auc, positives):
    got = tfma_summary.with_counts({"example_count": count, "mean_label": mean_label, "auc": 0.8 if auc else 0.0})
    assert (got["auc"], got["positives"]) == (auc, positives)


def test_report_metrics_are_added_once():
    config = json.loads(tfma_summary.with_report_metrics(_config_json()))
    names = [m["class_name"] for spec in config["metrics_specs"] for m in spec["metrics"]]
    assert sorted(names) == ["AUC", "BinaryAccuracy", "ConfusionMatrixAtThresholds", "ExampleCount"]
    again = json.loads(tfma_summary.with_report_metrics(json.dumps(config)))
    assert again == config


def test_class_counts_add_no_per_example_combiner_beside_binary_accuracy():
    """The class counts reuse BinaryAccuracy's confusion matrix at 0.5: TFMA runs one combiner per distinct
    non-derived computation on every example of every slice, and the report metrics add none of them."""
    def combiners(config_json: str) -> set[str]:
        config = json_format.Parse(config_json, tfma.EvalConfig())
        return {key.name for c in metric_specs.to_computations(list(config.metrics_specs), eval_config=config)
                if isinstance(c, metric_types.MetricComputation) for key in c.keys}

    before, after = combiners(_config_json()), combiners(tfma_summary.with_report_metrics(_config_json()))
    assert after == before
    assert "_binary_confusion_matrices:thresholds=[0.5]" in before


@pytest.mark.parametrize("matrix,mean_label", [
    ({"threshold": 0.5, "truePositives": 3.0, "falseNegatives": 1.0, "trueNegatives": 6.0}, 0.4),  # 0 fp left out
    ({"threshold": 0.5, "trueNegatives": 5.0, "falsePositives": 2.0}, 0.0),
    ({"threshold": 0.5}, None),  # no example in the slice
])
def test_mean_label_from_class_counts(matrix, mean_label):
    got = tfma_summary.mean_label_from_counts({"confusionMatrixAtThresholds": {"matrices": [matrix]}})
    assert got == mean_label


@pytest.mark.parametrize("overrides,version,auc,expected", [
    ({}, 7, 0.9312, "blessed when overall AUC ≥ 0.75 and AUC does not drop against the serving model "
                    "(version 7, AUC 0.9312)"),
    ({"min_auc": 0.8, "max_auc_drop": 0.02}, 3, 0.9, "blessed when overall AUC ≥ 0.8 and AUC drops by at most 0.02 "
                                                     "against the serving model (version 3, AUC 0.9000)"),
    ({}, None, None, "blessed when overall AUC ≥ 0.75 (no model in serving, so the no-regression threshold "
                     "does not apply)"),
])
def test_blessing_rule_in_words(overrides, version, auc, expected):
    assert tfma_summary.blessing_rule(_config_json(**overrides), version, auc) == expected


def test_blessing_rule_for_slices_relative_changes_and_upper_bounds():
    config = tfma.EvalConfig(model_specs=[tfma.ModelSpec()], metrics_specs=[tfma.MetricsSpec(metrics=[
        tfma.MetricConfig(class_name="AUC", per_slice_thresholds=[tfma.PerSliceMetricThreshold(
            slicing_specs=[tfma.SlicingSpec(feature_keys=["payment_type"])],
            threshold=tfma.MetricThreshold(change_threshold=tfma.GenericChangeThreshold(
                direction=tfma.MetricDirection.HIGHER_IS_BETTER, relative={"value": -0.05}))),
        ]),
        tfma.MetricConfig(class_name="MeanSquaredError", threshold=tfma.MetricThreshold(
            value_threshold=tfma.GenericValueThreshold(upper_bound={"value": 0.2}))),
    ])])
    rule = tfma_summary.blessing_rule(proto_utils.proto_to_json(config), 5, 0.9)
    assert rule == ("blessed when AUC drops by at most 5% against the serving model (version 5, AUC 0.9000) "
                    "in every payment_type slice and overall MeanSquaredError ≤ 0.2")


def test_render_shows_counts_na_and_the_rule_not_a_dict():
    summary = {"blessed": False, "thresholds": {"AUC": {"value_threshold": {"lower_bound": 0.75}}},
               "baseline_version": 7, "candidate": {"auc": 0.81, "example_count": 100.0, "positives": 20},
               "baseline": {"auc": 0.83}, "blessing_rule": "blessed when overall AUC ≥ 0.75",
               "failures": [{"slice": "Overall", "metric": "auc", "model": "candidate", "is_diff": True,
                             "value": -0.02, "message": "drop"}],
               "slices": {"payment_type=Cash": {"example_count": 60.0, "positives": 0, "auc": None},
                          "payment_type=Credit Card": {"example_count": 40.0, "positives": 20, "auc": 0.7}}}
    html = tfma_summary.render(summary)
    assert "<td>Cash</td><td>60</td><td>0</td><td>n/a</td>" in html
    assert "<td>Credit Card</td><td>40</td><td>20</td><td>0.7000</td>" in html
    assert "Credit Card (n=40)" in html and "Not charted (one class only, AUC undefined): Cash" in html
    assert "Rule: blessed when overall AUC ≥ 0.75" in html and "lower_bound" not in html
    assert "NOT BLESSED" in html and "change against baseline" in html and "<script" not in html


@pytest.mark.parametrize("count,mean_label,positives,negatives,reliable", [
    (42.0, 2 / 42, 2, 40, False),      # the case seen: 2 positives get an AUC no one should read
    (42.0, 40 / 42, 40, 2, False),     # few negatives: the same
    (20.0, 0.5, 10, 10, True),         # the minimum of each class
    (19.0, 9 / 19, 9, 10, False),      # one short
])
def test_an_auc_on_few_positives_or_negatives_is_marked_unreliable(count, mean_label, positives, negatives,
                                                                   reliable):
    got = tfma_summary.with_counts({"example_count": count, "mean_label": mean_label, "auc": 0.391})
    assert (got["positives"], got["negatives"], got["auc_reliable"]) == (positives, negatives, reliable)
    assert got["auc"] == 0.391, "the value is kept; the report says not to trust it"
    assert tfma_summary.unreliable(got) is not reliable


def test_render_warns_about_an_unreliable_slice_auc_and_leaves_it_out_of_the_chart():
    slices = {"trip_start_hour=3": tfma_summary.with_counts({"example_count": 42.0, "mean_label": 2 / 42,
                                                            "auc": 0.391}),
              "trip_start_hour=17": tfma_summary.with_counts({"example_count": 400.0, "mean_label": 0.25,
                                                             "auc": 0.9})}
    summary = {"blessed": True, "thresholds": {}, "baseline_version": None,
               "candidate": tfma_summary.with_counts({"example_count": 442.0, "mean_label": 102 / 442, "auc": 0.88}),
               "baseline": {}, "failures": [], "slices": slices}
    html = tfma_summary.render(summary)
    assert ("<td>3</td><td>42</td><td>2</td><td>0.3910 (unreliable)</td><td>—</td>"
            "<td>2 positives, 40 negatives: fewer than 10 of a class, AUC unreliable</td>") in html
    assert "<td>17</td><td>400</td><td>100</td><td>0.9000</td>" in html
    assert "17 (n=400)" in html and "3 (n=42)" not in html, "only the AUC to trust is charted"
    assert "Not charted, AUC unreliable (fewer than 10 positives or 10 negatives): 3" in html
    assert "<td>auc</td><td>0.8800</td>" in html and "auc_reliable" not in html
    assert "<td>negatives</td><td>340</td>" in html
    markdown = tfma_summary.render_markdown(summary)
    assert "| trip_start_hour=3 | 42 | 2 | 0.3910 (unreliable) | — |" in markdown
    assert "AUC (unreliable): the slice holds fewer than 10 positives or 10 negatives." in markdown
