"""Markdown for the KFP UI's Markdown viewer (GitHub-flavoured tables); plain text, no imports beyond Python."""

from __future__ import annotations

from typing import Iterable, Sequence


def cell(value: object) -> str:
    """A table cell: backslashes and pipes escaped, line breaks as spaces."""
    return str(value).replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A GitHub-flavoured Markdown table, every cell escaped."""
    lines = ["| " + " | ".join(cell(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
