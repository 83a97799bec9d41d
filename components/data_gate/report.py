"""The gate's self-contained HTML report: verdict, anomalies, statistics charts."""

from __future__ import annotations

import dataclasses
import os
from typing import Optional

from tensorflow_metadata.proto.v0 import statistics_pb2
from tfx import types

from flywheel.components.data_gate import gate
from flywheel.components.ingest.spec import QUARANTINE_FILE, ROWS_QUARANTINED, ROWS_READ
from flywheel.reports import html_report, markdown, statistics_charts


@dataclasses.dataclass(frozen=True)
class QuarantineSummary:
    """Ingest's quarantine as the gate reports it: rows quarantined of rows read, and the file holding them."""

    rows_quarantined: int
    rows_read: int
    path: str

    @classmethod
    def of(cls, quarantine: types.Artifact) -> "QuarantineSummary":
        return cls(quarantine.get_int_custom_property(ROWS_QUARANTINED),
                   quarantine.get_int_custom_property(ROWS_READ),
                   os.path.join(quarantine.uri, QUARANTINE_FILE))

    def words(self) -> str:
        share = f" ({self.rows_quarantined / self.rows_read:.2%})" if self.rows_read else ""
        return (f"Ingest quarantined {self.rows_quarantined:,} of {self.rows_read:,} rows read{share}; they are not "
                f"in the statistics or the anomalies below. Each is in {self.path} with its file, line and reason.")


def render(verdict: gate.Verdict, statistics: dict[str, statistics_pb2.DatasetFeatureStatisticsList],
           quarantine: Optional[QuarantineSummary] = None) -> str:
    d = verdict.to_dict()
    summary = (f"<p>Data validation gate: {html_report.verdict(verdict.passed)} — {html_report.esc(d['decision'])}."
               f" Anomalies: {d['num_anomalies']}, blocking: {d['num_blocking']}. Allow-list: "
               f"{html_report.esc(', '.join(verdict.allowed_anomalies) or '(empty)')}</p>")
    if quarantine is not None:
        summary += f"<p>Quarantine: {html_report.esc(quarantine.words())}</p>"
    rows = [(f.split, f.feature, f.type, f.description,
             html_report.verdict(f.allowed, "allowed", "blocking")) for f in verdict.findings]
    anomalies = ("<h2>Anomalies</h2>" + (html_report.table(["split", "feature", "type", "description", "status"],
                                                          rows, raw_columns=(4,))
                                         if rows else "<p>No anomalies: the data matches the schema.</p>"))
    stats = "".join(statistics_charts.statistics_section(s, f"Statistics, split {name}")
                    for name, s in sorted(statistics.items()))
    return html_report.page("flywheel data validation gate", [summary, anomalies, stats])


def render_markdown(verdict: gate.Verdict, quarantine: Optional[QuarantineSummary] = None) -> str:
    """The verdict, the quarantine's count when known, and every anomaly (allowed or blocking) as Markdown, for the
    KFP UI."""
    d = verdict.to_dict()
    lines = [f"## Data validation gate: {'PASSED' if verdict.passed else 'FAILED'}", "",
             f"{d['decision'][0].upper()}{d['decision'][1:]}. Anomalies: {d['num_anomalies']}, "
             f"blocking: {d['num_blocking']}. Allow-list: "
             f"{', '.join(f'`{a}`' for a in verdict.allowed_anomalies) or '(empty)'}.", ""]
    if quarantine is not None:
        lines += [quarantine.words(), ""]
    if verdict.findings:
        lines.append(markdown.table(
            ["split", "feature", "type", "description", "status"],
            [(f.split, f.feature, f.type, f.description, "allowed" if f.allowed else "**blocking**")
             for f in verdict.findings]))
    else:
        lines.append("No anomalies: the data matches the schema.")
    return "\n".join(lines) + "\n"
