"""What every result of the library API shares."""

from __future__ import annotations

import dataclasses
from typing import Any


def as_dict(result: Any) -> dict[str, Any]:
    """A result's fields as a dict (those its repr shows: the JSON of `--json`)."""
    return {f.name: getattr(result, f.name) for f in dataclasses.fields(result) if f.repr}
