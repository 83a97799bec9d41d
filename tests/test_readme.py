"""The README and docs/ say what the code does and render as they read: every `flywheel` command shown parses as the
command line parses it, the tour runs as typed, every repository path named exists, the README stays short, and no
file speaks of a work session instead of a date."""

from __future__ import annotations

import ast
import copy
import glob
import os
import re
import shlex
import subprocess

import pytest
from markdown_it import MarkdownIt

from flywheel.cli.exits import EXITS
from flywheel.cli.parser import make_parser
from tests.conftest import REPO

README = "README.md"
DOCS = sorted(os.path.relpath(p, REPO) for p in glob.glob(os.path.join(REPO, "docs", "*.md")))
OTHER_READMES = sorted(os.path.relpath(p, REPO) for pattern in ("kubeflow/README.md", "kubeflow/*/README.md",
                                                                "components/*/README.md", "flywheel/*/README.md")
                       for p in glob.glob(os.path.join(REPO, pattern)))
TOUR = [README, "docs/release-tutorial.md"]
# The repository's own top-level folders: a backquoted path starting with one of them names a file of this repository.
REPO_FOLDERS = ("flywheel", "components", "pipelines", "schemas", "tests", "benchmarks", "notebooks", "kubeflow",
                "docs")
# Never written anywhere in the repository; built here so this file does not say it either.
SESSION_WORDS = "this " + "session"


def _read(path: str) -> str:
    with open(os.path.join(REPO, path), encoding="utf-8") as f:
        return f.read()


def _blocks(text: str) -> list[str]:
    """The code blocks a shell would run or print: a Python block is not one."""
    return [body for lang, body in re.findall(r"^```([a-z]*)\n(.*?)^```$", text, re.M | re.S) if lang != "python"]


def _section(text: str, heading: str) -> str:
    start = text.index(f"\n{heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start:] if end == -1 else text[start:end]


def _subcommands(parser) -> dict:
    return next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction").choices


@pytest.mark.parametrize("path", [README, *DOCS, *OTHER_READMES])
def test_every_heading_renders_as_a_heading_and_every_code_fence_closes(path):
    text = _read(path)
    tokens = MarkdownIt("commonmark").enable("table").parse(text)
    headings = [t for t in tokens if t.type == "heading_open"]
    outside_fences = re.sub(r"^```[a-z]*\n.*?^```$", "", text, flags=re.M | re.S)
    source_headings = [line for line in outside_fences.splitlines() if re.match(r"#{1,6} ", line)]
    fenced = "\n".join(t.content for t in tokens if t.type == "fence")
    assert not re.search(r"^#{2,6} ", fenced, re.M), f"{path}: a code fence swallowed a section's heading"
    assert len(headings) == len(source_headings), f"{path}: {len(source_headings)} headings in the text, " \
                                                  f"{len(headings)} rendered"
    assert text.count("\n```") % 2 == 0, f"{path}: an unclosed code fence"


@pytest.mark.parametrize("path", [README, *DOCS])
def test_tables_render_as_tables(path):
    text = _read(path)
    table_rows_in_text = len([line for line in text.splitlines() if line.startswith("|") and "---" not in line])
    rendered_rows = len([t for t in MarkdownIt("commonmark").enable("table").parse(text) if t.type == "tr_open"])
    assert rendered_rows == table_rows_in_text, path


def test_the_readme_is_what_a_newcomer_reads_in_ten_minutes():
    lines = _read(README).splitlines()
    assert len(lines) <= 250, f"README.md is {len(lines)} lines; what does not fit goes into docs/"
    headings = [line for line in lines if line.startswith("## ")]
    assert headings[:2] == ["## Two commands", "## A tour"], headings
    for heading in ("## Commands", "## Layout"):
        assert heading in headings, f"README.md has no {heading!r} section"
    for doc in DOCS:
        if doc != "docs/serving-benchmark-2026-12-07.md":
            assert f"]({doc})" in _read(README), f"README.md does not link {doc}"


def _repository_files() -> list[str]:
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                            text=True, check=True).stdout.splitlines()
    return [p for p in listed if os.path.isfile(os.path.join(REPO, p))]


def test_no_file_says_which_session_wrote_it():
    """A statement about when something was measured or changed carries its date, not the work session's name."""
    saying = []
    for path in _repository_files():
        with open(os.path.join(REPO, path), "rb") as f:
            if SESSION_WORDS.encode() in f.read().lower():
                saying.append(path)
    assert saying == [], f"{saying} say {SESSION_WORDS!r}: write the date instead"


def test_the_cli_reference_names_every_subcommand_and_option():
    section = _section(_read("docs/cli.md"), "## Synopsis")
    missing = []
    for name, sub in _subcommands(make_parser()).items():
        if f"flywheel {name} " not in section:
            missing.append(name)
        for action in sub._actions:
            missing += [f"{name} {o}" for o in action.option_strings if o.startswith("--") and o != "--help"
                        and o not in section]
    assert missing == [], f"docs/cli.md's synopsis misses {missing}"


def _commands_in_block(block: str) -> list[list[str]]:
    """The `flywheel ...` commands of one code block as a shell splits them: continuation lines joined, commands
    chained by `&&` taken apart, a `.venv/bin/` prefix (a cron line's), a trailing `&`, a redirection and a
    comment dropped, shell variables set in the block put in; output lines (`flywheel retrain taxi: span 3 ...`) and
    a synopsis (`[--json]`) are not commands."""
    variables: dict[str, str] = {}
    commands = []
    for line in block.replace("\\\n", " ").splitlines():
        line = line.split(" #")[0].split(" >>")[0]
        if m := re.fullmatch(r"([A-Z]+)=(\S+)", line.strip()):
            variables[m.group(1)] = m.group(2)
        elif m := re.match(r"([A-Z]+)=\$\(", line.strip()):  # a command's output (BAD=$(python ...): a version)
            variables[m.group(1)] = "0"
        for part in line.split("&&"):
            if not (m := re.match(r"\s*(?:\.venv/bin/)?(flywheel\s.*)$", part)):
                continue
            tokens = shlex.split(m.group(1))
            if any(t.endswith(":") for t in tokens[:4]) or any(t.startswith("[") for t in tokens):
                continue
            commands.append([variables.get(t[1:], t) if t.startswith("$") else t for t in tokens if t != "&"])
    return commands


def _typed_commands(text: str) -> list[list[str]]:
    return [c for block in _blocks(text) for c in _commands_in_block(block)]


def _inline_commands(text: str) -> list[list[str]]:
    """Commands written inline with an option (`flywheel rollout status --serving-dir release/state/serving`,
    `flywheel predict --engine local`), unless they hold an ellipsis, a choice of spellings or a placeholder (`V`,
    `DIR`, `<serving>`): often a part of a command, so what they lack is not checked, what they say is."""
    commands = []
    for span in re.findall(r"`(flywheel [^`]*--[^`]*)`", text):
        tokens = shlex.split(span)
        if not re.search(r"\.\.\.|[<>|\[]", span) and not any(re.fullmatch(r"[A-Z][A-Z_]*", t) for t in tokens):
            commands.append(tokens)
    return commands


def _options(parser, tokens: list[str]) -> list[str]:
    """The options of the (sub)command `tokens` name: `flywheel serve ...` or `flywheel rollout analyze ...`."""
    command = _subcommands(parser)[tokens[1]]
    nested = [a for a in command._actions if a.__class__.__name__ == "_SubParsersAction"]
    if nested and len(tokens) > 2 and tokens[2] in nested[0].choices:
        command = nested[0].choices[tokens[2]]
    return [o for action in command._actions for o in action.option_strings]


def _parses(parser, tokens: list[str]) -> bool:
    try:
        parser.parse_args(tokens[1:])
    except SystemExit as stop:
        return stop.code == 0  # `flywheel --version` says its version and stops
    return True


def _lenient(parser):
    """The parser with nothing required: for a part of a command, shown inline."""
    lenient = copy.deepcopy(parser)
    for sub in [lenient, *_subcommands(lenient).values()]:
        for action in sub._actions:
            if action.__class__.__name__ == "_SubParsersAction":
                for nested in action.choices.values():
                    for nested_action in nested._actions:
                        nested_action.required = False
            else:
                action.required = False
    return lenient


@pytest.mark.parametrize("path", [README, *DOCS])
def test_every_command_shown_parses(path):
    text = _read(path)
    parser = make_parser()
    for tokens in _typed_commands(text):
        assert _parses(parser, tokens), f"{path}: `{' '.join(tokens)}` does not parse"
    lenient = _lenient(parser)
    for tokens in _inline_commands(text):
        if tokens[-1].startswith("--") and not _parses(lenient, tokens):  # an option named, its value left out
            assert tokens[-1] in _options(parser, tokens), f"{path}: `{' '.join(tokens)}`: no such option"
            tokens = tokens[:-1]
        assert _parses(lenient, tokens), f"{path}: `{' '.join(tokens)}` does not parse"


def test_the_tour_runs_as_typed():
    """A new user types the tour's commands in order, in one folder, the README's and then the release tutorial's:
    none names a placeholder to fill in (`<version>`), the PATH is set before the first, and the shell steps between
    them cannot collide with what an earlier step made."""
    texts = [_read(p) for p in TOUR]
    commands = [c for text in texts for c in _typed_commands(text)]
    assert len(commands) >= 20, commands
    for tokens in commands:
        assert not [t for t in tokens if "<" in t or ">" in t], f"a placeholder in {' '.join(tokens)}"
    readme = texts[0]
    first_command = min(readme.index(f"\n{' '.join(c[:2])} ") for c in _typed_commands(readme))
    assert readme.index("source .venv/bin/activate") < first_command, "the PATH is set before the first command"
    run_target = _read("Makefile").split("\nrun:", 1)[1].split("\n\n", 1)[0]
    assert "source $(VENV)/bin/activate" in run_target, "`make run` says how to put flywheel on the PATH"
    blocks = "\n".join(block for text in texts for block in _blocks(text))
    assert not re.search(r"^mkdir (?!-p )", blocks, re.M), "a mkdir that fails on a folder an earlier step made"
    outs = [c[c.index("--out") + 1] for c in commands if c[1] == "simulate" and "--out" in c]
    assert all(o.split("/")[0] in ("tour", "release") for o in outs), outs
    serving = [c for c in commands if c[1] == "serve"]
    assert len(serving) >= 2 and blocks.count("kill %1") >= len(serving) - 1, \
        "a server started by one section is stopped before the next starts one on the same port"


@pytest.mark.parametrize("path", [README, *DOCS, *OTHER_READMES])
def test_every_repository_path_named_exists(path):
    """A backquoted path into one of the repository's folders (`flywheel/data/inputs.py`, `tests/e2e/`) names a
    file or folder that is there; placeholders (`<serving>/...`) and globs match at least one."""
    missing = []
    for name in set(re.findall(r"`([\w.*-]+/[\w./*-]*)`", _read(path))):
        if name.split("/")[0] in REPO_FOLDERS and not glob.glob(os.path.join(REPO, name)):
            missing.append(name)
    assert missing == [], f"{path} names paths that do not exist: {sorted(missing)}"


def _exit_table(text: str) -> dict[str, str]:
    """The README's exit-status table: command -> its cell (a row may name several commands: simulate, lineage)."""
    table = text[text.index("| command | exit status |"):]
    table = table[:table.index("\n\n")]
    cells = {}
    for row in table.splitlines()[2:]:
        commands, status = (cell.strip() for cell in row.strip("|").split(" | "))
        for command in re.findall(r"`([^`]+)`", commands):
            assert command not in cells, f"{command} has two rows in the README's exit-status table"
            cells[command] = status
    return cells


def test_the_readmes_exit_statuses_are_the_command_lines_own():
    """The README shows the CLI's one table of exit statuses (`flywheel.cli.exits.EXITS`, which `--help` prints
    and the handlers return), each command's codes in its order, `code meaning` joined by "; "."""
    cells = _exit_table(_read(README))
    expected = {command: "; ".join(f"{code} {meaning}".replace("\n", " ") for code, meaning in exits)
                for command, exits in EXITS.items()}
    assert sorted(cells) == sorted(expected), "the README's exit-status table names other commands than the CLI's"
    for command, status in expected.items():
        assert cells[command] == status, f"README's exit status of {command}: {cells[command]!r}, the CLI's {status!r}"


# The package's import names and the folders they are installed from (setup.py's package_dir).
PACKAGE_DIRS = {"flywheel.components": "components", "flywheel.pipelines": "pipelines", "flywheel.schemas": "schemas",
                "flywheel": "flywheel"}


def _module_file(module: str):
    for package, folder in PACKAGE_DIRS.items():
        if module == package or module.startswith(package + "."):
            base = os.path.join(REPO, folder, *module[len(package):].split(".")[1:])
            for candidate in (os.path.join(base, "__init__.py"), base + ".py"):
                if os.path.isfile(candidate):
                    return candidate
            return None
    return None


def _defines(path: str, name: str) -> bool:
    """`name` is defined at the top of the module, imported there, or named as a string (a lazily loaded name)."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name:
            return True
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) \
            else []
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            return True
        if isinstance(node, (ast.Import, ast.ImportFrom)) and \
                any((a.asname or a.name).split(".")[0] == name for a in node.names):
            return True
    return any(isinstance(n, ast.Constant) and n.value == name for n in ast.walk(tree))


def _type_names() -> set[str]:
    """The artifact and execution types flywheel registers in ML-Metadata (`flywheel.DataProfile`, ...) and the
    versioned names of its file formats (`flywheel.profile.v3`)."""
    names = set()
    for path in glob.glob(os.path.join(REPO, "components", "**", "*.py"), recursive=True) + \
            glob.glob(os.path.join(REPO, "flywheel", "**", "*.py"), recursive=True):
        with open(path, encoding="utf-8") as f:
            names.update(re.findall(r'"(flywheel\.[A-Z]\w*|flywheel\.[a-z_]+\.v\d+)"', f.read()))
    return names


@pytest.mark.parametrize("path", [README, *DOCS, *OTHER_READMES])
def test_every_python_name_named_exists(path):
    """A backquoted `flywheel.x.y` (`flywheel.retraining.plan`, `flywheel.api.predict(...)`) names a module and a
    name defined in it, read from the source without importing it, or a type flywheel registers in ML-Metadata."""
    missing, type_names = [], _type_names()
    for dotted in set(re.findall(r"`(flywheel(?:\.\w+)+)", _read(path))):
        if dotted in type_names:
            continue
        parts = dotted.split(".")
        found = next((i for i in range(len(parts), 0, -1) if _module_file(".".join(parts[:i]))), 0)
        if found == len(parts):
            continue
        if not found or not _defines(_module_file(".".join(parts[:found])), parts[found]):
            missing.append(dotted)
    assert missing == [], f"{path} names what the code does not define: {sorted(missing)}"


def test_the_library_snippet_uses_the_tours_folders_and_those_are_ignored_and_cleaned():
    """The README's Python block ran into `spans/`, `baseline.csv`, `today.csv`, which nothing makes: every path it
    names is under a folder the tour writes, and every folder the tour and the release tutorial write is in
    .gitignore and removed by `make clean`."""
    readme = _read(README)
    snippet = re.search(r"^```python\n(.*?)^```$", _section(readme, "## Use it as a library"), re.M | re.S).group(1)
    paths = [node.value for node in ast.walk(ast.parse(snippet))
             if isinstance(node, ast.Constant) and isinstance(node.value, str) and "/" in node.value]
    assert paths and all(p.split("/")[0] == "tour" for p in paths), paths
    written = {c[c.index(option) + 1].split("/")[0] for text in (_read(p) for p in TOUR)
               for c in _typed_commands(text) for option in ("--out", "--output-dir", "--output", "--log-dir")
               if option in c}
    assert written >= {"tour", "release"}, written
    ignored = _read(".gitignore").split()
    clean = _read("Makefile").split("\nclean:", 1)[1].split("\n\n", 1)[0].split()
    for folder in written:
        assert f"{folder}/" in ignored and folder in clean, folder


def test_what_reads_the_request_log_right_after_a_replay_waits_for_it():
    """The server writes its log every 5 s: a `logs join` or `rollout analyze` typed right after a `replay` (the
    server still up) read part of it (3,077 of 4,999 rows) unless it waits with --wait-for-log."""
    for text in (_read(p) for p in TOUR):
        since_replay = False
        for tokens in _typed_commands(text):
            if tokens[1] == "replay":
                since_replay = True
            elif tokens[1:3] in (["logs", "join"], ["rollout", "analyze"]) and since_replay:
                assert "--wait-for-log" in tokens, " ".join(tokens)
                since_replay = False
