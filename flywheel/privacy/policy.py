"""The privacy policy: each column's role and the anonymity thresholds, read from one JSON file beside a pipeline's
schema (`schemas/<pipeline>/privacy.json`). This module owns the file's format; everything else takes a `Policy`.

    {"format": "flywheel.privacy/1",
     "thresholds": {"k": 5, "l": 2},
     "columns": {
       "trip_id": {"role": "direct_identifier", "action": "pseudonymize", "reason": "..."},
       "pickup_latitude": {"role": "quasi_identifier", "bin": 0.01, "reason": "..."},
       "company": {"role": "quasi_identifier", "reason": "..."},
       "payment_type": {"role": "sensitive", "reason": "..."},
       "fare": {"role": "ordinary", "reason": "..."}}}

Roles: a direct identifier names a person or a trip by itself (`action`: pseudonymize, keeping joins by id, or
drop); a quasi-identifier does so in combination with others and with what an outsider knows (`bin`: the width
its numbers are generalized to, e.g. 0.01 degrees or 3600 seconds; no bin: values kept as they are); a sensitive
attribute is what a re-identification would reveal, kept for fairness and measured by l-diversity; ordinary is
everything else. Every column says why (`reason`). Errors name the file, the column, what was expected and what
was found.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any, Iterable, Mapping, Optional

from flywheel import storage

FORMAT = "flywheel.privacy/1"
POLICY_FILE = "privacy.json"
DIRECT, QUASI, SENSITIVE, ORDINARY = "direct_identifier", "quasi_identifier", "sensitive", "ordinary"
ROLES = (DIRECT, QUASI, SENSITIVE, ORDINARY)
ACTIONS = ("pseudonymize", "drop")
_COLUMN_KEYS = {DIRECT: {"role", "action", "reason"}, QUASI: {"role", "bin", "reason"},
                SENSITIVE: {"role", "reason"}, ORDINARY: {"role", "reason"}}


class PolicyError(ValueError):
    """A policy file that cannot be used; the message names the file, the column, expected and found."""


@dataclasses.dataclass(frozen=True)
class ColumnPolicy:
    """One column's role; `action` for a direct identifier, `bin` (a width, or None: exact values) for a
    quasi-identifier."""

    name: str
    role: str
    reason: str
    action: Optional[str] = None
    bin: Optional[float] = None

    def to_dict(self) -> dict[str, Any]:
        found = {"role": self.role, "action": self.action, "bin": self.bin, "reason": self.reason}
        return {k: v for k, v in found.items() if v is not None}


@dataclasses.dataclass(frozen=True)
class Thresholds:
    """The smallest equivalence class (k) and the fewest distinct sensitive values in one (l) a dataset may have."""

    k: int
    l: int  # noqa: E741 (the literature's name)


@dataclasses.dataclass(frozen=True)
class Policy:
    columns: tuple[ColumnPolicy, ...]
    thresholds: Thresholds
    source: str = ""

    def role(self, role: str) -> tuple[ColumnPolicy, ...]:
        return tuple(c for c in self.columns if c.role == role)

    @property
    def quasi_identifiers(self) -> tuple[ColumnPolicy, ...]:
        return self.role(QUASI)

    @property
    def sensitive(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.role(SENSITIVE))

    @property
    def direct_identifiers(self) -> tuple[ColumnPolicy, ...]:
        return self.role(DIRECT)

    def column(self, name: str) -> Optional[ColumnPolicy]:
        return next((c for c in self.columns if c.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "thresholds": dataclasses.asdict(self.thresholds),
                "columns": {c.name: c.to_dict() for c in self.columns}}


def _fail(source: str, where: str, expected: str, found: Any) -> PolicyError:
    return PolicyError(f"privacy policy {source}: {where}: expected {expected}, found {json.dumps(found)}")


def _threshold(source: str, found: Mapping[str, Any], name: str) -> int:
    value = found.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _fail(source, f"thresholds.{name}", "a whole number >= 1", value)
    return value


def _thresholds(source: str, found: Any) -> Thresholds:
    if not isinstance(found, dict):
        raise _fail(source, "thresholds", 'an object {"k": N, "l": N}', found)
    unknown = sorted(set(found) - {"k", "l"})
    if unknown:
        raise _fail(source, f"thresholds.{unknown[0]}", "only k and l", unknown[0])
    return Thresholds(k=_threshold(source, found, "k"), l=_threshold(source, found, "l"))


def _bin(source: str, name: str, value: Any) -> Optional[float]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise _fail(source, f"column {name!r}: bin", "a number > 0 (the width values are generalized to)", value)
    return float(value)


def _column(source: str, name: str, found: Any) -> ColumnPolicy:
    if not isinstance(found, dict):
        raise _fail(source, f"column {name!r}", 'an object {"role": ..., "reason": ...}', found)
    role = found.get("role")
    if role not in ROLES:
        raise _fail(source, f"column {name!r}: role", "one of " + ", ".join(ROLES), role)
    unknown = sorted(set(found) - _COLUMN_KEYS[role])
    if unknown:
        raise _fail(source, f"column {name!r}: {unknown[0]}",
                    f"only {', '.join(sorted(_COLUMN_KEYS[role]))} for a {role}", found[unknown[0]])
    reason = found.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise _fail(source, f"column {name!r}: reason", "a sentence saying why the column has its role", reason)
    action = found.get("action")
    if role == DIRECT and action not in ACTIONS:
        raise _fail(source, f"column {name!r}: action", "one of " + ", ".join(ACTIONS), action)
    return ColumnPolicy(name=name, role=role, reason=reason.strip(), action=action,
                        bin=_bin(source, name, found.get("bin")))


def parse(document: Any, source: str = "") -> Policy:
    """A policy from its parsed JSON; PolicyError naming the part that is wrong."""
    if not isinstance(document, dict):
        raise _fail(source, "the file", "a JSON object", type(document).__name__)
    if document.get("format") != FORMAT:
        raise _fail(source, "format", repr(FORMAT), document.get("format"))
    unknown = sorted(set(document) - {"format", "thresholds", "columns"})
    if unknown:
        raise _fail(source, unknown[0], "only format, thresholds and columns", unknown[0])
    columns = document.get("columns")
    if not isinstance(columns, dict) or not columns:
        raise _fail(source, "columns", "an object with one entry per column", columns)
    policy = Policy(columns=tuple(_column(source, name, found) for name, found in columns.items()),
                    thresholds=_thresholds(source, document.get("thresholds")), source=source)
    if not policy.quasi_identifiers:
        raise _fail(source, "columns", "at least one quasi_identifier (k is measured over them)", "none")
    return policy


def load(path: str) -> Policy:
    """The policy file at `path` (any filesystem `flywheel.storage` reaches)."""
    try:
        text = storage.read_text(path)
    except (OSError, UnicodeDecodeError) as e:
        raise PolicyError(f"privacy policy {path}: cannot read: {e}") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as e:
        raise PolicyError(f"privacy policy {path}: not valid JSON: {e}") from None
    return parse(document, path)


def beside(schema_path: str) -> str:
    """Where a pipeline's policy lives: beside its schema."""
    return os.path.join(os.path.dirname(schema_path), POLICY_FILE)


def check_columns(policy: Policy, known: Iterable[str], where: str, require_all: bool = True) -> None:
    """PolicyError when the policy names a column `known` does not hold (a typo, or a column the schema lost),
    or, with require_all, when a known column has no role (a new schema column must say what it is)."""
    known = list(known)
    declared = [c.name for c in policy.columns]
    for name in declared:
        if name not in known:
            raise PolicyError(f"privacy policy {policy.source}: column {name!r}: expected a column of {where} "
                              f"({', '.join(known)}), found none of that name")
    missing = [name for name in known if name not in declared]
    if require_all and missing:
        raise PolicyError(f"privacy policy {policy.source}: column {missing[0]!r} of {where}: expected a role "
                          f"({', '.join(ROLES)}), found none (undeclared: {', '.join(missing)})")
