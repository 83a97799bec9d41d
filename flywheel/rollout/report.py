"""The rollout analysis as a self-contained HTML page (inline SVG, no scripts): decision, checks, charts, evidence.

The prediction charts are the drift monitor's own (`flywheel.monitoring.report`): both sides' predictions overlaid
on a robust range beside their CDFs with the Kolmogorov–Smirnov gap marked; stable is drawn where the monitor
draws its baseline, the candidate where it draws the current data.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Optional

from flywheel import storage
from flywheel.monitoring.report import BASE, CUR, cdf_svg, distribution_svg
from flywheel.reports import html_report
from flywheel.reports.html_report import esc
from flywheel.rollout.analysis import REPORT_FILE, RESULT_FILE, RULE, AnalysisResult, Check, SideStats

_DECISION_CLASS = {"promote": "pass", "rollback": "fail", "wait": "muted"}


def _legend(result: AnalysisResult) -> str:
    return (f'<div class="muted"><span style="color:{BASE}">■ stable v{result.stable.version}</span> '
            f'<span style="color:{CUR}">■ candidate v{result.candidate.version}</span></div>')


def _verdict(check: Check) -> str:
    if check.passed is None:
        return '<span class="muted">not evaluated</span>'
    if check.overruled:
        return f'<span class="warn">FAIL, does not block</span><div class="muted">{esc(check.overruled)}</div>'
    return html_report.verdict(check.passed, "pass", "FAIL")


def _num(value: Optional[float], fmt: str = "{:.4g}") -> str:
    return "n/a" if value is None else fmt.format(value)


def _checks(result: AnalysisResult) -> str:
    return html_report.table(
        ["check", "measured", "value", "limit", "evidence", "rule", "verdict"],
        [(c.name, c.measure, _num(c.value), c.limit(), c.detail, c.rule, _verdict(c)) for c in result.checks],
        raw_columns=(6,))


def _side_rows(side: SideStats) -> list[str]:
    lat, pred = side.latency_ms, side.predictions
    return [str(side.version), f"{side.requests:,}", f"{side.rows:,}", f"{side.shadow_requests:,}",
            f"{side.model_errors:,} ({_num(side.error_rate, '{:.2%}')})",
            f"{side.client_errors:,} ({_num(side.client_error_rate, '{:.2%}')})",
            " / ".join(_num(lat.get(f"p{q}"), "{:.2f}") for q in (50, 90, 99)),
            _num(pred.get("mean")), _num(pred.get("std")),
            f"{_num(pred.get('min'))} .. {_num(pred.get('max'))}",
            f"{_num(side.auc, '{:.4f}')} ({side.labelled_rows:,} labelled)"]


def _sides(result: AnalysisResult) -> str:
    headers = ["", "version", "requests", "rows", "shadow requests", "model errors (5xx)", "client errors (4xx)",
               "latency p50 / p90 / p99 ms", "prediction mean", "prediction std", "prediction range", "AUC"]
    return html_report.table(headers, [["stable", *_side_rows(result.stable)],
                                       ["candidate", *_side_rows(result.candidate)]])


def _named_routes(result: AnalysisResult) -> str:
    """The requests that named their version or label: counted, not judged (the split did not choose them)."""
    s, c = result.stable.version, result.candidate.version
    if not result.named_routes:
        return ('<p class="muted">Judged: the requests the split routed (the default route). No request named a '
                "version or label.</p>")
    rows = [(f"/{route}s/...", f"{n['stable']:,}", f"{n['candidate']:,}", f"{n['failed']:,}")
            for route, n in sorted(result.named_routes.items())]
    return ("<h3>Not judged: requests that named a version or label</h3>"
            + html_report.table(["route", f"to stable v{s}", f"to candidate v{c}", "not answered (4xx/5xx)"], rows)
            + '<p class="muted">Judged: only the requests the split routed (the default route). A request to '
              "/versions/N or /labels/L chose its side itself, so it says nothing about the split's traffic (a "
              "client could sink either side with bad input): it is counted here, never judged.</p>")


def _prediction_card(result: AnalysisResult) -> str:
    found = result.prediction_drift
    chart = found.get("chart") if found else None
    if not chart:
        return html_report.card("predictions", '<p class="muted">no predictions on one side: not compared</p>')
    ks = next((c["value"] for c in found["checks"] if c["metric"] == "ks_statistic"), None)
    floor = (found.get("noise_floor") or {}).get("metrics", {})

    def changed(c: dict) -> bool:  # the check's rule: over the threshold and over what chance reaches
        return c["drift"] and c["value"] > floor.get(c["metric"], float("-inf"))

    lo, hi = chart["range"]
    body = (_legend(result) + distribution_svg(chart) + cdf_svg(chart, ks)
            + f'<div class="muted">range {lo:.4g} to {hi:.4g} (1st–99th percentile of either side). Left: share of '
              "predictions per bin; right: cumulative share.</div>"
            + html_report.table(["metric", "value", "rule", "chance reaches", "verdict"],
                                [(c["metric"], f"{c['value']:.4f}", c["rule"],
                                  f"{floor[c['metric']]:.4f}" if c["metric"] in floor else "",
                                  html_report.verdict(not changed(c), "ok", "drift")) for c in found["checks"]],
                                raw_columns=(4,)))
    drifted = result.check("prediction_drift").passed is False
    return html_report.card(f"predictions — {'DRIFT' if drifted else 'same distribution'}", body)


def _latency_card(result: AnalysisResult) -> str:
    s, c = result.stable.latency_ms, result.candidate.latency_ms
    labels = [k for k in ("p50", "p90", "p99") if k in s and k in c]
    if not labels:
        return html_report.card("latency", '<p class="muted">no successful requests on one side</p>')
    chart = html_report.bar_chart(labels, [[s[k] for k in labels], [c[k] for k in labels]],
                                  names=("stable", "candidate"), value_format="{:.1f}")
    values = "; ".join(f"{k}: stable {s[k]:.2f}, candidate {c[k]:.2f}" for k in labels)
    return html_report.card("latency percentiles (ms, successful requests)",
                            _legend(result) + chart + f'<div class="muted">{esc(values)} ms</div>')


def _errors_card(result: AnalysisResult) -> str:
    s, c = result.stable, result.candidate
    labels = ["5xx model", "4xx client"]
    chart = html_report.bar_chart(labels, [[s.error_rate or 0.0, s.client_error_rate or 0.0],
                                           [c.error_rate or 0.0, c.client_error_rate or 0.0]],
                                  names=("stable", "candidate"), value_format="{:.2%}")
    return html_report.card("error rates (share of requests)", _legend(result) + chart
                            + f'<div class="muted">model errors: stable {_num(s.error_rate, "{:.2%}")}, candidate '
                              f'{_num(c.error_rate, "{:.2%}")}; client errors: stable '
                              f'{_num(s.client_error_rate, "{:.2%}")}, candidate '
                              f'{_num(c.client_error_rate, "{:.2%}")}</div>')


def render(result: AnalysisResult, title: str = "flywheel rollout analysis") -> str:
    decision = (f'<p><span class="{_DECISION_CLASS[result.decision]}" style="font-size:18px">'
                f"{esc(result.decision.upper())}</span> — candidate version {result.candidate.version} vs stable "
                f"version {result.stable.version}</p>")
    reasons = "<ul>" + "".join(f"<li>{esc(r)}</li>" for r in result.reasons) + "</ul>"
    scope = (f'<p class="muted">request log: {esc(result.log_dir)}'
             + (f"; rows logged after {esc(result.since)}" if result.since else "; every logged row")
             + (f"; labels {esc(result.labels)}" if result.labels else "") + "</p>"
             + (f'<p class="{"warn" if result.freshness.maybe_incomplete else "muted"}">log freshness: '
                f"{esc(result.freshness.words())}</p>" if result.freshness else ""))
    sections = [decision + reasons + scope,
                "<h2>Checks</h2>" + _checks(result)
                + f'<p class="muted">The rule {esc(RULE.format(min_requests=result.config.min_requests))}. '
                  "Each value is compared with its limit in the direction the limit column gives.</p>",
                "<h2>Traffic</h2>" + _sides(result) + _named_routes(result),
                '<h2>Charts</h2><div class="cards">' + _prediction_card(result) + _latency_card(result)
                + _errors_card(result) + "</div>"]
    if result.notes:
        sections.append("<h2>Notes</h2><ul>" + "".join(f"<li>{esc(n)}</li>" for n in result.notes) + "</ul>")
    sections.append("<h2>Thresholds</h2>" + html_report.table(
        ["setting", "value"], [(k, v) for k, v in result.config.to_dict().items()]))
    return html_report.page(title, sections)


def write(result: AnalysisResult, out_dir: str) -> AnalysisResult:
    """analysis.json and report.html into out_dir; returns the result with `report` set to the HTML's path."""
    storage.makedirs(out_dir)
    html_path = os.path.join(out_dir, REPORT_FILE)
    result = dataclasses.replace(result, report=html_path)
    storage.write_text(os.path.join(out_dir, RESULT_FILE), json.dumps(result.to_dict(), indent=2))
    storage.write_text(html_path, render(result))
    return result
