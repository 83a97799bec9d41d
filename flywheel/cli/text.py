"""What every command's output shares: lists and counts as text, the result on stdout (text, or JSON with
--json), errors on stderr."""

from __future__ import annotations

import json
import sys
from typing import Any, Callable, TextIO


def listing(values: Any) -> str:
    """A list of names or numbers that name things (spans, versions), or a string already rendered, as text:
    `1, 2, 3`; `none` when empty. No thousands separators: version 1796679337 is a name, not a count."""
    if isinstance(values, str):
        return values or "none"
    return ", ".join(str(v) for v in values or ()) or "none"


def counts(found: dict[str, Any], sep: str = " ") -> str:
    """A {name: count} mapping as text: `train 3,388, eval 1,612` (`200: 4,999` with sep ': '); `none` when empty."""
    return ", ".join(f"{name}{sep}{n:,}" if isinstance(n, int) and not isinstance(n, bool) else f"{name}{sep}{n}"
                     for name, n in found.items()) or "none"


def err(message: str) -> None:
    print(f"flywheel: {message.removeprefix('flywheel: ')}", file=sys.stderr)


def show(args: Any, result: Any, lines: Callable[[Any], list[str]]) -> None:
    """The result on stdout: its JSON with --json, else its text (`lines(result)`)."""
    if args.json:
        print(json.dumps(result.to_dict(), default=str))
    else:
        print("\n".join(lines(result)))


def progress(args: Any) -> TextIO:
    """Where progress lines go: stderr with --json (stdout holds only the JSON), else stdout."""
    return sys.stderr if args.json else sys.stdout
