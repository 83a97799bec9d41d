"""How anonymous a table is under a privacy policy: k-anonymity and l-diversity over its quasi-identifiers.

Rows that agree on every quasi-identifier, after the policy's generalization (numbers binned to its `bin` width),
form an equivalence class. k is the smallest class's size: everyone in the data shares their place-and-time
description with at least k-1 others. l is the fewest distinct values a sensitive attribute takes within one
class (the smallest over the sensitive attributes): with l = 1, knowing someone's class tells their value.
A missing value is a value like any other (an empty drop-off point is what an outsider sees too).

Vectorized: one Arrow group-by over the rows gives the class table (one row per class, with its size and its
distinct sensitive values); the rest, including what coarser bins or a dropped quasi-identifier would give,
regroups that class table, never the rows.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Optional, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from flywheel.privacy.policy import ColumnPolicy, Policy

ROWS = "__rows"
COARSER = (2, 5, 10)  # the multiples of a bin width tried when looking for what would lift k
SUPPRESS_SHARE = 0.01  # rows a generalization plan may leave out (those still in classes under k)
SIZE_BUCKETS = (1, 2, 3, 5, 10, 20, 50, 100, 1000)  # lower bounds of the class-size histogram's buckets


def number(value: float) -> str:
    """A bin width as text: 3,600,000 rather than 3.6e+06; 0.01 as it is."""
    return f"{int(value):,}" if value >= 1 and value == int(value) else f"{value:g}"


class AnonymityError(ValueError):
    """Data the policy cannot be measured on; the message names the column, expected and found."""


@dataclasses.dataclass(frozen=True)
class EquivalenceClass:
    """One class: its quasi-identifiers' generalized values (as text), its size and its distinct sensitive values."""

    values: dict[str, str]
    rows: int
    distinct: dict[str, int]


@dataclasses.dataclass(frozen=True)
class Change:
    """A generalization beyond the policy's and the k it gives: `column` binned `factor` times coarser than the
    policy says (to bins `width` wide), or dropped from the quasi-identifiers (factor 0); `rows_under_k`: rows
    still in classes smaller than the threshold; `classes`: how many classes there are then."""

    column: str
    factor: int
    width: Optional[float]
    k: int
    rows_under_k: int
    classes: int

    @property
    def text(self) -> str:
        if self.factor == 0:
            return f"drop {self.column}"
        return f"{self.column} in bins of {number(self.width)}" + (f" (x{self.factor})" if self.factor > 1 else "")


@dataclasses.dataclass(frozen=True)
class Anonymity:
    """The measurement, with its evidence: thresholds, counts, the smallest classes and what would lift k."""

    rows: int
    quasi_identifiers: tuple[str, ...]
    sensitive: tuple[str, ...]
    k: int
    l: Optional[int]  # noqa: E741 (the literature's name); None when the policy declares no sensitive attribute
    k_threshold: int
    l_threshold: int
    classes: int
    classes_under_k: int
    rows_under_k: int
    classes_under_l: int
    rows_under_l: int
    smallest: tuple[EquivalenceClass, ...]
    sizes: tuple[tuple[str, int, int], ...]  # class sizes as (bucket, classes, rows), smallest bucket first
    single_changes: tuple[Change, ...] = ()
    plan: tuple[Change, ...] = ()

    @property
    def k_passed(self) -> bool:
        return self.k >= self.k_threshold

    @property
    def l_passed(self) -> bool:
        return self.l is None or self.l >= self.l_threshold

    @property
    def passed(self) -> bool:
        return self.k_passed and self.l_passed

    def to_dict(self) -> dict[str, Any]:
        found = dataclasses.asdict(self)
        found["single_changes"] = [{**dataclasses.asdict(c), "change": c.text} for c in self.single_changes]
        found["plan"] = [{**dataclasses.asdict(c), "change": c.text} for c in self.plan]
        return {**found, "k_passed": self.k_passed, "l_passed": self.l_passed, "passed": self.passed}


def _numbers(table: pa.Table, column: ColumnPolicy) -> np.ndarray:
    values = table.column(column.name)
    if pa.types.is_null(values.type):
        return np.full(len(values), np.nan)
    if not (pa.types.is_integer(values.type) or pa.types.is_floating(values.type)):
        raise AnonymityError(f"privacy: column {column.name!r}: the policy bins it (bin {column.bin:g}): expected "
                             f"numbers, found {values.type}")
    return values.cast(pa.float64()).combine_chunks().to_numpy(zero_copy_only=False)


def generalized_column(table: pa.Table, column: ColumnPolicy) -> pa.Array:
    """A quasi-identifier as the policy generalizes it: with a bin width, the bin's index (floor(value / width),
    int64, so that equal bins compare equal exactly); without one, the values as text."""
    if column.bin is None:
        return pc.cast(table.column(column.name), pa.string()).combine_chunks()
    values = _numbers(table, column)
    missing = np.isnan(values)
    index = np.floor(np.round(np.where(missing, 0.0, values) / column.bin, 9)).astype(np.int64)
    return pa.array(index, mask=missing)


def generalize(table: pa.Table, policy: Policy) -> pa.Table:
    """The quasi-identifiers generalized (`generalized_column`) and the sensitive attributes as text; AnonymityError
    naming a declared column the table lacks."""
    wanted = [c.name for c in policy.quasi_identifiers] + list(policy.sensitive)
    missing = [name for name in wanted if name not in table.column_names]
    if missing:
        raise AnonymityError(f"privacy: the data has no column {missing[0]!r}: expected every quasi-identifier and "
                             f"sensitive attribute the policy declares ({', '.join(wanted)})")
    columns = {c.name: generalized_column(table, c) for c in policy.quasi_identifiers}
    for name in policy.sensitive:
        columns[name] = pc.cast(table.column(name), pa.string()).combine_chunks()
    return pa.table(columns)


def class_table(generalized: pa.Table, quasi: Sequence[str], sensitive: Sequence[str]) -> pa.Table:
    """One row per equivalence class: its quasi-identifiers, its size (`__rows`) and, per sensitive attribute,
    its distinct values (nulls count as one)."""
    table = generalized.append_column(ROWS, pa.array(np.ones(generalized.num_rows, dtype=np.int64)))
    everything = pc.CountOptions(mode="all")
    found = table.group_by(list(quasi)).aggregate(
        [(ROWS, "sum")] + [(name, "count_distinct", everything) for name in sensitive])
    return found.rename_columns([ROWS if n == f"{ROWS}_sum" else n.removesuffix("_count_distinct")
                                 for n in found.column_names])


@dataclasses.dataclass(frozen=True)
class _Column:
    """A quasi-identifier of the class table as numbers: bin indexes (binned) or dense codes (exact values), which
    are missing, and its dense codes (missing as one more code); `factor`: how many times coarser than the
    policy's bin it is now."""

    values: np.ndarray
    missing: np.ndarray
    codes: np.ndarray
    width: Optional[float]
    factor: int = 1

    def coarser(self, factor: int) -> "_Column":
        return _column(np.floor_divide(self.values, factor), self.missing, self.width, self.factor * factor)

    def take(self, index: np.ndarray) -> "_Column":
        return _column(self.values[index], self.missing[index], self.width, self.factor)


def _column(values: np.ndarray, missing: np.ndarray, width: Optional[float], factor: int = 1) -> _Column:
    marked = np.where(missing, values.min(initial=0) - 1, values)
    codes = np.unique(marked, return_inverse=True)[1].astype(np.int64)
    return _Column(values, missing, codes, width, factor)


def _state_column(classes: pa.Table, column: ColumnPolicy) -> _Column:
    found = classes.column(column.name).combine_chunks()
    missing = found.is_null().to_numpy(zero_copy_only=False)
    if column.bin is not None:
        return _column(pc.fill_null(found, 0).to_numpy(zero_copy_only=False).astype(np.int64), missing, column.bin)
    codes = found.dictionary_encode(null_encoding="encode").indices.to_numpy(zero_copy_only=False)
    return _column(codes.astype(np.int64), np.zeros(len(codes), dtype=bool), None)


def _merged(columns: dict[str, _Column], rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the merged class of each class, the merged classes' sizes) when classes agreeing on `columns` merge."""
    if not columns:
        return np.zeros(len(rows), dtype=np.int64), np.array([rows.sum()], dtype=np.int64)
    key = np.zeros(len(rows), dtype=np.int64)
    for column in columns.values():
        codes = column.codes
        size = int(codes.max(initial=0)) + 1
        if (int(key.max(initial=0)) + 1) * size >= 1 << 62:
            key = np.unique(key, return_inverse=True)[1].astype(np.int64)
        key = key * size + codes
    inverse = np.unique(key, return_inverse=True)[1]
    return inverse, np.bincount(inverse, weights=rows).astype(np.int64)


def _try(columns: dict[str, _Column], rows: np.ndarray, name: str, factor: int, k_threshold: int
         ) -> tuple[Change, dict[str, _Column]]:
    changed = dict(columns)
    if factor == 0:
        del changed[name]
    else:
        changed[name] = columns[name].coarser(factor)
    sizes = _merged(changed, rows)[1]
    column = columns[name]
    width = column.width * column.factor * factor if factor and column.width is not None else None
    found = Change(column=name, factor=column.factor * factor, width=width, k=int(sizes.min()),
                   rows_under_k=int(sizes[sizes < k_threshold].sum()), classes=len(sizes))
    return found, changed


def _candidates(columns: dict[str, _Column], rows: np.ndarray, k_threshold: int
                ) -> list[tuple[Change, dict[str, _Column]]]:
    found = []
    for name, column in columns.items():
        for factor in (COARSER if column.width is not None else ()):
            found.append(_try(columns, rows, name, factor, k_threshold))
        found.append(_try(columns, rows, name, 0, k_threshold))
    return found


def _shrink(columns: dict[str, _Column], rows: np.ndarray) -> tuple[dict[str, _Column], np.ndarray]:
    """The class table with the classes that now agree merged (fewer rows for the next step)."""
    inverse, sizes = _merged(columns, rows)
    first = np.unique(inverse, return_index=True)[1]
    return {name: column.take(first) for name, column in columns.items()}, sizes


def plan_changes(classes: pa.Table, policy: Policy) -> tuple[tuple[Change, ...], tuple[Change, ...]]:
    """What would lift k: every single change from the policy's generalization (each binned quasi-identifier 2, 5
    or 10 times coarser, each one dropped), and a plan in the manner of Sweeney's Datafly: step by step, the
    quasi-identifier with the most distinct values is generalized one level (binned: 10 times coarser; exact:
    dropped) until the rows left in classes under the threshold fit the suppression budget (SUPPRESS_SHARE of the
    rows), which would then be left out. A heuristic: one way there, not the one losing least."""
    threshold = policy.thresholds.k
    columns = {c.name: _state_column(classes, c) for c in policy.quasi_identifiers}
    rows = classes.column(ROWS).to_numpy()
    singles = tuple(change for change, _ in _candidates(columns, rows, threshold))
    budget = SUPPRESS_SHARE * rows.sum()
    plan: list[Change] = []
    under = int(rows[rows < threshold].sum())
    while under > budget and columns:
        name = max(columns, key=lambda n: int(columns[n].codes.max(initial=0)))
        change, columns = _try(columns, rows, name, 10 if columns[name].width is not None else 0, threshold)
        plan.append(change)
        under = change.rows_under_k
        columns, rows = _shrink(columns, rows)
    return singles, tuple(plan)


def _text(column: ColumnPolicy, value: Any) -> str:
    if value is None:
        return "(missing)"
    if column.bin is None:
        return str(value)
    decimals = max(0, -math.floor(math.log10(column.bin))) if column.bin < 1 else 0
    low, high = value * column.bin, (value + 1) * column.bin
    return f"[{low:.{decimals}f}, {high:.{decimals}f})"


def smallest_classes(classes: pa.Table, policy: Policy, n: int) -> tuple[EquivalenceClass, ...]:
    """The n smallest classes, smallest first (classes of one size in the order the data first shows them)."""
    order = np.argsort(classes.column(ROWS).to_numpy(), kind="stable")[:n]
    picked = classes.take(pa.array(order)).to_pylist()
    return tuple(EquivalenceClass(values={c.name: _text(c, row[c.name]) for c in policy.quasi_identifiers},
                                  rows=int(row[ROWS]), distinct={s: int(row[s]) for s in policy.sensitive})
                 for row in picked)


def size_histogram(sizes: np.ndarray) -> tuple[tuple[str, int, int], ...]:
    """(bucket such as "3-4" or "1000+", classes of a size in it, their rows) for each SIZE_BUCKETS bucket."""
    found = []
    for low, high in zip(SIZE_BUCKETS, (*SIZE_BUCKETS[1:], None), strict=True):
        inside = (sizes >= low) & (sizes < high) if high else sizes >= low
        label = f"{low}+" if high is None else (str(low) if high == low + 1 else f"{low}-{high - 1}")
        found.append((label, int(inside.sum()), int(sizes[inside].sum())))
    return tuple(found)


def measure(table: pa.Table, policy: Policy, smallest: int = 10, suggest: bool = True) -> Anonymity:
    """k, l and their evidence for `table` under `policy`; `suggest`: also what generalization would lift k."""
    quasi = tuple(c.name for c in policy.quasi_identifiers)
    classes = class_table(generalize(table, policy), quasi, policy.sensitive)
    if classes.num_rows == 0:
        raise AnonymityError("privacy: the data has no rows: expected at least one to measure k on")
    sizes = classes.column(ROWS).to_numpy()
    distinct = (np.min(np.stack([classes.column(s).to_numpy() for s in policy.sensitive]), axis=0)
                if policy.sensitive else None)
    k_under = sizes < policy.thresholds.k
    l_under = distinct < policy.thresholds.l if distinct is not None else np.zeros(len(sizes), dtype=bool)
    singles, plan = plan_changes(classes, policy) if suggest else ((), ())
    return Anonymity(
        rows=int(sizes.sum()), quasi_identifiers=quasi, sensitive=policy.sensitive, k=int(sizes.min()),
        l=int(distinct.min()) if distinct is not None else None, k_threshold=policy.thresholds.k,
        l_threshold=policy.thresholds.l, classes=len(sizes), classes_under_k=int(k_under.sum()),
        rows_under_k=int(sizes[k_under].sum()), classes_under_l=int(l_under.sum()),
        rows_under_l=int(sizes[l_under].sum()), smallest=smallest_classes(classes, policy, smallest),
        sizes=size_histogram(sizes),
        single_changes=singles, plan=plan)
