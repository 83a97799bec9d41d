"""The gate's self-contained HTML report: verdict, anomalies, statistics charts."""

from __future__ import annotations

from tensorflow_metadata.proto.v0 import statistics_pb2

from flywheel.components.common import html_report, markdown, statistics_charts
from flywheel.components.data_gate import gate


def render(verdict: gate.Verdict, statistics: dict[str, statistics_pb2.DatasetFeatureStatisticsList]) -> str:
    d = verdict.to_dict()
    summary = (f"<p>Data validation gate: {html_report.verdict(verdict.passed)} — {html_report.esc(d['decision'])}."
               f" Anomalies: {d['num_anomalies']}, blocking: {d['num_blocking']}. Allow-list: "
               f"{html_report.esc(', '.join(verdict.allowed_anomalies) or '(empty)')}</p>")
    rows = [(f.split, f.feature, f.type, f.description,
             html_report.verdict(f.allowed, "allowed", "blocking")) for f in verdict.findings]
    anomalies = ("<h2>Anomalies</h2>" + (html_report.table(["split", "feature", "type", "description", "status"],
                                                          rows, raw_columns=(4,))
                                         if rows else "<p>No anomalies: the data matches the schema.</p>"))
    stats = "".join(statistics_charts.statistics_section(s, f"Statistics, split {name}")
                    for name, s in sorted(statistics.items()))
    return html_report.page("flywheel data validation gate", [summary, anomalies, stats])


def render_markdown(verdict: gate.Verdict) -> str:
    """The verdict and every anomaly (allowed or blocking) as Markdown, for the KFP UI."""
    d = verdict.to_dict()
    lines = [f"## Data validation gate: {'PASSED' if verdict.passed else 'FAILED'}", "",
             f"{d['decision'][0].upper()}{d['decision'][1:]}. Anomalies: {d['num_anomalies']}, "
             f"blocking: {d['num_blocking']}. Allow-list: "
             f"{', '.join(f'`{a}`' for a in verdict.allowed_anomalies) or '(empty)'}.", ""]
    if verdict.findings:
        lines.append(markdown.table(
            ["split", "feature", "type", "description", "status"],
            [(f.split, f.feature, f.type, f.description, "allowed" if f.allowed else "**blocking**")
             for f in verdict.findings]))
    else:
        lines.append("No anomalies: the data matches the schema.")
    return "\n".join(lines) + "\n"
