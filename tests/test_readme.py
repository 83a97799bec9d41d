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


def _typed_commands(text: str) -> list[list[str]]:
    """The `flywheel ...` commands of the README's code blocks outside the synopsis, as a shell splits them
    (continuation lines joined, a trailing `&` and comment dropped, shell variables set in the block put in);
    output lines (`flywheel retrain taxi: span 3 ...`) are not commands."""
    import shlex

    body = text[:text.index("## Command line")] + text[text.index("\n## ", text.index("## Command line") + 1):]
    commands = []
    for block in re.findall(r"^```[a-z]*\n(.*?)^```$", body, re.M | re.S):
        variables: dict[str, str] = {}
        for line in block.replace("\\\n", " ").splitlines():
            if m := re.fullmatch(r"([A-Z]+)=(\S+)", line.strip()):
                variables[m.group(1)] = m.group(2)
            if not line.startswith("flywheel "):
                continue
            tokens = shlex.split(line, comments=True)
            if any(t.endswith(":") for t in tokens[:4]):
                continue
            tokens = [variables.get(t[1:], t) if t.startswith("$") else t for t in tokens if t != "&"]
            commands.append(tokens)
    return commands


def test_the_readmes_commands_run_as_typed():
    """A new user types the README's commands in order, in one folder: each parses as `flywheel` parses it, names no
    placeholder to fill in (`<version>`), and the shell steps between them cannot collide with what an earlier
    section made."""
    from flywheel import cli

    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        text = f.read()
    commands = _typed_commands(text)
    assert len(commands) >= 20, commands
    parser = cli._parser()
    for tokens in commands:
        assert not [t for t in tokens if "<" in t or ">" in t], f"a placeholder in {' '.join(tokens)}"
        try:
            parser.parse_args(tokens[1:])
        except SystemExit:
            raise AssertionError(f"`{' '.join(tokens)}` does not parse") from None
    first_command = min(text.index(f"\n{' '.join(c[:2])} ") for c in commands)
    assert text.index("source .venv/bin/activate") < first_command, "the PATH is set before the first command"
    with open(os.path.join(REPO, "Makefile"), encoding="utf-8") as f:
        run_target = f.read().split("\nrun:", 1)[1].split("\n\n", 1)[0]
    assert "source $(VENV)/bin/activate" in run_target, "`make run` says how to put flywheel on the PATH"
    blocks = "\n".join(re.findall(r"^```[a-z]*\n(.*?)^```$", text, re.M | re.S))
    assert not re.search(r"^mkdir (?!-p )", blocks, re.M), "a mkdir that fails on a folder an earlier step made"
    outs = [c[c.index("--out") + 1] for c in commands if c[1] == "simulate" and "--out" in c]
    assert all(o.split("/")[0] in ("tour", "release") for o in outs), outs
    serving = [c for c in commands if c[1] == "serve"]
    assert len(serving) >= 2 and text.count("kill %1") >= len(serving) - 1, \
        "a server started by one section is stopped before the next starts one on the same port"
