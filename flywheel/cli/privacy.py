"""`flywheel privacy check`: arguments -> `flywheel.api.privacy` -> text and exit status (1 below threshold)."""

from __future__ import annotations

from typing import Any

from flywheel.api.privacy import PrivacyResult, privacy_check
from flywheel.cli import exits
from flywheel.cli.text import show


def check_lines(result: PrivacyResult) -> list[str]:
    found = result.anonymity
    l_text = "" if found.l is None else f", l = {found.l:,} (threshold {found.l_threshold})"
    out = [f"flywheel privacy check: {'passed' if result.passed else 'BELOW THRESHOLD'}: k = {found.k:,} (threshold "
           f"{found.k_threshold}){l_text}; {found.rows:,} rows in {found.classes:,} classes, {found.rows_under_k:,} "
           f"({found.rows_under_k / found.rows:.1%}) in classes under k" +
           (f"; report {result.report}" if result.report else ""),
           f"  policy: {result.policy}", f"  quasi-identifiers: {', '.join(found.quasi_identifiers)}"]
    if found.smallest and not found.k_passed:
        smallest = found.smallest[0]
        out.append(f"  smallest class ({smallest.rows:,} rows): " +
                   ", ".join(f"{name} {value}" for name, value in smallest.values.items()))
    if found.plan:
        left = found.plan[-1].rows_under_k
        out.append(f"  to reach k = {found.k_threshold}: " + "; ".join(c.text for c in found.plan) +
                   f"; then leave out {left:,} rows")
    return out


def cmd_privacy(args: Any) -> int:
    result = privacy_check(args.pipeline, args.data, policy_path=args.policy, report_dir=args.report,
                           smallest=args.smallest)
    show(args, result, check_lines)
    return exits.OK if result.passed else exits.FAILED
