"""Compact, mergeable-by-recomputation profiles of tabular data: what the drift checks need, nothing more.

A numeric column keeps its count, missing count, mean, std and 1,001 quantiles; a categorical
column its value counts (up to MAX_VALUES distinct, the rest pooled). Every drift metric is computed
from two profiles, so a baseline can be saved next to a model and loaded in milliseconds.
No TensorFlow: numpy and pyarrow only.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Optional

import numpy as np
import pyarrow as pa

QUANTILES = np.linspace(0.0, 1.0, 1001)
MAX_VALUES = 1000
OTHER = "__other__"
PROFILE_FORMAT = "flywheel.profile.v1"


class MonitorError(ValueError):
    """Input the monitor cannot use: unreadable files, columns that do not match."""


@dataclasses.dataclass
class NumericProfile:
    count: int
    missing: int
    mean: float
    std: float
    quantiles: list[float]

    kind = "numeric"


@dataclasses.dataclass
class CategoricalProfile:
    count: int
    missing: int
    values: dict[str, int]

    kind = "categorical"


@dataclasses.dataclass
class DatasetProfile:
    rows: int
    columns: dict[str, Any]
    source: str = ""

    def to_json(self) -> str:
        cols = {name: {"kind": p.kind, **dataclasses.asdict(p)} for name, p in self.columns.items()}
        return json.dumps({"format": PROFILE_FORMAT, "rows": self.rows, "source": self.source, "columns": cols})

    @classmethod
    def from_json(cls, text: str, source: str = "") -> "DatasetProfile":
        d = json.loads(text)
        if d.get("format") != PROFILE_FORMAT:
            raise MonitorError(f"monitor: {source or 'profile'}: not a {PROFILE_FORMAT} file")
        cols: dict[str, Any] = {}
        for name, c in d["columns"].items():
            kind = c.pop("kind")
            cols[name] = NumericProfile(**c) if kind == "numeric" else CategoricalProfile(**c)
        return cls(rows=d["rows"], columns=cols, source=d.get("source", source))


def numeric_profile(values: np.ndarray) -> NumericProfile:
    present = values[~np.isnan(values)]
    if present.size == 0:
        return NumericProfile(int(values.size), int(values.size), float("nan"), float("nan"), [])
    q = np.quantile(present, QUANTILES)
    return NumericProfile(int(values.size), int(values.size - present.size), float(present.mean()),
                          float(present.std()), [float(x) for x in q])


def categorical_profile(column: pa.ChunkedArray) -> CategoricalProfile:
    import pyarrow.compute as pc

    counts = pc.value_counts(column.cast(pa.string())).to_pylist()
    values = {c["values"]: int(c["counts"]) for c in counts if c["values"] is not None}
    missing = int(column.null_count)
    if len(values) > MAX_VALUES:
        top = sorted(values.items(), key=lambda kv: -kv[1])
        kept = dict(top[:MAX_VALUES])
        kept[OTHER] = sum(v for _, v in top[MAX_VALUES:])
        values = kept
    return CategoricalProfile(int(len(column)), missing, values)


def profile_table(table: pa.Table, source: str = "") -> DatasetProfile:
    cols: dict[str, Any] = {}
    for name in table.column_names:
        column = table.column(name)
        if pa.types.is_integer(column.type) or pa.types.is_floating(column.type) or pa.types.is_null(column.type):
            arr = column.cast(pa.float64()).fill_null(float("nan")).to_numpy()
            cols[name] = numeric_profile(np.asarray(arr, dtype=np.float64))
        else:
            cols[name] = categorical_profile(column)
    return DatasetProfile(rows=table.num_rows, columns=cols, source=source)


def _files(path: str) -> list[str]:
    if os.path.isdir(path):
        found = sorted(os.path.join(root, f) for root, _, fs in os.walk(path) for f in fs
                       if f.lower().endswith((".csv", ".parquet")) and not f.startswith((".", "_")))
        if not found:
            raise MonitorError(f"monitor: {path}: no .csv or .parquet files")
        return found
    if not os.path.exists(path):
        raise MonitorError(f"monitor: {path}: no such file or directory")
    return [path]


def read_table(path: str) -> pa.Table:
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    tables = []
    for f in _files(path):
        try:
            if f.lower().endswith(".parquet"):
                tables.append(pq.read_table(f))
            else:
                tables.append(pcsv.read_csv(f))
        except (pa.ArrowInvalid, OSError) as e:
            raise MonitorError(f"monitor: {f}: cannot read: {e}") from None
    if len(tables) == 1:
        return tables[0]
    try:
        return pa.concat_tables(tables, promote=True)
    except pa.ArrowInvalid as e:
        raise MonitorError(f"monitor: {path}: files have incompatible columns: {e}") from None


def load(path: str, columns: Optional[list[str]] = None) -> DatasetProfile:
    """A profile from a saved profile (.json), or computed from a CSV/Parquet file or folder."""
    if path.lower().endswith(".json") and os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            return DatasetProfile.from_json(f.read(), path)
    table = read_table(path)
    if columns:
        table = table.select([c for c in columns if c in table.column_names])
    return profile_table(table, path)


def _merge_numeric(parts: list[NumericProfile]) -> NumericProfile:
    count = sum(p.count for p in parts)
    missing = sum(p.missing for p in parts)
    present = [p for p in parts if p.quantiles]
    if not present:
        return NumericProfile(count, missing, float("nan"), float("nan"), [])
    weights = np.array([p.count - p.missing for p in present], dtype=float)
    weights /= weights.sum()
    grid = np.unique(np.concatenate([p.quantiles for p in present]))
    cdf = sum(w * np.interp(grid, p.quantiles, QUANTILES, left=0.0, right=1.0)
              for w, p in zip(weights, present, strict=True))
    quantiles = np.interp(QUANTILES, cdf, grid)
    mean = float(sum(w * p.mean for w, p in zip(weights, present, strict=True)))
    var = float(sum(w * (p.std ** 2 + (p.mean - mean) ** 2) for w, p in zip(weights, present, strict=True)))
    return NumericProfile(count, missing, mean, var ** 0.5, [float(q) for q in quantiles])


def merge(profiles: list[DatasetProfile]) -> DatasetProfile:
    """One profile of the union of the profiled rows (exact counts; quantiles from the mixture of CDFs)."""
    columns: dict[str, Any] = {}
    names = list(dict.fromkeys(n for p in profiles for n in p.columns))
    for name in names:
        parts = [p.columns[name] for p in profiles if name in p.columns]
        if all(isinstance(c, NumericProfile) for c in parts):
            columns[name] = _merge_numeric(parts)
        else:
            values: dict[str, int] = {}
            for c in parts:
                if isinstance(c, CategoricalProfile):
                    for k, v in c.values.items():
                        values[k] = values.get(k, 0) + v
            columns[name] = CategoricalProfile(sum(c.count for c in parts), sum(c.missing for c in parts), values)
    return DatasetProfile(rows=sum(p.rows for p in profiles), columns=columns,
                          source=" + ".join(p.source for p in profiles))


def read_span_profiles(profile_uri: str) -> dict[int, DatasetProfile]:
    """The per-span profiles of a DataProfile artifact, {span: profile}; raises MonitorError when it has none."""
    import re

    from tfx.dsl.io import fileio

    found: dict[int, DatasetProfile] = {}
    names = fileio.listdir(profile_uri) if fileio.isdir(profile_uri) else []
    for name in names:
        m = re.fullmatch(r"profile-span-(\d+)\.json", name.rstrip("/"))
        if m:
            path = os.path.join(profile_uri, name)
            with fileio.open(path, "r") as f:
                found[int(m.group(1))] = DatasetProfile.from_json(f.read(), path)
    if not found:
        raise MonitorError(f"monitor: {profile_uri} holds no profile-span-<N>.json files; expected the "
                           "DataProfile written by flywheel's Ingest")
    return found
