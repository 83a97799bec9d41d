"""Typing rows against the curated schema; every row is either an example or a quarantine record.

Plain functions (no TensorFlow, no TFX): a row becomes a dict of typed values,
or a `Rejected` that says file, line, column, expected and actual.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import math
from typing import Any, Iterator, Sequence, Union

from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2

from flywheel.components.ingest import inputs

INT, FLOAT, BYTES = "INT", "FLOAT", "BYTES"
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_FLOAT32_MAX = 3.4028234663852886e38


class IngestError(ValueError):
    """Ingestion cannot go on: a file or a share of rows does not meet the schema."""


@dataclasses.dataclass(frozen=True)
class Column:
    name: str
    kind: str  # INT, FLOAT or BYTES
    required: bool


@dataclasses.dataclass(frozen=True)
class Rejected:
    """A quarantined row and why."""

    file: str
    line: int  # 1-based: the line a CSV record starts on, or the row number in a Parquet file
    column: str | None
    reason: str
    raw: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Parsed:
    """A typed row and its split."""

    split: str
    values: dict[str, Union[int, float, bytes]]


def load_schema(path: str) -> schema_pb2.Schema:
    with inputs.open_binary(path) as f:
        return text_format.Parse(f.read().decode("utf-8"), schema_pb2.Schema())


def columns_from_schema(schema: schema_pb2.Schema) -> list[Column]:
    """The typed columns of a schema; `presence.min_fraction == 1` marks a required column."""
    kinds = {schema_pb2.INT: INT, schema_pb2.FLOAT: FLOAT, schema_pb2.BYTES: BYTES}
    cols = []
    for feature in schema.feature:
        if feature.type not in kinds:
            raise IngestError(f"ingest: schema feature {feature.name!r} has unsupported type {feature.type}")
        cols.append(Column(feature.name, kinds[feature.type], feature.presence.min_fraction >= 1.0))
    if not cols:
        raise IngestError("ingest: the schema has no features")
    return cols


def check_header(path: str, header: Sequence[str], columns: Sequence[Column]) -> list[str]:
    """Raises when a required column is missing; returns the extra columns, which are not ingested."""
    present = set(header)
    missing = [c.name for c in columns if c.required and c.name not in present]
    if missing:
        raise IngestError(
            f"ingest: {path}: missing required column(s) {missing}; expected columns "
            f"{[c.name for c in columns]}, got {list(header)}"
        )
    dupes = sorted({h for h in header if list(header).count(h) > 1})
    if dupes:
        raise IngestError(f"ingest: {path}: duplicate column(s) {dupes} in the header")
    known = {c.name for c in columns}
    return [h for h in header if h not in known]


def convert(value: Any, column: Column) -> Union[int, float, bytes, None]:
    """Converts one cell to the column's type; None for missing. Raises ValueError with the reason."""
    if value is None or (isinstance(value, str) and value.strip() == ""):
        if column.required:
            raise ValueError(f"missing required value for {column.kind}")
        return None
    if column.kind == BYTES:
        if isinstance(value, bytes):
            return value
        return str(value).encode("utf-8")
    if column.kind == INT:
        if isinstance(value, bool):
            raise ValueError(f"expected INT, got boolean {value!r}")
        if isinstance(value, float):
            if not value.is_integer():
                raise ValueError(f"expected INT, got {value!r}")
            value = int(value)
        elif not isinstance(value, int):
            text = str(value).strip()
            try:
                value = int(text)
            except ValueError:
                raise ValueError(f"expected INT, got {str(value)!r}") from None
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise ValueError(f"value {value} out of range for INT (int64)")
        return value
    if isinstance(value, bool):
        raise ValueError(f"expected FLOAT, got boolean {value!r}")
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise ValueError(f"expected FLOAT, got {str(value)!r}") from None
    if math.isinf(number) or abs(number) > _FLOAT32_MAX:
        raise ValueError(f"value {str(value).strip()!r} out of range for FLOAT (float32)")
    return number


def assign_split(key: str, splits: Sequence[tuple[str, int]]) -> str:
    """Deterministic split: sha256 of the key into hash buckets (same key, same split, everywhere)."""
    total = sum(b for _, b in splits)
    bucket = int.from_bytes(hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()[:8], "big") % total
    for name, buckets in splits:
        if bucket < buckets:
            return name
        bucket -= buckets
    raise AssertionError("unreachable: bucket beyond total")


def type_row(path: str, line: int, record: dict[str, Any], raw: str, columns: Sequence[Column],
             split_key_columns: Sequence[str], splits: Sequence[tuple[str, int]]) -> Union[Parsed, Rejected]:
    values: dict[str, Union[int, float, bytes]] = {}
    for column in columns:
        try:
            value = convert(record.get(column.name), column)
        except ValueError as e:
            return Rejected(path, line, column.name, f"column {column.name!r}: {e}", raw)
        if value is not None:
            values[column.name] = value
    key = "\x1f".join(str(record.get(c, "")) for c in split_key_columns) if split_key_columns else raw
    return Parsed(assign_split(key, splits), values)


def _has_undecodable(text: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in text)


def csv_rows(path: str, columns: Sequence[Column], split_key_columns: Sequence[str],
             splits: Sequence[tuple[str, int]]) -> Iterator[Union[Parsed, Rejected]]:
    """Parses one CSV file (RFC 4180: quoted commas and newlines, CRLF, UTF-8 with or without BOM)."""
    with inputs.open_binary(path) as raw_file:
        data = raw_file.read()
    if not data.strip():
        raise IngestError(f"ingest: {path}: file is empty; expected a header line with columns "
                          f"{[c.name for c in columns]}")
    text = io.StringIO(data.decode("utf-8-sig", errors="surrogateescape"), newline="")
    reader = csv.reader(text, strict=True)
    header = next(reader)
    if _has_undecodable("".join(header)):
        raise IngestError(f"ingest: {path} line 1: header is not valid UTF-8")
    header = [h.strip() for h in header]
    check_header(path, header, columns)
    start = reader.line_num + 1
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            yield Rejected(path, start, None, f"malformed CSV: {e}", "")
            start = reader.line_num + 1
            continue
        line, start = start, reader.line_num + 1
        if not fields or fields == [""]:
            continue  # a blank line is not a row
        raw = ",".join(fields)
        if _has_undecodable(raw):
            yield Rejected(path, line, None, "row has bytes that are not valid UTF-8",
                           raw.encode("utf-8", "surrogateescape").decode("utf-8", "replace"))
            continue
        if len(fields) != len(header):
            yield Rejected(path, line, None, f"expected {len(header)} fields, got {len(fields)}", raw)
            continue
        yield type_row(path, line, dict(zip(header, fields, strict=False)), raw, columns, split_key_columns, splits)


def parquet_rows(path: str, columns: Sequence[Column], split_key_columns: Sequence[str],
                 splits: Sequence[tuple[str, int]]) -> Iterator[Union[Parsed, Rejected]]:
    """Parses one Parquet file; values are typed from the schema, not from Parquet's own types."""
    import pyarrow.parquet as pq

    with inputs.open_binary(path) as f:
        table = pq.read_table(io.BytesIO(f.read()))
    header = table.column_names
    check_header(path, header, columns)
    names = [c.name for c in columns if c.name in header]
    line = 0
    for batch in table.select(names).to_batches(max_chunksize=10_000):
        for record in batch.to_pylist():
            line += 1
            raw = ",".join("" if record[n] is None else str(record[n]) for n in names)
            yield type_row(path, line, record, raw, columns, split_key_columns, splits)


def file_rows(path: str, columns: Sequence[Column], split_key_columns: Sequence[str],
              splits: Sequence[tuple[str, int]]) -> Iterator[Union[Parsed, Rejected]]:
    if path.lower().endswith(".parquet"):
        return parquet_rows(path, columns, split_key_columns, splits)
    return csv_rows(path, columns, split_key_columns, splits)


def check_files(files: Sequence[str], columns: Sequence[Column]) -> None:
    """Fails fast, before any row is read, on a file that is empty or misses a required column."""
    for path in files:
        if path.lower().endswith(".parquet"):
            import pyarrow.parquet as pq

            with inputs.open_binary(path) as f:
                header = pq.ParquetFile(f).schema_arrow.names
        else:
            with inputs.open_binary(path) as f:
                first = f.readline()
            if not first.strip():
                raise IngestError(f"ingest: {path}: file is empty; expected a header line with columns "
                                  f"{[c.name for c in columns]}")
            header = [h.strip() for h in next(csv.reader([first.decode("utf-8-sig", "replace").rstrip("\r\n")]))]
        check_header(path, header, columns)


def parse_splits(text: str) -> list[tuple[str, int]]:
    """'train:2,eval:1' -> [('train', 2), ('eval', 1)]."""
    splits = []
    for part in text.split(","):
        name, _, buckets = part.strip().partition(":")
        if not name or not buckets.isdigit() or int(buckets) < 1:
            raise IngestError(f"ingest: splits: expected 'name:buckets,...' like 'train:2,eval:1', got {text!r}")
        splits.append((name, int(buckets)))
    if len({n for n, _ in splits}) != len(splits):
        raise IngestError(f"ingest: splits: duplicate split names in {text!r}")
    return splits
