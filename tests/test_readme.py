"""The README renders as CommonMark the way it reads as text: every section is a section, every fence closes."""

from __future__ import annotations

import os
import re

from markdown_it import MarkdownIt

from tests.conftest import REPO

DOCS = ["README.md", "kubeflow/README.md", "kubeflow/schedule/README.md",
        *[f"components/{c}/README.md" for c in ("ingest", "data_gate", "evaluate", "push", "monitor")]]


def _tokens(path: str):
    with open(os.path.join(REPO, path), encoding="utf-8") as f:
        text = f.read()
    return text, MarkdownIt("commonmark").enable("table").parse(text)


def test_every_heading_renders_as_a_heading_and_every_code_fence_closes():
    for path in DOCS:
        text, tokens = _tokens(path)
        headings = [t for t in tokens if t.type == "heading_open"]
        source_headings = [line for line in text.splitlines() if re.match(r"#{1,6} ", line)]
        fenced = "\n".join(t.content for t in tokens if t.type == "fence")
        assert not re.search(r"^#{1,6} ", fenced, re.M), f"{path}: a code fence swallowed a heading"
        assert len(headings) == len(source_headings), f"{path}: {len(source_headings)} headings in the text, " \
                                                      f"{len(headings)} rendered"
        assert text.count("\n```") % 2 == 0, f"{path}: an unclosed code fence"


def test_readme_tables_render_as_tables():
    text, tokens = _tokens("README.md")
    table_rows_in_text = len([line for line in text.splitlines() if line.startswith("|") and "---" not in line])
    rendered_rows = len([t for t in tokens if t.type == "tr_open"])
    assert rendered_rows == table_rows_in_text
