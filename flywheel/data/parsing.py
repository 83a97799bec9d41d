"""Typing rows against the curated schema; every row is either an example or a quarantine record.

Plain functions (no TensorFlow, no TFX): a row becomes a dict of typed values,
or a `Rejected` that says file, line, column, expected and actual.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import decimal
import hashlib
import io
import math
import re
import zlib
from typing import Any, Iterator, Sequence, Union

from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2

from flywheel import storage
from flywheel.data import inputs

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
    lines: int = 1  # the non-blank physical lines this quarantined row covers

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Parsed:
    """A typed row and its split."""

    split: str
    values: dict[str, Union[int, float, bytes]]
    lines: int = 1  # the non-blank physical lines the row covers (more than one: quoted line breaks)
    line: int = 0  # 1-based: the line its CSV record starts on, or its row number in a Parquet file (as Rejected's)


def load_schema(path: str) -> schema_pb2.Schema:
    """A TFDV schema in text format; a FileArgumentError (a ValueError) naming the file when it is missing, a
    folder, empty, not a schema, or a schema without features."""
    text = storage.read_file(path, "schema")
    expected = f"schema {path}: expected a TFDV schema in text format (schema.pbtxt)"
    try:
        schema = text_format.Parse(text, schema_pb2.Schema())
    except text_format.ParseError as e:
        raise storage.FileArgumentError(f"{expected}, could not parse it: {e}") from None
    if not schema.feature:
        raise storage.FileArgumentError(f"{expected}, found one with no features")
    return schema


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


SERVING = "SERVING"  # TFDV's environment of the rows a model is served with


def in_serving(feature: schema_pb2.Feature) -> bool:
    """Whether a schema feature comes with the rows a model is served (TFDV's environments): not when its
    `not_in_environment` names SERVING, nor when it has an `in_environment` list without SERVING. A feature
    not in serving is a label's source: optional when scoring, compared as label drift by the monitor."""
    if SERVING in feature.not_in_environment:
        return False
    return not feature.in_environment or SERVING in feature.in_environment


def label_names(schema: schema_pb2.Schema) -> tuple[str, ...]:
    """The schema's features not in serving (`in_serving`), in schema order."""
    return tuple(feature.name for feature in schema.feature if not in_serving(feature))


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


_INT_TEXT = re.compile(r"[+-]?[0-9]+")
_FLOAT_TEXT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_SPACES = " \t"


def _missing(value: Any) -> bool:
    """Empty or blank text, None, or a float NaN (how Parquet writers such as pandas store a missing number)."""
    if value is None:
        return True
    if isinstance(value, str):
        return value.strip(_SPACES) == ""
    return isinstance(value, float) and math.isnan(value)


def _number_text(value: Any, kind: str) -> str:
    """The text of a number cell; ASCII decimal only (no '1_000', 'nan', 'inf', '0x10', non-ASCII digits)."""
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"expected {kind}, got bytes that are not UTF-8 {value!r}") from None
    if not isinstance(value, (str, decimal.Decimal)):
        raise ValueError(f"expected {kind}, got {type(value).__name__} {value!r}")
    text = str(value).strip(_SPACES)
    if not (_INT_TEXT if kind == INT else _FLOAT_TEXT).fullmatch(text):
        raise ValueError(f"expected {kind}, got {str(value)!r}")
    return text


def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"expected INT, got boolean {value!r}")
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            raise ValueError(f"expected INT, got {value!r}")
        number = int(value)
    elif isinstance(value, int):
        number = value
    else:
        number = int(_number_text(value, INT))
    if not _INT64_MIN <= number <= _INT64_MAX:
        raise ValueError(f"value {number} out of range for INT (int64)")
    return number


def _to_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"expected FLOAT, got boolean {value!r}")
    number = float(value) if isinstance(value, (int, float)) else float(_number_text(value, FLOAT))
    if math.isinf(number) or abs(number) > _FLOAT32_MAX:
        raise ValueError(f"value {str(value).strip(_SPACES)!r} out of range for FLOAT (float32)")
    return number


def _convert_text(value: str, column: Column) -> Union[int, float, bytes, None]:
    """convert() for a text cell (every CSV cell): the same rules, on the path that runs for each cell."""
    text = value.strip(_SPACES)
    if not text:
        if column.required:
            raise ValueError(f"missing required value for {column.kind}")
        return None
    if column.kind == BYTES:
        return value.encode("utf-8")
    if column.kind == INT:
        if not _INT_TEXT.fullmatch(text):
            raise ValueError(f"expected INT, got {value!r}")
        number = int(text)
        if not _INT64_MIN <= number <= _INT64_MAX:
            raise ValueError(f"value {number} out of range for INT (int64)")
        return number
    if not _FLOAT_TEXT.fullmatch(text):
        raise ValueError(f"expected FLOAT, got {value!r}")
    result = float(text)
    if math.isinf(result) or abs(result) > _FLOAT32_MAX:
        raise ValueError(f"value {text!r} out of range for FLOAT (float32)")
    return result


def convert(value: Any, column: Column) -> Union[int, float, bytes, None]:
    """Converts one cell to the column's type; None for missing. Raises ValueError with the reason.

    Numbers in text must match an ASCII decimal grammar: optional sign, digits, for FLOAT an optional
    fraction and exponent (`-1.5e3`, `.5`, `2.`); spaces and tabs around them are allowed. Python's own
    float()/int() would also take 'nan', 'inf', '1_000' and non-ASCII digits: those are refused here.
    """
    if isinstance(value, str):
        return _convert_text(value, column)
    if _missing(value):
        if column.required:
            nan = " (NaN)" if isinstance(value, float) else ""
            raise ValueError(f"missing required value for {column.kind}{nan}")
        return None
    if column.kind == BYTES:
        if isinstance(value, bytes):
            return value
        return str(value).encode("utf-8")
    if column.kind == INT:
        return _to_int(value)
    return _to_float(value)


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
             split_key_columns: Sequence[str], splits: Sequence[tuple[str, int]],
             lines: int = 1) -> Union[Parsed, Rejected]:
    values: dict[str, Union[int, float, bytes]] = {}
    for column in columns:
        try:
            value = convert(record.get(column.name), column)
        except ValueError as e:
            return Rejected(path, line, column.name, f"column {column.name!r}: {e}", raw, lines)
        if value is not None:
            values[column.name] = value
    key = "\x1f".join(str(record.get(c, "")) for c in split_key_columns) if split_key_columns else raw
    return Parsed(assign_split(key, splits), values, lines, line)


# A quoted field may run across at most this many physical lines: past it, the quote is taken to be unclosed.
MAX_RECORD_LINES = 100
_START, _IN_FIELD, _IN_QUOTES, _QUOTE_IN_QUOTES = range(4)
_QUOTE, _COMMA = ord('"'), ord(",")
_BOM = b"\xef\xbb\xbf"


def _content(line: bytes) -> bytes:
    """A physical line without its terminator (LF or CRLF)."""
    if line.endswith(b"\n"):
        line = line[:-1]
    return line[:-1] if line.endswith(b"\r") else line


def _state_after(line: bytes, state: int) -> tuple[int, bool]:
    """The RFC 4180 quoting state at the end of a physical line, from the state at its start, and whether
    the line has a bare quote (one inside an unquoted field, which RFC 4180 does not allow).

    A quote opens a quoted field only as a field's first character; `""` inside one is a literal quote.
    """
    content = _content(line)
    if _QUOTE not in content:
        return (state if state == _IN_QUOTES else _IN_FIELD), False
    bare = False
    for ch in content:
        if state == _IN_QUOTES:
            if ch == _QUOTE:
                state = _QUOTE_IN_QUOTES
        elif state == _IN_FIELD:
            if ch == _COMMA:
                state = _START
            elif ch == _QUOTE:
                bare = True
        elif state == _QUOTE_IN_QUOTES and ch == _QUOTE:
            state = _IN_QUOTES
        elif state == _START and ch == _QUOTE:
            state = _IN_QUOTES
        else:
            state = _START if ch == _COMMA else _IN_FIELD
    return state, bare


def _physical_lines(stream, path: str) -> Iterator[bytes]:
    """The file's physical lines, each with its terminator; the last may have none."""
    pending: list[bytes] = []  # the start of a line that runs past the blocks read so far
    while True:
        try:
            block = stream.read(1 << 20)
        except (OSError, EOFError, zlib.error) as e:
            raise IngestError(f"ingest: {path}: cannot read the file: {e}") from None
        if not block:
            break
        if b"\n" not in block:
            pending.append(block)
            continue
        parts = block.split(b"\n")
        parts[0] = b"".join(pending) + parts[0]
        pending = [parts.pop()] if parts[-1] else []
        if not pending:
            parts.pop()
        for part in parts:
            yield part + b"\n"
    if pending:
        yield b"".join(pending)


class _Lines:
    """Numbered physical lines with push-back, so that reading can resume inside a rejected record."""

    def __init__(self, stream, path: str, start: int = 1):
        self._lines = enumerate(_physical_lines(stream, path), start=start)
        self._back: collections.deque = collections.deque()

    def next(self) -> tuple[int, bytes] | None:
        if self._back:
            return self._back.popleft()
        return next(self._lines, None)

    def push_back(self, lines: Sequence[tuple[int, bytes]]) -> None:
        self._back.extendleft(reversed(lines))


@dataclasses.dataclass(frozen=True)
class _Record:
    lines: list[tuple[int, bytes]]  # (line number, bytes with terminator), one or more
    unclosed: str  # why the quoted field never closed, or '' when the record is complete
    bare_quote: bool = False  # a quote inside an unquoted field

    @property
    def first(self) -> int:
        return self.lines[0][0]

    @property
    def nonblank(self) -> int:
        return sum(1 for _, line in self.lines if line.strip())

    @property
    def data(self) -> bytes:
        return b"".join(line for _, line in self.lines)


def _next_record(lines: _Lines) -> _Record | None:
    """The next record: one line, or more when a quoted field holds line breaks; blank lines are skipped."""
    first = lines.next()
    while first is not None and not first[1].strip():
        first = lines.next()
    if first is None:
        return None
    record = [first]
    state, bare = _state_after(first[1], _START)
    while state == _IN_QUOTES:
        if len(record) >= MAX_RECORD_LINES:
            return _Record(record, f"runs past {MAX_RECORD_LINES} lines")
        following = lines.next()
        if following is None:
            return _Record(record, "is not closed before the end of the file")
        record.append(following)
        state, bare_here = _state_after(following[1], _IN_QUOTES)
        bare = bare or bare_here
    return _Record(record, "", bare)


def _fields(data: bytes, text: str) -> list[str]:
    """A record's fields; raises csv.Error for a record that is not one well-formed RFC 4180 record."""
    content = _content(data)
    if _QUOTE not in content and b"\r" not in content:
        return text.rstrip("\r\n").split(",")
    records = list(csv.reader(io.StringIO(text, newline=""), strict=True))
    if len(records) != 1:
        raise csv.Error("a carriage return inside an unquoted field")
    return records[0]


def _lossy(data: bytes) -> str:
    return data.decode("utf-8", "replace").rstrip("\r\n")


def _read_header(path: str, lines: _Lines, columns: Sequence[Column]) -> list[str]:
    record = _next_record(lines)
    if record is None:
        raise IngestError(f"ingest: {path}: file is empty; expected a header line with columns "
                          f"{[c.name for c in columns]}")
    data = record.data
    if record.first == 1 and data.startswith(_BOM):
        data = data[len(_BOM):]
    if record.unclosed or len(record.lines) > 1:
        raise IngestError(f"ingest: {path} line {record.first}: the header must be one line; a quoted column "
                          f"name opened there {record.unclosed or 'holds a line break'}")
    try:
        header = [h.strip() for h in _fields(data, data.decode("utf-8"))]
    except UnicodeDecodeError:
        raise IngestError(f"ingest: {path} line {record.first}: header is not valid UTF-8: {_lossy(data)!r}") from None
    except csv.Error as e:
        raise IngestError(f"ingest: {path} line {record.first}: malformed header: {e}") from None
    check_header(path, header, columns)
    return header


def _reads_as_a_row(line: bytes, width: int) -> bool:
    """Whether one physical line, on its own, splits into a record of `width` fields."""
    if not line.strip():
        return False
    text = line.decode("utf-8", "replace")
    try:
        return len(_fields(line, text)) == width
    except csv.Error:
        return False


def _structural_problem(record: _Record, header: Sequence[str]) -> tuple[str, list[str]]:
    """(why the record is not one well-formed row, '' if it is; its fields)."""
    if record.unclosed:
        return f"unclosed quote: the quoted field opened on line {record.first} {record.unclosed}", []
    if record.bare_quote:
        return "malformed CSV: a quote inside an unquoted field (quote the field and double the quote)", []
    for number, line in record.lines[1:]:
        if _reads_as_a_row(line, len(header)):
            return f"stray quote: line {number}, inside the quoted field opened on line {record.first}, " \
                   f"reads as a complete row", []
    data = record.data
    if b"\0" in data:
        return "row contains a NUL byte", []
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        return f"row has bytes that are not valid UTF-8 ({e.reason} at byte {e.start})", []
    try:
        fields = _fields(data, text)
    except csv.Error as e:
        return f"malformed CSV: {e}", []
    if len(fields) != len(header):
        return f"expected {len(header)} fields, got {len(fields)}", []
    return "", fields


def csv_rows(path: str, columns: Sequence[Column], split_key_columns: Sequence[str],
             splits: Sequence[tuple[str, int]]) -> Iterator[Union[Parsed, Rejected]]:
    """Parses one CSV file (RFC 4180: quoted commas and newlines, CRLF, UTF-8 with or without BOM; `.csv.gz`).

    Every non-blank physical line after the header ends up in exactly one yielded row (`lines` says how
    many each covers). A record that spans lines but is not one well-formed row (an unclosed quote, the
    wrong number of fields) cannot be trusted to end where it seems to: its first line alone is
    quarantined and reading resumes at the next physical line, so a stray quote never hides the rows
    after it.
    """
    with inputs.open_data(path) as stream:
        lines = _Lines(stream, path)
        header = _read_header(path, lines, columns)
        yield from _records(path, lines, header, columns, split_key_columns, splits)


def _records(path: str, lines: _Lines, header: Sequence[str], columns: Sequence[Column],
             split_key_columns: Sequence[str], splits: Sequence[tuple[str, int]]) -> Iterator[Union[Parsed, Rejected]]:
    """The rows of the physical lines after the header (csv_rows' loop)."""
    while (record := _next_record(lines)) is not None:
        problem, fields = _structural_problem(record, header)
        if problem and len(record.lines) > 1:
            last = record.lines[-1][0]
            span = "" if record.unclosed else f" in the record spanning lines {record.first}-{last}"
            lines.push_back(record.lines[1:])
            yield Rejected(path, record.first, None,
                           f"{problem}{span}; line {record.first} quarantined alone, reading resumes at "
                           f"line {record.lines[1][0]}", _lossy(record.lines[0][1]), 1)
        elif problem:
            yield Rejected(path, record.first, None, problem, _lossy(record.data), record.nonblank)
        else:
            raw = ",".join(fields)
            yield type_row(path, record.first, dict(zip(header, fields, strict=True)), raw, columns,
                           split_key_columns, splits, record.nonblank)


def csv_header(path: str, stream, columns: Sequence[Column]) -> list[str]:
    """Reads the header record from `stream` (at the file's start) as csv_rows does: its column names, checked."""
    return _read_header(path, _Lines(stream, path), columns)


class _Chained:
    """A stream that reads `data` first, then `rest` (another stream, or nothing)."""

    def __init__(self, data: bytes, rest=None):
        self._data, self._rest = data, rest

    def read(self, size: int) -> bytes:
        if self._data:
            data, self._data = self._data, b""
            return data
        return self._rest.read(size) if self._rest is not None else b""


def lines_rows(path: str, first_line: int, data: bytes, rest, header: Sequence[str], columns: Sequence[Column],
               split_key_columns: Sequence[str], splits: Sequence[tuple[str, int]]
               ) -> Iterator[Union[Parsed, Rejected]]:
    """csv_rows from a point inside a file: the physical lines in `data` (whole lines, the first numbered
    `first_line`), then, when `rest` is a stream, the rest of the file read from it."""
    lines = _Lines(_Chained(data, rest), path, first_line)
    yield from _records(path, lines, header, columns, split_key_columns, splits)


def _parquet_file(path: str, f):
    import pyarrow as pa  # pyarrow: only Parquet files need it, and it takes a quarter second to import
    import pyarrow.parquet as pq  # (its Parquet reader: as much again)

    try:
        return pq.ParquetFile(f)
    except (pa.ArrowException, OSError) as e:
        raise IngestError(f"ingest: {path}: not a readable Parquet file: {e}") from None


def parquet_rows(path: str, columns: Sequence[Column], split_key_columns: Sequence[str],
                 splits: Sequence[tuple[str, int]]) -> Iterator[Union[Parsed, Rejected]]:
    """Parses one Parquet file; values are typed from the schema, not from Parquet's own types.

    A float NaN is a missing value (pandas writes missing numbers so): quarantined in a required
    column, absent in an optional one. A file that cannot be read to its end is an error.
    """
    import pyarrow as pa  # pyarrow: only Parquet files need it (see _parquet_file)

    with inputs.open_binary(path) as f:
        parquet = _parquet_file(path, f)
        header = parquet.schema_arrow.names
        check_header(path, header, columns)
        names = [c.name for c in columns if c.name in header]
        line = 0
        batches = parquet.iter_batches(batch_size=10_000, columns=names)
        while True:
            try:
                batch = next(batches, None)
            except (pa.ArrowException, OSError) as e:
                raise IngestError(f"ingest: {path}: cannot read row group data after row {line}: {e}") from None
            if batch is None:
                return
            for record in batch.to_pylist():
                line += 1
                raw = ",".join("" if record[n] is None else str(record[n]) for n in names)
                yield type_row(path, line, record, raw, columns, split_key_columns, splits)


def file_rows(path: str, columns: Sequence[Column], split_key_columns: Sequence[str],
              splits: Sequence[tuple[str, int]]) -> Iterator[Union[Parsed, Rejected]]:
    if inputs.is_parquet(path):
        return parquet_rows(path, columns, split_key_columns, splits)
    if inputs.is_supported(path):
        return csv_rows(path, columns, split_key_columns, splits)
    raise IngestError(f"ingest: {path}: unsupported file type; expected one of {inputs.SUPPORTED_SUFFIXES}")


def physical_rows(path: str) -> int:
    """How many data rows the file holds, counted without the parser: Parquet's footer `num_rows`; for
    CSV the non-blank physical lines after the header line."""
    if inputs.is_parquet(path):
        with inputs.open_binary(path) as f:
            return _parquet_file(path, f).metadata.num_rows
    nonblank = 0
    with inputs.open_data(path) as stream:
        try:
            for line in stream:
                nonblank += bool(line.strip())
        except (OSError, EOFError, zlib.error) as e:
            raise IngestError(f"ingest: {path}: cannot read the file: {e}") from None
    return max(nonblank - 1, 0)


def check_accounted(path: str, physical: int, covered: int) -> None:
    """Every row a file holds is written or quarantined: raises IngestError when the counts differ."""
    if physical != covered:
        raise IngestError(f"ingest: {path}: the file holds {physical:,} data rows but {covered:,} were written "
                          f"or quarantined; rows were lost or counted twice (please report this as a bug)")


def check_files(files: Sequence[str], columns: Sequence[Column]) -> None:
    """Fails fast, before any row is read, on a file that is unreadable, empty or misses a required column."""
    for path in files:
        if inputs.is_parquet(path):
            with inputs.open_binary(path) as f:
                check_header(path, _parquet_file(path, f).schema_arrow.names, columns)
        else:
            with inputs.open_data(path) as stream:
                _read_header(path, _Lines(stream, path), columns)


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
