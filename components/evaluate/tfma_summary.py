"""Reads TFMA's output into a plain summary (overall and sliced metrics, thresholds, verdict) and HTML."""

from __future__ import annotations

import json
from typing import Any, Optional

import tensorflow_model_analysis as tfma
from google.protobuf import json_format

from flywheel.reports import html_report, markdown

AUC = "auc"
EXAMPLE_COUNT = "example_count"
MEAN_LABEL = "mean_label"
POSITIVES = "positives"
NEGATIVES = "negatives"
AUC_RELIABLE = "auc_reliable"
# A slice's AUC is trusted only with at least this many examples of each class: with fewer, it rests on a handful
# of positive-negative pairs (2 positives among 40 rows: 76 pairs, and one row moves it by more than 0.1).
MIN_CLASS_COUNT = 10
# The metrics the report needs on every slice: its size, and its positives and negatives (a slice holding one
# class only has no AUC). The classes are counted by a confusion matrix at 0.5, the one BinaryAccuracy computes:
# TFMA computes a matrix once for every metric that asks for it, where MeanLabel would be one more per-example
# combiner on every slice (about a tenth of Evaluate's time on the taxi pipeline's three slicings).
CLASS_COUNTS = "class_counts"
CLASS_COUNTS_THRESHOLD = 0.5


def _class_counts_metric() -> tfma.MetricConfig:
    return tfma.MetricConfig(class_name="ConfusionMatrixAtThresholds",
                             config=json.dumps({"name": CLASS_COUNTS, "thresholds": [CLASS_COUNTS_THRESHOLD]}))


def with_report_metrics(eval_config_json: str) -> str:
    """The eval config with ExampleCount and the class counts (a confusion matrix at 0.5 named CLASS_COUNTS)
    added to its first metrics spec when missing."""
    config = json_format.Parse(eval_config_json, tfma.EvalConfig())
    if not config.metrics_specs:
        config.metrics_specs.add()
    metrics = [m for spec in config.metrics_specs for m in spec.metrics]
    if "ExampleCount" not in {m.class_name for m in metrics}:
        config.metrics_specs[0].metrics.add(class_name="ExampleCount")
    if not any(m.class_name == "ConfusionMatrixAtThresholds" and m.config
               and json.loads(m.config).get("name") == CLASS_COUNTS for m in metrics):
        config.metrics_specs[0].metrics.append(_class_counts_metric())
    return json_format.MessageToJson(config, preserving_proto_field_name=True, indent=None)


def _value(metric: dict) -> Optional[float]:
    for key in ("doubleValue", "double_value"):
        if key in metric:
            return float(metric[key])
    if "boundedValue" in metric:
        return float(metric["boundedValue"]["value"])
    return None


def mean_label_from_counts(class_counts: dict) -> Optional[float]:
    """The share of positives from the CLASS_COUNTS confusion matrix as TFMA's result holds it (zero counts are
    left out of it), or None when it has no matrix or no example."""
    for matrix in class_counts.get("confusionMatrixAtThresholds", {}).get("matrices", []):
        positives = matrix.get("truePositives", 0.0) + matrix.get("falseNegatives", 0.0)
        total = positives + matrix.get("trueNegatives", 0.0) + matrix.get("falsePositives", 0.0)
        return positives / total if total else None
    return None


def _slice_name(slice_key) -> str:
    return "Overall" if not slice_key else ", ".join(f"{k}={v}" for k, v in slice_key)


def with_counts(metrics: dict[str, float]) -> dict[str, Any]:
    """Adds the slice's positive and negative counts; AUC becomes None (undefined) when the slice holds one class
    only, and `auc_reliable` says whether each class has at least MIN_CLASS_COUNT examples."""
    out: dict[str, Any] = dict(metrics)
    if EXAMPLE_COUNT in out and MEAN_LABEL in out:
        out[POSITIVES] = int(round(out[MEAN_LABEL] * out[EXAMPLE_COUNT]))
        out[NEGATIVES] = int(out[EXAMPLE_COUNT]) - out[POSITIVES]
        if AUC in out and out[POSITIVES] in (0, int(out[EXAMPLE_COUNT])):
            out[AUC] = None
        elif AUC in out:
            out[AUC_RELIABLE] = min(out[POSITIVES], out[NEGATIVES]) >= MIN_CLASS_COUNT
    return out


def unreliable(metrics: dict[str, Any]) -> bool:
    """An AUC computed on fewer than MIN_CLASS_COUNT positives or negatives."""
    return metrics.get(AUC) is not None and metrics.get(AUC_RELIABLE) is False


def _few_words(metrics: dict[str, Any]) -> str:
    return (f"{metrics.get(POSITIVES, 0):,} positives, {metrics.get(NEGATIVES, 0):,} negatives: fewer than "
            f"{MIN_CLASS_COUNT} of a class, AUC unreliable")


def _auc_cell(metrics: dict[str, Any]) -> str:
    if AUC not in metrics:
        return "—"
    return _fmt(metrics[AUC]) + (" (unreliable)" if unreliable(metrics) else "")


def metrics_by_slice(output_path: str, model_name: str) -> dict[str, dict[str, Any]]:
    result = tfma.load_eval_result(output_path, model_name=model_name)
    out: dict[str, dict[str, Any]] = {}
    for slice_key, by_output in result.slicing_metrics:
        metrics = {}
        for by_sub_key in by_output.values():
            for sub_metrics in by_sub_key.values():  # noqa: B007
                for name, metric in sub_metrics.items():
                    v = mean_label_from_counts(metric) if name == CLASS_COUNTS else _value(metric)
                    if v is not None:
                        metrics[MEAN_LABEL if name == CLASS_COUNTS else name] = v
        out[_slice_name(slice_key)] = with_counts(metrics)
    return out


def validation_failures(output_path: str) -> tuple[bool, list[dict[str, Any]]]:
    result = tfma.load_validation_result(output_path)
    failures = []
    for per_slice in result.metric_validations_per_slice:
        for failure in per_slice.failures:
            failures.append({
                "slice": ", ".join(f"{k.column}={getattr(k, k.WhichOneof('kind'))}"
                                   for k in per_slice.slice_key.single_slice_keys) or "Overall",
                "metric": failure.metric_key.name,
                "model": failure.metric_key.model_name,
                "is_diff": failure.metric_key.is_diff,
                "value": failure.metric_value.double_value.value,
                "message": failure.message,
            })
    return result.validation_ok, failures


def _where(slicing_specs) -> str:
    """'overall', 'in every trip_start_hour slice', 'in slice payment_type=Cash' for a threshold's slices."""
    places = []
    for s in slicing_specs or [tfma.SlicingSpec()]:
        if not s.feature_keys and not s.feature_values:
            places.append("overall")
        else:
            keys = [f"in every {k} slice" for k in s.feature_keys]
            values = [f"in slice {k}={v}" for k, v in sorted(s.feature_values.items())]
            places.append(" and ".join(keys + values))
    return " and ".join(places)


def _bound(value_threshold) -> list[str]:
    out = []
    if value_threshold.HasField("lower_bound"):
        out.append(f"≥ {value_threshold.lower_bound.value:g}")
    if value_threshold.HasField("upper_bound"):
        out.append(f"≤ {value_threshold.upper_bound.value:g}")
    return out


def _change(name: str, change, baseline: str) -> str:
    higher = change.direction == tfma.MetricDirection.HIGHER_IS_BETTER
    parts = []
    for kind, field in (("absolute", "absolute"), ("relative", "relative")):
        if not change.HasField(field):
            continue
        bound = getattr(change, field).value
        amount = f"{abs(bound) * 100:g}%" if kind == "relative" else f"{abs(bound):g}"
        if abs(bound) < 1e-6:
            parts.append(f"{name} does not {'drop' if higher else 'rise'} against {baseline}")
        elif (bound < 0) == higher:
            parts.append(f"{name} {'drops' if higher else 'rises'} by at most {amount} against {baseline}")
        else:
            parts.append(f"{name} {'improves' if higher else 'falls'} by at least {amount} against {baseline}")
    return " and ".join(parts)


def blessing_rule(eval_config_json: str, baseline_version: Optional[int], baseline_auc: Optional[float]) -> str:
    """The blessing thresholds in words, e.g. 'blessed when overall AUC ≥ 0.75 and AUC does not drop against the
    serving model (version 3, AUC 0.9312)'. Change thresholds apply only when a model is in serving."""
    config = json_format.Parse(eval_config_json, tfma.EvalConfig())
    if baseline_version is None:
        baseline = "the serving model"
    else:
        auc = f", AUC {baseline_auc:.4f}" if baseline_auc is not None else ""
        baseline = f"the serving model (version {baseline_version}{auc})"
    rules, skipped = [], False
    for metrics_spec in config.metrics_specs:
        for metric in metrics_spec.metrics:
            name = "AUC" if metric.class_name == "AUC" else metric.class_name
            thresholds = [(None, metric.threshold)] if metric.HasField("threshold") else []
            thresholds += [(p.slicing_specs, p.threshold) for p in metric.per_slice_thresholds]
            for slicing_specs, threshold in thresholds:
                where = _where(slicing_specs)
                for bound in _bound(threshold.value_threshold):
                    rules.append(f"{where} {name} {bound}")
                if threshold.HasField("change_threshold"):
                    if baseline_version is None:
                        skipped = True
                    else:
                        rules.append(_change(name, threshold.change_threshold, baseline)
                                     + ("" if where == "overall" else f" {where}"))
    text = "blessed when " + " and ".join(rules) if rules else "blessed: no thresholds configured"
    if skipped:
        text += " (no model in serving, so the no-regression threshold does not apply)"
    return text


def build_summary(output_path: str, thresholds: dict[str, Any], baseline_version: Optional[int],
                  eval_config_json: Optional[str] = None) -> dict[str, Any]:
    has_baseline = baseline_version is not None
    candidate = metrics_by_slice(output_path, tfma.CANDIDATE_KEY if has_baseline else "")
    ok, failures = validation_failures(output_path)
    summary = {
        "blessed": ok,
        "thresholds": thresholds,
        "baseline_version": baseline_version,
        "candidate": candidate.get("Overall", {}),
        "baseline": {},
        "slices": {k: v for k, v in candidate.items() if k != "Overall"},
        "failures": failures,
    }
    if has_baseline:
        summary["baseline"] = metrics_by_slice(output_path, tfma.BASELINE_KEY).get("Overall", {})
    if eval_config_json is not None:
        summary["blessing_rule"] = blessing_rule(eval_config_json, baseline_version, summary["baseline"].get(AUC))
    return summary


def _fmt(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _count(value: Optional[float]) -> str:
    return "—" if value is None else f"{int(value):,}"


def _slice_rows(slices: dict[str, dict[str, Any]]) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    by_feature: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for name, metrics in slices.items():
        feature, _, value = name.partition("=")
        by_feature.setdefault(feature, []).append((value, metrics))
    for values in by_feature.values():
        values.sort(key=lambda kv: (len(kv[0]), kv[0]))
    return by_feature


def _slice_section(feature: str, values: list[tuple[str, dict[str, Any]]]) -> list[str]:
    rows = []
    for value, m in values:
        note = ""
        if AUC in m and m[AUC] is None:
            note = "one class only: AUC undefined"
        elif unreliable(m):
            note = _few_words(m)
        rows.append((value, _count(m.get(EXAMPLE_COUNT)), _count(m.get(POSITIVES)), _auc_cell(m),
                     _fmt(m.get("binary_accuracy")) if "binary_accuracy" in m else "—", note))
    charted = [(v, m) for v, m in values if m.get(AUC) is not None and not unreliable(m)]
    undefined = [v for v, m in values if AUC in m and m[AUC] is None]
    few = [v for v, m in values if unreliable(m)]
    chart = html_report.hbar_chart([f"{v} (n={_count(m.get(EXAMPLE_COUNT))})" for v, m in charted],
                                   [m[AUC] for _, m in charted], top=1.0)
    missing = (f'<p class="muted">Not charted (one class only, AUC undefined): '
               f'{html_report.esc(", ".join(undefined))}</p>' if undefined else "")
    if few:
        missing += (f'<p class="warn">Not charted, AUC unreliable (fewer than {MIN_CLASS_COUNT} positives or '
                    f'{MIN_CLASS_COUNT} negatives): {html_report.esc(", ".join(few))}</p>')
    return [f"<h2>AUC by {html_report.esc(feature)}</h2>", chart, missing,
            html_report.table([feature, "examples", "positives", "AUC", "accuracy", "note"], rows)]


def render(summary: dict[str, Any]) -> str:
    cand, base = summary["candidate"], summary["baseline"]
    names = sorted(n for n in cand if not n.startswith("__") and n not in (MEAN_LABEL, AUC_RELIABLE))
    counts = (EXAMPLE_COUNT, POSITIVES, NEGATIVES)
    rows = [(n, _count(cand[n]) if n in counts else _auc_cell(cand) if n == AUC else _fmt(cand[n]),
             (_count(base[n]) if n in counts else _auc_cell(base) if n == AUC else _fmt(base[n])) if n in base else "—")
            for n in names]
    baseline = (f"serving version {summary['baseline_version']}" if summary["baseline_version"] is not None
                else "none in serving (absolute thresholds only)")
    rule = summary.get("blessing_rule")
    head = (f"<p>Verdict: {html_report.verdict(summary['blessed'], 'BLESSED', 'NOT BLESSED')}. "
            f"Baseline: {html_report.esc(baseline)}.</p>"
            + (f"<p>Rule: {html_report.esc(rule)}.</p>" if rule else ""))
    failure_rows = [(f["slice"], f["metric"], "change against baseline" if f["is_diff"] else "value",
                     f"{f['value']:.4f}", f["message"]) for f in summary["failures"]]
    failures = (html_report.table(["slice", "metric", "kind", "value", "message"], failure_rows)
                if summary["failures"] else "<p>All thresholds met.</p>")
    sections = [head, "<h2>Overall metrics</h2>", html_report.table(["metric", "candidate", "baseline"], rows),
                "<h2>Threshold failures</h2>", failures,
                f'<p class="muted">An AUC is marked unreliable (and a slice\'s left out of its chart) when it rests '
                f"on fewer than {MIN_CLASS_COUNT} positives or {MIN_CLASS_COUNT} negatives.</p>"]
    for feature, values in sorted(_slice_rows(summary["slices"]).items()):
        sections.extend(_slice_section(feature, values))
    return html_report.page("flywheel model evaluation", sections)


def _lower_bound(threshold: dict[str, Any]) -> Optional[float]:
    """The value threshold's lower bound from a threshold as thresholds_of keeps it (either JSON key style)."""
    value = threshold.get("value_threshold", threshold.get("valueThreshold", {}))
    bound = value.get("lower_bound", value.get("lowerBound"))
    return float(bound["value"] if isinstance(bound, dict) else bound) if bound is not None else None


def _auc_line(summary: dict[str, Any]) -> str:
    auc = summary["candidate"].get(AUC)
    line = f"Overall AUC: **{_fmt(auc)}**"
    lower = _lower_bound(summary["thresholds"].get("AUC", {}))
    if lower is not None:
        line += f", required ≥ {lower:g}"
    base = summary["baseline"].get(AUC)
    if summary["baseline_version"] is not None and base is not None:
        change = f", change {auc - base:+.4f}" if auc is not None else ""
        line += f"; serving model (version {summary['baseline_version']}) {_fmt(base)}{change}"
    return line + "."


def render_markdown(summary: dict[str, Any]) -> str:
    """Blessed or not and why, overall AUC against its thresholds, the baseline and a table of slices, as
    Markdown (what the KFP UI shows beside the HTML report)."""
    baseline = (f"serving version {summary['baseline_version']}" if summary["baseline_version"] is not None
                else "none in serving (absolute thresholds only)")
    lines = [f"## Model evaluation: {'BLESSED' if summary['blessed'] else 'NOT BLESSED'}", ""]
    if summary.get("blessing_rule"):
        lines += [summary["blessing_rule"][0].upper() + summary["blessing_rule"][1:] + ".", ""]
    lines += [_auc_line(summary), "", f"Baseline: {baseline}.", ""]
    if summary["failures"]:
        lines += ["### Why not blessed", "", markdown.table(
            ["slice", "metric", "kind", "value", "message"],
            [(f["slice"], f["metric"], "change against baseline" if f["is_diff"] else "value", f"{f['value']:.4f}",
              f["message"]) for f in summary["failures"]]), ""]
    else:
        lines += ["All thresholds met.", ""]
    rows = [(f"{feature}={value}", _count(m.get(EXAMPLE_COUNT)), _count(m.get(POSITIVES)), _auc_cell(m),
             _fmt(m.get("binary_accuracy")) if "binary_accuracy" in m else "—")
            for feature, values in sorted(_slice_rows(summary["slices"]).items()) for value, m in values]
    if rows:
        lines += ["### Slices", "", markdown.table(["slice", "examples", "positives", "AUC", "accuracy"], rows),
                  ""]
        if any(AUC in m and m[AUC] is None for m in summary["slices"].values()):
            lines += ["AUC n/a: the slice holds one class only, so its AUC is undefined (not 0).", ""]
        if any(unreliable(m) for m in summary["slices"].values()):
            lines += [f"AUC (unreliable): the slice holds fewer than {MIN_CLASS_COUNT} positives or "
                      f"{MIN_CLASS_COUNT} negatives.", ""]
    return "\n".join(lines)
