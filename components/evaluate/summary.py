"""Reads TFMA's output into a plain summary (overall and sliced metrics, thresholds, verdict) and HTML."""

from __future__ import annotations

from typing import Any, Optional

import tensorflow_model_analysis as tfma

from flywheel.components.common import html_report


def _value(metric: dict) -> Optional[float]:
    for key in ("doubleValue", "double_value"):
        if key in metric:
            return float(metric[key])
    if "boundedValue" in metric:
        return float(metric["boundedValue"]["value"])
    return None


def _slice_name(slice_key) -> str:
    return "Overall" if not slice_key else ", ".join(f"{k}={v}" for k, v in slice_key)


def metrics_by_slice(output_path: str, model_name: str) -> dict[str, dict[str, float]]:
    result = tfma.load_eval_result(output_path, model_name=model_name)
    out: dict[str, dict[str, float]] = {}
    for slice_key, by_output in result.slicing_metrics:
        metrics = {}
        for by_sub_key in by_output.values():
            for sub_metrics in by_sub_key.values():  # noqa: B007
                for name, metric in sub_metrics.items():
                    v = _value(metric)
                    if v is not None:
                        metrics[name] = v
        out[_slice_name(slice_key)] = metrics
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


def build_summary(output_path: str, thresholds: dict[str, Any], baseline_version: Optional[int]) -> dict[str, Any]:
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
    return summary


def render(summary: dict[str, Any]) -> str:
    cand, base = summary["candidate"], summary["baseline"]
    names = sorted(n for n in cand if not n.startswith("__"))
    rows = [(n, f"{cand[n]:.4f}", f"{base[n]:.4f}" if n in base else "—") for n in names]
    baseline = (f"serving version {summary['baseline_version']}" if summary["baseline_version"] is not None
                else "none in serving (absolute thresholds only)")
    head = (f"<p>Verdict: {html_report.verdict(summary['blessed'], 'BLESSED', 'NOT BLESSED')}. "
            f"Baseline: {baseline}. Thresholds: {html_report.esc(summary['thresholds'])}</p>")
    failure_rows = [(f["slice"], f["metric"], f["model"], f["is_diff"], f"{f['value']:.4f}", f["message"])
                    for f in summary["failures"]]
    failures = (html_report.table(["slice", "metric", "model", "diff", "value", "message"], failure_rows)
                if summary["failures"] else "<p>All thresholds met.</p>")
    sections = [head, "<h2>Overall metrics</h2>", html_report.table(["metric", "candidate", "baseline"], rows),
                "<h2>Threshold failures</h2>", failures]
    by_feature: dict[str, list[tuple[str, float]]] = {}
    for name, metrics in summary["slices"].items():
        feature, _, value = name.partition("=")
        if "auc" in metrics:
            by_feature.setdefault(feature, []).append((value, metrics["auc"]))
    for feature, values in sorted(by_feature.items()):
        values.sort(key=lambda kv: (len(kv[0]), kv[0]))
        sections.append(f"<h2>AUC by {html_report.esc(feature)}</h2>")
        sections.append(html_report.hbar_chart([v for v, _ in values], [a for _, a in values]))
    return html_report.page("flywheel model evaluation", sections)
