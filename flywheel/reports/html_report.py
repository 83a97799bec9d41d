"""Self-contained HTML reports: inline CSS and SVG charts, no scripts, open offline."""

from __future__ import annotations

import html
from typing import Iterable, Optional, Sequence

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1100px}
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:8px 0;font-size:13px}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f4f4f4}.pass{color:#17732b;font-weight:bold}.fail{color:#b00020;font-weight:bold}
.cards{display:flex;flex-wrap:wrap;gap:12px}.card{border:1px solid #ddd;padding:8px;border-radius:4px}
.card h3{font-size:13px;margin:0 0 4px 0}.muted{color:#777;font-size:12px}.warn{color:#a15c00;font-weight:bold}
"""


def esc(value: object) -> str:
    return html.escape(str(value))


def verdict(passed: bool, yes: str = "PASSED", no: str = "FAILED") -> str:
    return f'<span class="{"pass" if passed else "fail"}">{yes if passed else no}</span>'


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], raw_columns: Sequence[int] = ()) -> str:
    """An HTML table; cells are escaped except in `raw_columns` (already HTML)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = "".join(f"<td>{c if i in raw_columns else esc(c)}</td>" for i, c in enumerate(row))
        body.append(f"<tr>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def bar_chart(labels: Sequence[str], series: Sequence[Sequence[float]], names: Sequence[str] = ("",),
              width: int = 320, height: int = 120, colors: Sequence[str] = ("#4c78a8", "#f58518"),
              value_format: Optional[str] = None) -> str:
    """Vertical bars, one group per label, one bar per series, as inline SVG, over a baseline; a bar at 0 is a
    line on it. `value_format` (e.g. "{:.2%}"): each bar's value written above it, 0 included."""
    if not labels:
        return '<span class="muted">no data</span>'
    top = max((v for s in series for v in s), default=0) or 1.0
    group_w = width / len(labels)
    bar_w = max(group_w / (len(series) + 0.5), 1)
    room = 12 if value_format else 0
    parts = [f'<svg width="{width}" height="{height + room + 14}" xmlns="http://www.w3.org/2000/svg">',
             f'<g transform="translate(0,{room})">',
             f'<line x1="0" y1="{height}" x2="{width}" y2="{height}" stroke="#999" stroke-width="1"/>']
    for i, label in enumerate(labels):
        for k, values in enumerate(series):
            h = max((values[i] / top) * height, 2.0 if values[i] == 0 else 0.0)
            x = i * group_w + k * bar_w
            parts.append(
                f'<rect x="{x:.1f}" y="{height - h:.1f}" width="{bar_w * 0.9:.1f}" height="{h:.1f}" '
                f'fill="{colors[k % len(colors)]}"><title>{esc(names[k] if k < len(names) else "")} '
                f'{esc(label)}: {values[i]:.4g}</title></rect>'
            )
            if value_format:
                parts.append(f'<text x="{x + bar_w * 0.45:.1f}" y="{height - h - 2:.1f}" font-size="10" '
                             f'text-anchor="middle">{esc(value_format.format(values[i]))}</text>')
    parts.append(f'<text x="0" y="{height + 12}" font-size="10">{esc(labels[0])[:18]}</text>')
    if len(labels) > 1:
        parts.append(f'<text x="{width}" y="{height + 12}" font-size="10" text-anchor="end">'
                     f'{esc(labels[-1])[:18]}</text>')
    parts.append("</g></svg>")
    return "".join(parts)


def hbar_chart(labels: Sequence[str], values: Sequence[float], width: int = 360, fmt: str = "{:.3f}",
               top: Optional[float] = None, texts: Optional[Sequence[str]] = None) -> str:
    """Horizontal bars with their values, e.g. a metric per slice; `top` fixes the full-width value (AUC: 1);
    `texts`: what is written beside each bar instead of its value (the value when the bars are on a log scale)."""
    if not labels:
        return '<span class="muted">no data</span>'
    top = top or max(abs(v) for v in values) or 1.0
    row_h, label_w = 16, 150
    parts = [f'<svg width="{width + label_w + 60}" height="{row_h * len(labels) + 4}" xmlns="http://www.w3.org/2000/svg">']
    for i, (label, value) in enumerate(zip(labels, values, strict=False)):
        y = i * row_h
        w = abs(value) / top * width
        parts.append(f'<text x="0" y="{y + 12}" font-size="11">{esc(label)[:24]}</text>')
        parts.append(f'<rect x="{label_w}" y="{y + 2}" width="{w:.1f}" height="{row_h - 4}" fill="#4c78a8"/>')
        text = texts[i] if texts is not None else fmt.format(value)
        parts.append(f'<text x="{label_w + w + 4:.1f}" y="{y + 12}" font-size="11">{esc(text)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def card(title: str, body: str) -> str:
    return f'<div class="card"><h3>{esc(title)}</h3>{body}</div>'


def page(title: str, sections: Sequence[str]) -> str:
    """A whole HTML document: inline CSS, no external resources, no scripts."""
    return (
        f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{esc(title)}</title>"
        f"<style>{_CSS}</style></head><body><h1>{esc(title)}</h1>{''.join(sections)}</body></html>"
    )
