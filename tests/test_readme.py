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


def test_command_line_synopsis_names_every_subcommand_and_option():
    from flywheel import cli

    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        text = f.read()
    section = text[text.index("## Command line"):]
    section = section[:section.index("\n## ", 1)]
    parser = cli._parser()
    subparsers = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    missing = []
    for name, sub in subparsers.choices.items():
        if f"flywheel {name} " not in section:
            missing.append(name)
        for action in sub._actions:
            missing += [f"{name} {o}" for o in action.option_strings if o.startswith("--") and o != "--help"
                        and o not in section]
    assert missing == [], f"README's command line section misses {missing}"
    for code in ("0", "1", "2", "3", "4"):
        assert f"{code} " in section
