"""The drift report as self-contained HTML (inline SVG, no scripts): verdict, then one card per column, worst first.

Every chart shows what its verdict is about: numeric columns as the two distributions overlaid on a
robust range (1st to 99th percentile of either side, so a long tail does not flatten them) beside the
two CDFs with the Kolmogorov–Smirnov gap marked; categorical columns as the shares of every category
shown, each labelled. Each threshold is stated in words.
"""

from __future__ import annotations

from typing import Any, Sequence

from flywheel.reports import html_report, markdown
from flywheel.reports.html_report import esc

BASE, CUR = "#4c78a8", "#f58518"
_W, _H, _PAD = 340, 150, 36


def _fmt(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.4g}"


def _legend() -> str:
    return (f'<div class="muted"><span style="color:{BASE}">■ baseline</span> '
            f'<span style="color:{CUR}">■ current</span></div>')


def _axes(lo: float, hi: float, top: float, y_label: str, ticks: Sequence[float] = ()) -> list[str]:
    x0, y0, x1 = _PAD, _H, _PAD + _W
    parts = [f'<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" stroke="#999"/>',
             f'<line x1="{x0}" y1="10" x2="{x0}" y2="{y0}" stroke="#999"/>',
             f'<text x="{x0 - 3}" y="14" font-size="10" text-anchor="end">{esc(y_label.format(top))}</text>',
             f'<text x="{x0 - 3}" y="{y0}" font-size="10" text-anchor="end">0</text>']
    for value in ticks or (lo, (lo + hi) / 2, hi):
        x = _x(value, lo, hi)
        anchor = "start" if x < x0 + 20 else "end" if x > x1 - 20 else "middle"
        parts.append(f'<text x="{x:.1f}" y="{y0 + 13}" font-size="10" text-anchor="{anchor}">'
                     f'{esc(_fmt(value))}</text>')
    return parts


def _svg(parts: Sequence[str], title: str) -> str:
    return (f'<svg width="{_W + _PAD + 10}" height="{_H + 20}" xmlns="http://www.w3.org/2000/svg" role="img">'
            f"<title>{esc(title)}</title>{''.join(parts)}</svg>")


def _x(value: float, lo: float, hi: float) -> float:
    return _PAD + (value - lo) / ((hi - lo) or 1.0) * _W


def distribution_svg(chart: dict[str, Any]) -> str:
    """Shares per bin (or per value, for few distinct values), both sides overlaid, on the robust range."""
    lo, hi = chart["range"]
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    top = max(chart["baseline"] + chart["current"] + [1e-12])
    parts = _axes(lo, hi, top, "{:.0%}")
    if "edges" in chart:
        edges = chart["edges"]
        spans = [(edges[i], edges[i + 1]) for i in range(len(edges) - 1)]
    else:
        values = chart["values"]
        half = (min((b - a for a, b in zip(values, values[1:], strict=False)), default=1.0) or 1.0) * 0.4
        spans = [(v - half, v + half) for v in values]
        lo, hi = min(lo, values[0] - half), max(hi, values[-1] + half)
        parts = _axes(lo, hi, top, "{:.0%}", (values[0], values[len(values) // 2], values[-1]))
    for shares, color, opacity in ((chart["baseline"], BASE, 0.55), (chart["current"], CUR, 0.45)):
        for (a, b), share in zip(spans, shares, strict=True):
            h = share / top * (_H - 12)
            x, w = _x(a, lo, hi), max(_x(b, lo, hi) - _x(a, lo, hi) - 0.5, 1.0)
            parts.append(f'<rect x="{x:.1f}" y="{_H - h:.1f}" width="{w:.1f}" height="{h:.1f}" fill="{color}" '
                         f'fill-opacity="{opacity}"><title>{_fmt(a)}..{_fmt(b)}: {share:.2%}</title></rect>')
    return _svg(parts, "distribution of baseline and current")


def cdf_svg(chart: dict[str, Any], ks: float | None) -> str:
    """The two empirical CDFs on the same range, with the largest gap (the KS statistic D) marked."""
    lo, hi = chart["range"]
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    cdf = chart["cdf"]
    parts = _axes(lo, hi, 1.0, "{:.0%}")
    for key, color in (("baseline", BASE), ("current", CUR)):
        points, previous = [], 0.0 if not cdf[key] else None
        for x, y in zip(cdf["x"], cdf[key], strict=True):
            px, py = _x(x, lo, hi), _H - y * (_H - 12)
            if previous is not None:
                points.append(f"{px:.1f},{previous:.1f}")
            points.append(f"{px:.1f},{py:.1f}")
            previous = py
        parts.append(f'<polyline points="{" ".join(points)}" fill="none" stroke="{color}" stroke-width="2"/>')
    if ks is not None:
        x = _x(chart["ks_at"], lo, hi)
        parts.append(f'<line x1="{x:.1f}" y1="10" x2="{x:.1f}" y2="{_H}" stroke="#b00020" stroke-dasharray="3,3"/>'
                     f'<text x="{min(x + 3, _PAD + _W - 60):.1f}" y="22" font-size="10" fill="#b00020">'
                     f"D = {ks:.3f}</text>")
    return _svg(parts, "cumulative distributions of baseline and current")


def category_svg(chart: dict[str, Any]) -> str:
    """Every category shown is labelled: horizontal bars, baseline above current, with their shares."""
    labels = list(chart["categories"])
    base, cur = list(chart["baseline"]), list(chart["current"])
    others = chart.get("others", {})
    if others.get("count"):
        labels.append(f"other ({others['count']} categories)")
        base.append(others["baseline"])
        cur.append(others["current"])
    top = max(base + cur + [1e-12])
    row, label_w, bar_w = 24, 150, 230
    parts = []
    for i, label in enumerate(labels):
        y = i * row
        parts.append(f'<text x="0" y="{y + 15}" font-size="11"><title>{esc(label)}</title>'
                     f"{esc(label if len(label) <= 24 else label[:23] + '…')}</text>")
        for k, (share, color) in enumerate(((base[i], BASE), (cur[i], CUR))):
            w = share / top * bar_w
            yy = y + 3 + k * 9
            parts.append(f'<rect x="{label_w}" y="{yy}" width="{w:.1f}" height="8" fill="{color}"/>'
                         f'<text x="{label_w + w + 3:.1f}" y="{yy + 8}" font-size="9">{share:.1%}</text>')
    return (f'<svg width="{label_w + bar_w + 50}" height="{row * len(labels) + 4}" '
            f'xmlns="http://www.w3.org/2000/svg" role="img"><title>category shares</title>{"".join(parts)}</svg>')


def _chart(feature: dict[str, Any]) -> str:
    chart = feature.get("chart") or {}
    if not chart:
        return '<p class="muted">no values on one side: only the missing-value rate is compared</p>'
    if chart["type"] == "categorical":
        return _legend() + category_svg(chart)
    ks = next((c["value"] for c in feature["checks"] if c["metric"] == "ks_statistic"), None)
    lo, hi = chart["range"]
    out = chart["outside"]
    return (_legend() + distribution_svg(chart) + cdf_svg(chart, ks)
            + f'<div class="muted">range {_fmt(lo)} to {_fmt(hi)} (1st–99th percentile of either side); outside '
              f"it: baseline {out['baseline']:.1%}, current {out['current']:.1%} of values. Left: share of values "
              "per bin; right: cumulative share.</div>")


def _checks_table(feature: dict[str, Any]) -> str:
    return html_report.table(
        ["metric", "value", "rule", "verdict"],
        [(c["metric"], f"{c['value']:.4f}", c.get("rule", f"drift when > {c['threshold']}"),
          html_report.verdict(not c["drift"], "ok", "drift")) for c in feature["checks"]], raw_columns=(3,))


def _card(name: str, feature: dict[str, Any]) -> str:
    rows = feature.get("rows", {})
    note = (f'<div class="muted">{rows.get("baseline", 0):,} baseline and {rows.get("current", 0):,} current values'
            + ("; compared on the distinct values both profiles kept (a hash-coordinated sample)"
               if feature.get("sampled") else "") + "</div>")
    return html_report.card(f"{name} ({feature['kind']}) — {'DRIFT' if feature['drift'] else 'ok'}",
                            _chart(feature) + note + _checks_table(feature))


def _verdict(result: dict[str, Any]) -> str:
    if result["drift_detected"] is None:
        return '<span class="fail">NO BASELINE</span>'
    return html_report.verdict(not result["drift_detected"], "NO DRIFT", "DRIFT DETECTED")


def render(result: dict[str, Any], title: str = "flywheel drift report") -> str:
    rows = result["rows"]
    features = result["features"]
    head = [f"<p>{_verdict(result)} — {esc(result['reason'])}</p>"]
    if result["drift_detected"] is None:
        head.append(f"<p>No baseline to compare with: this is not drift. Current data: {rows['current']:,} rows "
                    f"({esc(result.get('current') or '')}).</p>")
    else:
        head.append(f"<p>baseline {rows['baseline']:,} rows ({esc(result.get('baseline') or '')}), current "
                    f"{rows['current']:,} rows ({esc(result.get('current') or '')}); "
                    f"{sum(f['drift'] for f in features.values())} of {len(features)} features drifted. "
                    "A feature drifts when any of its checks crosses its threshold; the label's columns are "
                    "compared apart (label drift) and do not decide.</p>")
    data = result.get("data")
    if data:
        head.append(f"<p>Current data as Ingest types it: {data['rows_read']:,} rows read, "
                    f"{data['rows_quarantined']:,} quarantined and left out"
                    + (": " + esc("; ".join(data["first_quarantined"])) if data["first_quarantined"] else "")
                    + ".</p>")
    perf = result.get("performance")
    if perf:
        if "skipped" in perf:
            head.append(f"<p>Performance not computed: {esc(perf['skipped'])}.</p>")
        else:
            head.append(f"<p>AUC {perf['value']:.4f} on {perf['rows']:,} labelled rows"
                        + (f" vs reference {perf['reference']:.4f}: drift when it drops by more than "
                           f"{perf['threshold']:g} — {html_report.verdict(not perf['drift'], 'ok', 'drift')}"
                           if "reference" in perf else "") + ".</p>")
    skipped = (result.get("prediction") or {}).get("skipped")
    if skipped:
        head.append(f"<p>Prediction drift not checked: {esc(skipped)}.</p>")
    sections = ["".join(head), '<div class="cards">' + "".join(_card(n, f) for n, f in features.items()) + "</div>"]
    labels = result.get("label_drift", {}).get("features", {})
    if labels:
        state = "LABEL DRIFT" if result["label_drift"]["drift_detected"] else "no label drift"
        sections.append(f"<h2>Label columns — {state}</h2><p class=\"muted\">Columns the model learns its label from "
                        "(not in the schema's SERVING environment): a change here is a change in what is being "
                        "predicted, reported apart from feature drift.</p>"
                        '<div class="cards">' + "".join(_card(n, f) for n, f in labels.items()) + "</div>")
    if result.get("ignored_columns"):
        sections.append(f'<p class="muted">Not compared: {esc(", ".join(result["ignored_columns"]))}</p>')
    return html_report.page(title, sections)


def _verdict_word(result: dict[str, Any]) -> str:
    if result["drift_detected"] is None:
        return "NO BASELINE"
    return "DRIFT DETECTED" if result["drift_detected"] else "NO DRIFT"


def _evidence(feature: dict[str, Any]) -> str:
    crossed = [(c["metric"], c["value"], c.get("rule") or f"drift when > {c['threshold']}")
               for c in feature["checks"] if c["drift"]]
    return ("; ".join(f"{metric} {value:.4f} ({rule})" for metric, value, rule in crossed)
            or "every check below its threshold")


def render_markdown(result: dict[str, Any]) -> str:
    """The verdict, its reason, the row counts and a table of the features (worst first) as Markdown, for the
    KFP UI; the charts are in the HTML report."""
    rows = result["rows"]
    lines = [f"## Drift monitor: {_verdict_word(result)}", "", result["reason"][0].upper() + result["reason"][1:] + ".",
             ""]
    if result.get("span") is not None:
        lines += [f"Current data: span {result['span']}.", ""]
    if result["drift_detected"] is None:
        lines += [f"No baseline to compare with: this is not drift, and the model is (re)trained. Current data: "
                  f"{rows['current']:,} rows.", ""]
        return "\n".join(lines)
    features = result["features"]
    lines += [f"Baseline {rows['baseline']:,} rows, current {rows['current']:,} rows; "
              f"{sum(f['drift'] for f in features.values())} of {len(features)} features drifted.", "",
              markdown.table(["feature", "kind", "verdict", "checks over their threshold"],
                             [(name, f["kind"], "**drift**" if f["drift"] else "ok", _evidence(f))
                              for name, f in features.items()]), ""]
    labels = result.get("label_drift", {}).get("features", {})
    if labels:
        state = "label drift" if result["label_drift"]["drift_detected"] else "no label drift"
        lines += [f"Label columns (reported apart, they do not decide): {state}.", "",
                  markdown.table(["label column", "kind", "verdict", "checks over their threshold"],
                                 [(name, f["kind"], "**drift**" if f["drift"] else "ok", _evidence(f))
                                  for name, f in labels.items()]), ""]
    return "\n".join(lines)

