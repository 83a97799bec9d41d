"""Profiles of tabular data that merge exactly: what the drift checks need, nothing more.

Each column keeps exact counts (rows, missing values), exact moments (mean and the sum of squared
deviations M2, merged with Chan's formula), its minimum and maximum, and its values as a
*coordinated bottom-K sample of distinct values*: the K distinct values with the smallest 64-bit
hash, each with its exact count. While a column has at most K distinct values (hours, categories,
fares in cents at this scale) that table is complete; beyond that it is a sample that the same hash
draws the same way in every profile. Merging adds counts and keeps the K smallest hashes, which is
exactly the profile of the concatenated rows: a value among the K smallest of the union is among
the K smallest of every part that holds it, with all of its occurrences counted there. Quantiles,
CDFs and frequencies are computed from the table when two profiles are compared, so an integer
column's quantiles are always values the column holds.

No TensorFlow and no Beam here: numpy and pyarrow only (the Beam CombineFn is in `profile_beam`). Files are
read through TFX's filesystem layer (`flywheel.storage`): local ones without TensorFlow, gs://, s3://... with it.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import math
import os
import re
import struct
from typing import Any, Iterable, Iterator, Mapping, Optional, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from flywheel import storage
from flywheel.data import inputs
from flywheel.server.log_columns import ROLLOUT_ROLE, SHADOW, STATUS

K = 8192  # distinct values kept per column (see README: resample noise at 200,000 rows, 1M-row speed)
NUMERIC, CATEGORICAL = "numeric", "categorical"
PROFILE_FORMAT = "flywheel.profile.v3"
# v2 profiles are read too: v3 changed only the hash that samples text values (`legacy_hash_text` before)
LEGACY_FORMAT, LEGACY_TEXT_HASH = "flywheel.profile.v2", "blake2b-64"
_MASK = (1 << 64) - 1
_SEED = 0x9E3779B97F4A7C15
_C1, _C2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB
_TEXT_SEED = 0x2545F4914F6CDD1D


class MonitorError(ValueError):
    """Input the monitor cannot use: unreadable files, columns that do not match."""


# ---- hashing: one 64-bit hash per distinct value, the same from Python scalars and numpy arrays --------------

def _mix(z: int) -> int:
    """splitmix64's finalizer on a Python int."""
    z = ((z ^ (z >> 30)) * _C1) & _MASK
    z = ((z ^ (z >> 27)) * _C2) & _MASK
    return z ^ (z >> 31)


def hash_number(value: float) -> int:
    """The hash of a numeric value (as float64; -0.0 and 0.0 are one value)."""
    return _mix(struct.unpack("<Q", struct.pack("<d", float(value) + 0.0))[0] ^ _SEED)


def hash_numbers(values: np.ndarray) -> np.ndarray:
    """hash_number over a float64 array (uint64 arithmetic wraps like the masked Python ints)."""
    return _mix_array((np.asarray(values, dtype=np.float64) + 0.0).view(np.uint64) ^ np.uint64(_SEED))


def hash_text(value: str) -> int:
    """The hash of a text value: its UTF-8 bytes as little-endian 64-bit words (the last one zero-padded), each
    mixed into a state that starts from the length; the same as `hash_strings` on an Arrow array."""
    data = value.encode("utf-8", "surrogateescape")
    h = _TEXT_SEED ^ len(data)
    for (word,) in struct.iter_unpack("<Q", data + b"\0" * (-len(data) % 8)):
        h = _mix(h ^ word)
    return _mix(h ^ _SEED)


def hash_strings(values: pa.Array) -> np.ndarray:
    """hash_text over an Arrow string array without nulls, word by word for all strings at once."""
    if not isinstance(values, pa.Array):
        values = pa.array(values, type=pa.string())
    if values.type != pa.string():
        values = values.cast(pa.string())
    n = len(values)
    offsets = np.frombuffer(values.buffers()[1], dtype=np.int32)[values.offset: values.offset + n + 1].astype(np.int64)
    data = values.buffers()[2]
    raw = np.frombuffer(data, dtype=np.uint8) if data is not None else np.empty(0, np.uint8)
    padded = np.concatenate([raw[: offsets[-1] if n else 0], np.zeros(8, np.uint8)])
    # the 64-bit little-endian word starting at every byte
    words = np.ndarray(shape=(padded.size - 7,), dtype="<u8", buffer=padded, strides=(1,))
    lengths = np.diff(offsets)
    order = np.argsort(-lengths, kind="stable")  # longest first: the strings still going are a prefix
    starts, lengths_sorted = offsets[:-1][order], lengths[order]
    h = np.uint64(_TEXT_SEED) ^ lengths_sorted.astype(np.uint64)
    for first in range(0, int(lengths_sorted[0]) if n else 0, 8):
        going = int(np.searchsorted(-lengths_sorted, -first, side="left"))
        left = lengths_sorted[:going] - first
        word = words[starts[:going] + first]
        short = left < 8
        if short.any():
            word[short] &= (np.uint64(1) << (left[short].astype(np.uint64) * np.uint64(8))) - np.uint64(1)
        h[:going] = _mix_array(h[:going] ^ word)
    out = np.empty(n, np.uint64)
    out[order] = _mix_array(h ^ np.uint64(_SEED))
    return out


def _mix_array(z: np.ndarray) -> np.ndarray:
    """_mix over a uint64 array."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(_C1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(_C2)
    return z ^ (z >> np.uint64(31))


def legacy_hash_text(value: str) -> int:
    """The text hash of flywheel.profile.v2 files (BLAKE2b, one value at a time): a v2 profile's sampled
    categorical column is a bottom-K sample under this hash."""
    return int.from_bytes(hashlib.blake2b(value.encode("utf-8", "surrogateescape"), digest_size=8).digest(), "little")


def _hashes(kind: str, keys: Sequence[Any], legacy: bool = False) -> np.ndarray:
    if kind == NUMERIC:
        return hash_numbers(np.asarray(keys, dtype=np.float64))
    if legacy:
        return np.array([legacy_hash_text(k) for k in keys], dtype=np.uint64)
    return hash_strings(pa.array(list(keys), type=pa.string()))


def _bottom_k(kind: str, values: dict[Any, int], k: int, legacy: bool = False) -> tuple[dict[Any, int], bool]:
    """The k distinct values with the smallest hash (all of them when there are at most k)."""
    if len(values) <= k:
        return values, False
    keys = list(values)
    keep = np.argpartition(_hashes(kind, keys, legacy), k - 1)[:k]
    return {keys[i]: values[keys[i]] for i in keep.tolist()}, True


# ---- profiles -----------------------------------------------------------------------------------------------

@dataclasses.dataclass
class ColumnProfile:
    """One column: exact counts and moments, and its bottom-K distinct values with exact counts."""

    kind: str  # NUMERIC or CATEGORICAL
    count: int = 0  # rows
    missing: int = 0
    mean: float = float("nan")  # numeric only, over present values
    m2: float = 0.0  # sum of squared deviations from the mean
    minimum: Optional[float] = None
    maximum: Optional[float] = None
    values: dict[Any, int] = dataclasses.field(default_factory=dict)
    sampled: bool = False  # True: `values` holds the K distinct values with the smallest hash, not all
    legacy_hash: bool = False  # a sampled categorical column of a v2 file: sampled by `legacy_hash_text`

    @property
    def present(self) -> int:
        return self.count - self.missing

    @property
    def std(self) -> float:
        return math.sqrt(self.m2 / self.present) if self.present else float("nan")

    def hash_bound(self) -> float:
        """The largest hash kept when sampled (values above it were dropped); infinity when complete."""
        if not self.sampled:
            return math.inf
        return float(int(_hashes(self.kind, list(self.values), self.legacy_hash).max()))

    def restricted(self, bound: float, legacy: bool = False) -> dict[Any, int]:
        """The value table restricted to hashes <= bound (the legacy text hash when `legacy`): what two
        coordinated samples have in common."""
        if math.isinf(bound):
            return self.values
        keys = list(self.values)
        keep = _hashes(self.kind, keys, legacy) <= np.uint64(int(bound))
        return {key: self.values[key] for key, kept in zip(keys, keep.tolist(), strict=True) if kept}

    def to_dict(self) -> dict[str, Any]:
        out = {"kind": self.kind, "count": self.count, "missing": self.missing, "sampled": self.sampled}
        if self.kind == NUMERIC:
            finite = self.present > 0
            out.update(mean=self.mean if finite else None, m2=self.m2, minimum=self.minimum, maximum=self.maximum,
                       values=sorted([v, c] for v, c in self.values.items()))
        else:
            out["values"] = dict(sorted(self.values.items(), key=lambda kv: (-kv[1], kv[0])))
            if self.legacy_hash:
                out["hash"] = LEGACY_TEXT_HASH
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], file_format: str = PROFILE_FORMAT) -> "ColumnProfile":
        if d["kind"] == NUMERIC:
            values = {float(v): int(c) for v, c in d["values"]}
            mean = float("nan") if d.get("mean") is None else float(d["mean"])
            return cls(NUMERIC, int(d["count"]), int(d["missing"]), mean, float(d["m2"]), d.get("minimum"),
                       d.get("maximum"), values, bool(d["sampled"]))
        sampled = bool(d["sampled"])
        legacy = sampled and (file_format == LEGACY_FORMAT or d.get("hash") == LEGACY_TEXT_HASH)
        return cls(CATEGORICAL, int(d["count"]), int(d["missing"]), values={str(k): int(c) for k, c in
                                                                             d["values"].items()},
                   sampled=sampled, legacy_hash=legacy)


def merge_columns(parts: Sequence[ColumnProfile], k: int = K) -> ColumnProfile:
    """The exact profile of the concatenated rows of `parts` (same kind; a part without values, e.g. a file
    where the column is empty throughout, takes the kind of the others)."""
    kinds = {p.kind for p in parts if p.present} or {parts[0].kind}
    if len(kinds) != 1:
        raise MonitorError(f"monitor: cannot merge a column that is {' and '.join(sorted(kinds))} in different parts")
    kind = kinds.pop()
    if len({p.legacy_hash for p in parts if p.sampled}) > 1:
        raise MonitorError(f"monitor: cannot merge a sampled {kind} column of a {LEGACY_FORMAT} profile with one of "
                           f"a {PROFILE_FORMAT} profile: their samples were drawn with different hashes")
    legacy = any(p.legacy_hash for p in parts)
    out = ColumnProfile(kind)
    values: dict[Any, int] = {}
    for p in parts:
        out.count += p.count
        out.missing += p.missing
        if kind == NUMERIC and p.present:
            n_a, n_b = out.present - p.present, p.present
            if n_a == 0:
                out.mean, out.m2 = p.mean, p.m2
            else:
                delta = p.mean - out.mean
                out.mean += delta * n_b / (n_a + n_b)
                out.m2 += p.m2 + delta * delta * n_a * n_b / (n_a + n_b)
            out.minimum = p.minimum if out.minimum is None else min(out.minimum, p.minimum)
            out.maximum = p.maximum if out.maximum is None else max(out.maximum, p.maximum)
        for v, c in p.values.items():
            values[v] = values.get(v, 0) + c
    out.values, sampled = _bottom_k(kind, values, k, legacy)
    out.sampled = sampled or any(p.sampled for p in parts)
    out.legacy_hash = legacy and out.sampled
    return out


def numeric_column(values: np.ndarray | pa.Array | pa.ChunkedArray, k: int = K) -> ColumnProfile:
    """A numeric column from a float64 array (NaN = missing) or an Arrow array (null or NaN = missing)."""
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        arr = values
        if arr.type != pa.float64():
            arr = pc.cast(arr, pa.float64(), safe=not pa.types.is_integer(arr.type))
    else:
        arr = pa.array(np.asarray(values, dtype=np.float64), from_pandas=True)
    if pa.types.is_floating(values.type if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.float64()):
        arr = pc.if_else(pc.is_nan(arr), pa.scalar(None, pa.float64()), arr)
    present = pc.add(pc.drop_null(arr), 0.0)  # -0.0 and 0.0 are one value
    out = ColumnProfile(NUMERIC, len(arr), len(arr) - len(present))
    if len(present):
        counted = pc.value_counts(present)
        unique = counted.field("values").to_numpy(zero_copy_only=False)
        counts = counted.field("counts").to_numpy(zero_copy_only=False)
        sampled = unique.size > k
        if sampled:
            keep = np.argpartition(hash_numbers(unique), k - 1)[:k]
            unique, counts = unique[keep], counts[keep]
        out.mean = float(pc.mean(present).as_py())
        out.m2 = float(pc.variance(present, ddof=0).as_py()) * len(present)
        extremes = pc.min_max(present)
        out.minimum, out.maximum = float(extremes["min"].as_py()), float(extremes["max"].as_py())
        out.values, out.sampled = dict(zip(unique.tolist(), counts.tolist(), strict=True)), bool(sampled)
    return out


def categorical_column(column: pa.ChunkedArray | pa.Array, k: int = K) -> ColumnProfile:
    if column.type != pa.string():
        column = column.cast(pa.string())
    # As Ingest types a cell: empty or whitespace-only is missing.
    blank = pc.equal(pc.utf8_trim_whitespace(column), "")
    column = pc.if_else(blank, pa.scalar(None, pa.string()), column)
    counted = pc.value_counts(pc.drop_null(column))
    unique, counts = counted.field("values"), counted.field("counts").to_numpy(zero_copy_only=False)
    sampled = len(unique) > k
    if sampled:  # the k smallest hashes, chosen before any value becomes a Python object
        keep = np.argpartition(hash_strings(unique), k - 1)[:k]
        unique, counts = unique.take(pa.array(keep)), counts[keep]
    values = dict(zip(unique.to_pylist(), counts.tolist(), strict=True))
    return ColumnProfile(CATEGORICAL, len(column), column.null_count, values=values, sampled=bool(sampled))


@dataclasses.dataclass
class DatasetProfile:
    rows: int
    columns: dict[str, ColumnProfile]
    source: str = ""

    def to_json(self) -> str:
        return json.dumps({"format": PROFILE_FORMAT, "rows": self.rows, "source": self.source,
                           "columns": {name: c.to_dict() for name, c in self.columns.items()}})

    @classmethod
    def from_json(cls, text: str, source: str = "") -> "DatasetProfile":
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise MonitorError(f"monitor: {source or 'profile'}: not JSON ({e})") from None
        found = d.get("format") if isinstance(d, dict) else None
        if found not in (PROFILE_FORMAT, LEGACY_FORMAT):
            raise ProfileFormatError(f"monitor: {source or 'profile'}: expected a {PROFILE_FORMAT} profile, got "
                                     f"format {found!r}" + (" (written by an older flywheel: retrain to write a "
                                                            "new baseline)" if found else ""))
        cols = {name: ColumnProfile.from_dict(c, found) for name, c in d["columns"].items()}
        return cls(rows=int(d["rows"]), columns=cols, source=d.get("source") or source)


class ProfileFormatError(MonitorError):
    """A profile file in another format (e.g. written by an older flywheel)."""


def merge(profiles: Sequence[DatasetProfile]) -> DatasetProfile:
    """The exact profile of the union of the profiled rows (see the module docstring)."""
    names = list(dict.fromkeys(n for p in profiles for n in p.columns))
    columns = {}
    for name in names:
        parts = [p.columns[name] for p in profiles if name in p.columns]
        absent = sum(p.rows for p in profiles if name not in p.columns)
        if absent:
            parts.append(ColumnProfile(parts[0].kind, absent, absent))
        columns[name] = merge_columns(parts)
    return DatasetProfile(rows=sum(p.rows for p in profiles), columns=columns,
                          source=" + ".join(p.source for p in profiles if p.source))


# ---- building profiles --------------------------------------------------------------------------------------

def profile_table(table: pa.Table, source: str = "", kinds: Optional[Mapping[str, str]] = None) -> DatasetProfile:
    """The profile of an Arrow table; `kinds` ({column: NUMERIC|CATEGORICAL}) overrides the Arrow types."""
    cols: dict[str, ColumnProfile] = {}
    for name in table.column_names:
        column = table.column(name)
        kind = (kinds or {}).get(name)
        if kind is None:
            numeric = (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)
                       or pa.types.is_null(column.type))
            kind = NUMERIC if numeric else CATEGORICAL
        if kind == NUMERIC:
            try:
                cols[name] = numeric_column(column)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
                raise MonitorError(f"monitor: {source}: column {name!r}: expected numbers, got {column.type} "
                                   f"({e})") from None
        else:
            cols[name] = categorical_column(column)
    return DatasetProfile(rows=table.num_rows, columns=cols, source=source)


class Builder:
    """Builds a profile row by row in bounded memory (the accumulator of the Beam CombineFn and of plan()).

    Rows are dicts of typed values as Ingest's parsing yields them (int, float, bytes; absent = missing).
    Values are buffered per column and folded into the bounded bottom-K table in batches.
    """

    _BATCH = 4096

    def __init__(self, kinds: Mapping[str, str]):
        self.kinds = dict(kinds)
        self.rows = 0
        self._parts: dict[str, ColumnProfile] = {n: ColumnProfile(kind) for n, kind in self.kinds.items()}
        self._pending: dict[str, list] = {n: [] for n in self.kinds}
        self._pending_rows = 0

    def add(self, values: Mapping[str, Any]) -> None:
        self.rows += 1
        self._pending_rows += 1
        for name, pending in self._pending.items():
            value = values.get(name)
            if value is not None:
                pending.append(value)
        if self._pending_rows >= self._BATCH:
            self._flush()

    def _flush(self) -> None:
        if not self._pending_rows:
            return
        for name, pending in self._pending.items():
            kind = self.kinds[name]
            if kind == NUMERIC:
                arr = np.asarray(pending, dtype=np.float64)
                part = numeric_column(np.concatenate([arr, np.full(self._pending_rows - len(pending), np.nan)]))
            else:
                text = [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in pending]
                part = categorical_column(pa.array(text + [None] * (self._pending_rows - len(pending)),
                                                   type=pa.string()))
            self._parts[name] = merge_columns([self._parts[name], part])
            pending.clear()
        self._pending_rows = 0

    def merge(self, others: Iterable["Builder"]) -> "Builder":
        self._flush()
        for other in others:
            other._flush()
            self.rows += other.rows
            for name in self.kinds:
                self._parts[name] = merge_columns([self._parts[name], other._parts[name]])
        return self

    def result(self, source: str = "") -> DatasetProfile:
        self._flush()
        return DatasetProfile(rows=self.rows, columns=dict(self._parts), source=source)


def schema_kinds(columns: Sequence[Any]) -> dict[str, str]:
    """{name: NUMERIC|CATEGORICAL} for Ingest's typed columns (schema INT and FLOAT are numeric, BYTES categorical)."""
    return {c.name: CATEGORICAL if c.kind == "BYTES" else NUMERIC for c in columns}


# ---- reading data for the CLI -------------------------------------------------------------------------------

def _files(path: str) -> list[str]:
    """The data files of a file or folder, as Ingest finds them (`inputs.files_under`)."""
    try:
        return inputs.files_under(path)
    except inputs.InputError as e:
        raise MonitorError(e.for_command("monitor")) from None


def _csv_header(f) -> list[str]:
    header = [h.strip() for h in next(csv.reader([f.readline().decode("utf-8-sig", errors="replace")]), [])]
    f.seek(0)
    return header


def read_table(path: str, columns: Optional[Sequence[str]] = None) -> pa.Table:
    """A data file or folder, as Ingest finds its files (.csv, .csv.gz, .parquet; local, or on any filesystem
    `flywheel.storage` reaches), as one table (only `columns` when given, those present)."""
    # pyarrow's CSV and Parquet readers: a quarter second more, only for commands that read data files
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq  # (see above)

    tables = []
    for name in _files(path):
        try:
            with inputs.open_data(name) as f:
                if inputs.is_parquet(name):
                    names = pq.ParquetFile(f).schema_arrow.names
                    tables.append(pq.read_table(f, columns=[c for c in columns if c in names] if columns else None))
                else:
                    convert = pcsv.ConvertOptions()
                    if columns:
                        convert = pcsv.ConvertOptions(include_columns=[c for c in columns if c in _csv_header(f)])
                    tables.append(pcsv.read_csv(f, convert_options=convert))
        except (pa.ArrowInvalid, OSError) as e:
            raise MonitorError(f"monitor: {name}: cannot read: {e}") from None
    if len(tables) == 1:
        return tables[0]
    try:
        return pa.concat_tables(tables, promote=True)
    except pa.ArrowInvalid as e:
        raise MonitorError(f"monitor: {path}: files have incompatible columns: {e}") from None


def answered_rows(table: pa.Table) -> pa.Table:
    """The rows a client was answered with: a request log's failed requests (status other than 200) and shadow
    copies (rollout_role "shadow") left out, as they are not production data (a table without those columns passes
    whole)."""
    keep = None
    if STATUS in table.column_names:
        keep = pc.fill_null(pc.equal(table.column(STATUS), 200), True)
    if ROLLOUT_ROLE in table.column_names:
        answered = pc.fill_null(pc.not_equal(table.column(ROLLOUT_ROLE), SHADOW), True)
        keep = answered if keep is None else pc.and_(keep, answered)
    return table if keep is None else table.filter(keep)


def load(path: str, columns: Optional[Sequence[str]] = None, kinds: Optional[Mapping[str, str]] = None
         ) -> DatasetProfile:
    """A profile from a saved profile (.json), or computed from a CSV/Parquet file or folder (of a request log:
    its answered rows only, see answered_rows), read a block at a time: memory does not grow with the rows."""
    if path.lower().endswith(".json") and storage.exists(path) and not storage.isdir(path):
        return DatasetProfile.from_json(storage.read_text(path), path)
    wanted = None if columns is None else [*columns, *(c for c in (STATUS, ROLLOUT_ROLE) if c not in columns)]
    parts = [_profile_file(name, wanted, columns, kinds) for name in _files(path)]
    try:
        result = parts[0] if len(parts) == 1 else merge(parts)
    except MonitorError as e:
        raise MonitorError(f"monitor: {path}: files have incompatible columns: {e}") from None
    result.source = path
    return result


# Bytes of CSV parsed at a time. pyarrow's streaming CSV reader reads up to 32 blocks ahead of the consumer, so
# this sets the memory (4 MiB: ~130 MB in flight); it infers the column types from the first block (~28,000 taxi rows).
CSV_BLOCK = 4 << 20
PARQUET_BATCH = 65_536
GROUP_ROWS = 262_144  # rows profiled at once (blocks are gathered up to this many): fewer merges, bounded memory
_CONVERSION_ERROR = re.compile(r"In CSV column #(\d+):(?: Row #\d+:)? CSV conversion error to ([^:]+):")


def _profile_file(name: str, wanted: Optional[Sequence[str]], columns: Optional[Sequence[str]],
                  kinds: Optional[Mapping[str, str]]) -> DatasetProfile:
    """One file's profile, merged block by block (merges are exact, so this is the profile of the whole file).

    A CSV column whose type the first block got too narrow (empty, then numbers; integers, then decimals; numbers,
    then text) is widened and the file read again, so each column gets the type a whole-file read gives it.
    """
    types: dict[str, pa.DataType] = {}
    while True:
        try:
            return _profile_tables(_tables(name, wanted, types), name, columns, kinds)
        except pa.ArrowInvalid as e:
            widened = _widen(name, str(e), types)
            if widened is None:
                raise MonitorError(f"monitor: {name}: cannot read: {e}") from None
            types.update(widened)
        except OSError as e:
            raise MonitorError(f"monitor: {name}: cannot read: {e}") from None


def _widen(name: str, error: str, types: Mapping[str, pa.DataType]) -> Optional[dict[str, pa.DataType]]:
    """{column: the next wider type} for a CSV conversion error (null -> int64 -> float64 -> string), or None."""
    found = _CONVERSION_ERROR.search(error)
    if found is None or inputs.is_parquet(name):
        return None
    with inputs.open_data(name) as f:
        header = _csv_header(f)
    index, narrow = int(found.group(1)), found.group(2)
    if index >= len(header) or types.get(header[index]) == pa.string() or narrow in ("string", "binary"):
        return None
    wider = {"null": pa.int64(), "double": pa.string(), "float": pa.string()}.get(narrow)
    if wider is None:
        wider = pa.float64() if narrow.startswith(("int", "uint")) else pa.string()
    return None if types.get(header[index]) == wider else {header[index]: wider}


def _tables(name: str, wanted: Optional[Sequence[str]], types: Mapping[str, pa.DataType]) -> Iterator[pa.Table]:
    """A data file as tables of a block each (only `wanted` columns when given, those present); at least one."""
    # pyarrow's CSV and Parquet readers: a quarter second more, only for commands that read data files
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq  # (see above)

    if inputs.is_parquet(name):
        with inputs.open_data(name) as f:
            parquet = pq.ParquetFile(f)
            names = parquet.schema_arrow.names
            selected = [c for c in wanted if c in names] if wanted else None
            schema = parquet.schema_arrow if selected is None else pa.schema([parquet.schema_arrow.field(c)
                                                                              for c in selected])
            yield from _at_least_one(parquet.iter_batches(batch_size=PARQUET_BATCH, columns=selected), schema)
        return
    convert = pcsv.ConvertOptions(column_types=dict(types))
    if wanted:
        with inputs.open_data(name) as f:
            convert.include_columns = [c for c in wanted if c in _csv_header(f)]
    if not storage.is_local(name):
        # A remote file is read whole: the streaming reader's read-ahead over a Python file object cannot be
        # abandoned safely when a column must be widened.
        with inputs.open_data(name) as f:
            yield pcsv.read_csv(f, convert_options=convert)
        return
    with pa.input_stream(name) as f:  # native, decompressed by its name (.gz)
        reader = pcsv.open_csv(f, read_options=pcsv.ReadOptions(block_size=CSV_BLOCK), convert_options=convert)
        yield from _at_least_one(reader, reader.schema)


def _at_least_one(batches: Iterable[pa.RecordBatch], schema: pa.Schema) -> Iterator[pa.Table]:
    empty = True
    for batch in batches:
        empty = False
        yield pa.Table.from_batches([batch])
    if empty:
        yield schema.empty_table()


def _profile_tables(tables: Iterable[pa.Table], source: str, columns: Optional[Sequence[str]],
                    kinds: Optional[Mapping[str, str]]) -> DatasetProfile:
    def part(table: pa.Table) -> DatasetProfile:
        table = answered_rows(table)
        kept = [c for c in table.column_names if columns is None or c in columns]
        return profile_table(table.select(kept) if kept and len(kept) < table.num_columns else table, source, kinds)

    result: Optional[DatasetProfile] = None
    for group in _groups(tables):
        result = part(group) if result is None else merge([result, part(group)])
    if result is None:
        raise MonitorError(f"monitor: {source}: no table read")  # _tables yields at least one
    result.source = source
    return result


def _groups(tables: Iterable[pa.Table]) -> Iterator[pa.Table]:
    """Consecutive tables gathered into tables of at least GROUP_ROWS rows (the last one may be shorter)."""
    gathered: list[pa.Table] = []
    rows = 0
    for table in tables:
        gathered.append(table)
        rows += table.num_rows
        if rows >= GROUP_ROWS:
            yield pa.concat_tables(gathered)
            gathered, rows = [], 0
    if gathered:
        yield pa.concat_tables(gathered)


def profile_file(span: int) -> str:
    """The name of a span's profile in a DataProfile artifact (what Ingest writes, one per span)."""
    return f"profile-span-{span}.json"


_PROFILE_FILE = re.compile(r"profile-span-(\d+)\.json")


def read_span_profiles(profile_uri: str) -> dict[int, DatasetProfile]:
    """The per-span profiles of a DataProfile artifact, {span: profile}; raises MonitorError when it has none."""
    found: dict[int, DatasetProfile] = {}
    for name in storage.listdir(profile_uri):
        m = _PROFILE_FILE.fullmatch(name)
        if m:
            path = os.path.join(profile_uri, name)
            found[int(m.group(1))] = DatasetProfile.from_json(storage.read_text(path), path)
    if not found:
        raise MonitorError(f"monitor: {profile_uri} holds no profile-span-<N>.json files; expected the "
                           "DataProfile written by flywheel's Ingest")
    return found
