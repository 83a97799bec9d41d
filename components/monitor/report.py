"""The drift report as self-contained HTML: verdict, then one card per feature, worst first."""

from __future__ import annotations

from typing import Any

from flywheel.components.common import html_report


def _chart(feature: dict[str, Any]) -> str:
    base, cur = feature.get("baseline", {}), feature.get("current", {})
    if "frequencies" in base:
        keys = list(dict.fromkeys(list(base["frequencies"]) + list(cur.get("frequencies", {}))))[:15]
        return html_report.bar_chart(keys, [[base["frequencies"].get(k, 0.0) for k in keys],
                                            [cur.get("frequencies", {}).get(k, 0.0) for k in keys]],
                                     names=("baseline", "current"))
    qb, qc = base.get("quantiles", []), cur.get("quantiles", [])
    if not qb or not qc:
        return '<span class="muted">no values</span>'
    labels = [f"q{5 * i}" for i in range(len(qb))]
    return html_report.bar_chart(labels, [qb, qc], names=("baseline", "current")) + \
        '<div class="muted">quantiles every 5%: baseline (blue) vs current (orange)</div>'


def render(result: dict[str, Any], title: str = "flywheel drift report") -> str:
    rows = result["rows"]
    head = (f"<p>{html_report.verdict(not result['drift_detected'], 'NO DRIFT', 'DRIFT DETECTED')} — "
            f"baseline {rows['baseline']:,} rows, current {rows['current']:,} rows; "
            f"{sum(f['drift'] for f in result['features'].values())} of {len(result['features'])} features drifted."
            "</p>")
    cards = []
    for name, feature in result["features"].items():
        table = html_report.table(
            ["metric", "value", "threshold", "verdict"],
            [(c["metric"], f"{c['value']:.4f}", c["threshold"], html_report.verdict(not c["drift"], "ok", "drift"))
             for c in feature["checks"]], raw_columns=(3,))
        cards.append(html_report.card(f"{name} ({feature['kind']}) — {'DRIFT' if feature['drift'] else 'ok'}",
                                      _chart(feature) + table))
    return html_report.page(title, [head, '<div class="cards">' + "".join(cards) + "</div>"])
