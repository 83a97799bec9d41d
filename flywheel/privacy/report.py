"""The privacy check's evidence, for machines (privacy.json) and people (report.html: self-contained, no scripts):
the verdict against the policy's thresholds, the class sizes, the smallest classes, what would lift k, and the
policy itself with each column's reason."""

from __future__ import annotations

import json
import os
from typing import Any

from flywheel import storage
from flywheel.privacy.anonymity import Anonymity, number
from flywheel.privacy.policy import Policy
from flywheel.reports.html_report import bar_chart, card, esc, page, table, verdict

REPORT_FILE, RESULT_FILE = "report.html", "privacy.json"


def _verdict(found: Anonymity) -> str:
    l_text = "no sensitive attribute declared" if found.l is None else (
        f"{verdict(found.l_passed)} l = {found.l:,} (threshold {found.l_threshold}): "
        f"{found.classes_under_l:,} classes, {found.rows_under_l:,} rows with fewer distinct "
        f"{', '.join(found.sensitive)} values")
    body = (f"<p>{verdict(found.k_passed)} k = {found.k:,} (threshold {found.k_threshold}): "
            f"{found.classes_under_k:,} of {found.classes:,} classes, {found.rows_under_k:,} of {found.rows:,} rows "
            f"({found.rows_under_k / found.rows:.1%}) are in classes smaller than the threshold.</p>"
            f"<p>{l_text}.</p><p class=\"muted\">Quasi-identifiers: {esc(', '.join(found.quasi_identifiers))}.</p>")
    return card("Verdict", body)


def _sizes(found: Anonymity) -> str:
    labels = [label for label, _, _ in found.sizes]
    chart = bar_chart(labels, [[rows for _, _, rows in found.sizes]], names=("rows",), width=520, height=140,
                      value_format="{:,.0f}")
    rows = [(label, f"{classes:,}", f"{n:,}", f"{n / found.rows:.1%}") for label, classes, n in found.sizes]
    return ("<h2>Class sizes</h2><p class=\"muted\">Rows by the size of the class they fall in (a class: rows that "
            "agree on every generalized quasi-identifier).</p>" + chart +
            table(["class size", "classes", "rows", "share of rows"], rows))


def _description(values: dict[str, str]) -> str:
    known = [f"{esc(name)} <b>{esc(value)}</b>" for name, value in values.items() if value != "(missing)"]
    missing = [name for name, value in values.items() if value == "(missing)"]
    return "<br>".join(known + ([f'<span class="muted">missing: {esc(", ".join(missing))}</span>'] if missing else []))


def _smallest(found: Anonymity) -> str:
    headers = ["rows", "quasi-identifiers (generalized)", *(f"distinct {s}" for s in found.sensitive)]
    rows = [(c.rows, _description(c.values), *(c.distinct[s] for s in found.sensitive)) for c in found.smallest]
    return f"<h2>The {len(found.smallest)} smallest classes</h2>" + table(headers, rows, raw_columns=(1,))


def _changes(found: Anonymity) -> str:
    if not found.single_changes:
        return ""
    singles = [(c.text, f"{c.k:,}", f"{c.rows_under_k:,}", f"{c.classes:,}") for c in
               sorted(found.single_changes, key=lambda c: (c.rows_under_k, -c.k))]
    text = ("<h2>What would lift k</h2><p>Each change alone, from the policy's generalization (fewest rows left "
            "under the threshold first):</p>" + table(["change", "k", "rows under k", "classes"], singles))
    if found.k_passed:
        return text
    steps = [(i + 1, c.text, f"{c.k:,}", f"{c.rows_under_k:,}", f"{c.classes:,}") for i, c in enumerate(found.plan)]
    last = found.plan[-1].rows_under_k if found.plan else found.rows_under_k
    return text + ("<p>A plan (Datafly's heuristic: generalize the quasi-identifier with the most distinct values "
                   "one level, again and again, until the rows left under the threshold can be left out — at most "
                   "1% of them):</p>" + table(["step", "change", "k", "rows under k", "classes"], steps) +
                   f"<p>then leave out the {last:,} rows ({last / found.rows:.1%}) still in classes under "
                   f"{found.k_threshold}.</p>")


def _policy(policy: Policy) -> str:
    rows = [(c.name, c.role, c.action or (f"bins of {number(c.bin)}" if c.bin is not None else
                                          ("exact values" if c.role == "quasi_identifier" else "")), c.reason)
            for c in policy.columns]
    return f"<h2>The policy</h2><p class=\"muted\">{esc(policy.source)}</p>" + table(
        ["column", "role", "generalization / action", "why"], rows)


def render(found: Anonymity, policy: Policy, data: str) -> str:
    title = f"Privacy check: k = {found.k:,}" + (f", l = {found.l:,}" if found.l is not None else "")
    intro = f"<p class=\"muted\">Data: {esc(data)} ({found.rows:,} rows)</p>"
    return page(title, [intro, _verdict(found), _sizes(found), _smallest(found), _changes(found), _policy(policy)])


def write(folder: str, found: Anonymity, policy: Policy, data: str, result: dict[str, Any]) -> str:
    """Writes report.html and privacy.json into `folder`; returns the report's path."""
    storage.makedirs(folder)
    storage.write_text(os.path.join(folder, RESULT_FILE), json.dumps(result, indent=1, default=str))
    path = os.path.join(folder, REPORT_FILE)
    storage.write_text(path, render(found, policy, data))
    return path
