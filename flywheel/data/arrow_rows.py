"""CSV rows at the C++ reader's speed, typed exactly as `parsing` types them.

A CSV file is read in blocks of whole lines. A block whose bytes are plain (no quote, carriage return or NUL, no
blank line, no `0x`, valid UTF-8) is parsed by pyarrow's CSV reader with the schema's types; a value the reader
takes but the value grammar refuses (NaN, infinity, beyond float32, a hexadecimal integer) or a missing required
value sends its row to `parsing`'s own path, which quarantines it with the same file, line and reason as ever.
The rows left are encoded to tf.Example bytes here, identical to what `parsing`'s rows serialize to
(deterministic serialization: features in name order), and split by the same hash (`parsing.assign_split`).
A block the reader refuses, or any other problem, goes to `parsing` whole; from the first quote on, so does
the rest of the file (a quoted field may hold line breaks across blocks).

What `parsing` refuses that pyarrow's reader takes, found by reading Arrow's parsers and checked by
tests/data/test_arrow_rows.py over the grammar's table and every short text over its alphabet: for INT
`0x1F` (hex; Arrow also takes no `+`, which only sends such rows to `parsing`), for FLOAT `nan`, `inf`,
`infinity` in any case and values beyond float32. Arrow trims spaces and tabs around numbers, as `parsing` does.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import zlib
from typing import Iterator, Sequence, Union

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from flywheel.data import inputs, parsing

BLOCK_BYTES = 16 << 20  # bytes of whole lines per block (about 110,000 taxi rows)
_FLOAT32_MAX = 3.4028234663852886e38
_MAX_NAME = 100  # longer column names: the file goes to `parsing` (one-byte lengths in the encoder below)
_UNSAFE = (b"\0", b"0x", b"0X", b"\n\n", b"\n\r\n")
_ARROW_TYPES = {parsing.INT: pa.int64(), parsing.FLOAT: pa.float64(), parsing.BYTES: pa.binary()}


@dataclasses.dataclass(frozen=True)
class Block:
    """Rows of a block typed by the fast path: their tf.Example bytes per split, and their typed values."""

    examples: dict[str, pa.Array]  # split -> serialized tf.Examples (a binary array), in line order
    values: pa.Table  # the rows' typed values: INT int64, FLOAT float64, BYTES string; null = missing
    rows: int  # rows (= physical lines) typed here


Item = Union[Block, parsing.Parsed, parsing.Rejected]


# ---- tf.Example bytes -------------------------------------------------------------------------------------

def _varints(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Protobuf varints of int64 values (negative ones as their uint64 two's complement, 10 bytes): a byte matrix
    as wide as the longest and each value's length."""
    v = values.astype(np.int64).view(np.uint64)
    lengths = np.ones(len(v), dtype=np.int64)
    widest = 1
    for i in range(1, 10):
        longer = v >= np.uint64(1 << (7 * i))
        if not longer.any():
            break
        lengths += longer
        widest = i + 1
    matrix = np.zeros((len(v), widest), dtype=np.uint8)
    for i in range(widest):
        more = (lengths > i + 1).astype(np.uint8) << np.uint8(7)
        matrix[:, i] = ((v >> np.uint64(7 * i)) & np.uint64(0x7F)).astype(np.uint8) | more
    return matrix, lengths


def _binary(offsets: np.ndarray, data) -> pa.Array:
    return pa.LargeBinaryArray.from_buffers(pa.large_binary(), len(offsets) - 1,
                                            [None, pa.py_buffer(offsets.astype(np.int64)), pa.py_buffer(data)])


def _ragged(matrix: np.ndarray, lengths: np.ndarray) -> pa.Array:
    """A binary array of each row's first `lengths[i]` bytes of `matrix`."""
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return _binary(offsets, np.ascontiguousarray(matrix[np.arange(matrix.shape[1]) < lengths[:, None]]))


def _constant(data: bytes, n: int) -> pa.Array:
    return _binary(np.arange(n + 1, dtype=np.int64) * len(data), data * n)


def _join(parts: Sequence[pa.Array]) -> pa.Array:
    return pc.binary_join_element_wise(*parts, pa.scalar(b"", pa.large_binary()))


def _with_varint(values: np.ndarray, lead: int | None = None) -> pa.Array:
    """Each value's varint, after the byte `lead` when given."""
    matrix, lengths = _varints(values)
    if lead is None:
        return _ragged(matrix, lengths)
    return _ragged(np.hstack([np.full((len(values), 1), lead, dtype=np.uint8), matrix]), lengths + 1)


def _float_feature(name: bytes, values: np.ndarray) -> pa.Array:
    """Map entries `name -> float_list [v]` (values as float32), one per value: 0A len 0A len(name) name
    12 08 | 12 06 0A 04 <float32>."""
    head = bytes([0x0A, len(name) + 12, 0x0A, len(name)]) + name + bytes([0x12, 0x08, 0x12, 0x06, 0x0A, 0x04])
    matrix = np.empty((len(values), len(head) + 4), dtype=np.uint8)
    matrix[:, :len(head)] = np.frombuffer(head, dtype=np.uint8)
    matrix[:, len(head):] = values.astype("<f4").view(np.uint8).reshape(-1, 4)
    return _binary(np.arange(len(values) + 1, dtype=np.int64) * matrix.shape[1], matrix)


def _int_feature(name: bytes, values: np.ndarray) -> pa.Array:
    """Map entries `name -> int64_list [v]`, one per value: 0A len 0A len(name) name 12 len | 1A len 0A len <varint>."""
    matrix, lv = _varints(values)
    key = bytes([0x0A, len(name)]) + name
    k = 2 + len(key)
    out = np.empty((len(values), k + 6 + matrix.shape[1]), dtype=np.uint8)
    out[:, 0], out[:, 1] = 0x0A, len(name) + 8 + lv
    out[:, 2:k] = np.frombuffer(key, dtype=np.uint8)
    out[:, k], out[:, k + 1], out[:, k + 2], out[:, k + 3], out[:, k + 4], out[:, k + 5] = (
        0x12, 4 + lv, 0x1A, 2 + lv, 0x0A, lv)
    out[:, k + 6:] = matrix
    return _ragged(out, k + 6 + lv)


def _bytes_feature(name: bytes, values: pa.Array) -> pa.Array:
    """Map entries `name -> bytes_list [v]`, one per value: 0A len 0A len(name) name 12 len | 0A len 0A len <v>."""
    m = pc.binary_length(values).to_numpy().astype(np.int64)
    b = 1 + _varints(m)[1] + m
    f = 1 + _varints(b)[1] + b
    e = 3 + len(name) + _varints(f)[1] + f
    return _join([_with_varint(e, 0x0A), _constant(bytes([0x0A, len(name)]) + name + b"\x12", len(m)),
                  _with_varint(f), _with_varint(b, 0x0A), _with_varint(m, 0x0A), values.cast(pa.large_binary())])


def _scatter(entries: pa.Array, present: np.ndarray) -> pa.Array:
    """Entries of the present rows spread over all rows; an absent row gets an empty entry."""
    if present.all():
        return entries
    given = np.frombuffer(entries.buffers()[1], dtype=np.int64)[entries.offset:entries.offset + len(entries) + 1]
    lengths = np.zeros(len(present), dtype=np.int64)
    lengths[present] = np.diff(given)
    offsets = np.zeros(len(present) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return _binary(offsets + given[0], entries.buffers()[2])


def encode_examples(values: pa.Table, columns: Sequence[parsing.Column]) -> pa.Array:
    """The serialized tf.Example of each row of `values` (typed as `Block.values`; null = absent), the same
    bytes as a `parsing.Parsed` row's values serialized deterministically (features in name order). Every row
    must have at least one value."""
    kinds = {c.name: c.kind for c in columns}
    entries = []
    for name in sorted(kinds, key=lambda n: n.encode("utf-8")):
        column = values.column(name).combine_chunks()
        present = np.asarray(column.is_valid())
        if not present.any():
            continue
        kept = column.drop_null()
        key = name.encode("utf-8")
        if kinds[name] == parsing.FLOAT:
            entry = _float_feature(key, kept.to_numpy())
        elif kinds[name] == parsing.INT:
            entry = _int_feature(key, kept.to_numpy())
        else:
            entry = _bytes_feature(key, kept.cast(pa.binary()))
        entries.append(_scatter(entry, present))
    features = _join(entries)
    total = pc.binary_length(features).to_numpy().astype(np.int64)
    return _join([_with_varint(total, 0x0A), features])


# ---- blocks of lines --------------------------------------------------------------------------------------

def _one_line_quotes(block: bytes) -> bool:
    """Whether every quote in the block opens a field (after a comma or a line break) or closes the one opened
    last on the same line (before a comma or a line break): each record is one line, every field is plain or
    wholly quoted, no quote is doubled. Then csv's reader, `parsing` and pyarrow's reader split lines alike,
    and removing the quotes from a line leaves `parsing`'s raw text of its row."""
    if b'"' not in block:
        return True
    data = np.frombuffer(block, dtype=np.uint8)
    quotes = np.flatnonzero(data == 0x22)
    if len(quotes) % 2:
        return False
    opens, closes = quotes[0::2], quotes[1::2]
    before = data[np.maximum(opens - 1, 0)]
    after = data[np.minimum(closes + 1, len(data) - 1)]
    breaks = np.flatnonzero(data == 0x0A)
    return bool(((opens == 0) | (before == 0x2C) | (before == 0x0A)).all()
                and ((closes == len(data) - 1) | (after == 0x2C) | (after == 0x0A) | (after == 0x0D)).all()
                and (np.searchsorted(breaks, opens) == np.searchsorted(breaks, closes)).all())


def _plain(block: bytes) -> bool:
    """No NUL, no carriage return but before a line feed, no blank line, no `0x`, valid UTF-8."""
    if block.startswith((b"\n", b"\r\n")) or any(mark in block for mark in _UNSAFE):
        return False
    if block.count(b"\r") != block.count(b"\r\n"):
        return False
    try:
        block.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _csv(block: bytes, header: Sequence[str], convert: pcsv.ConvertOptions) -> pa.Table:
    """The block through pyarrow's streaming CSV reader (its read_csv costs a garbage-collector walk per call on
    Python 3.10, tens of milliseconds once TensorFlow is loaded); raises what the reader raises."""
    return pcsv.open_csv(
        io.BytesIO(block),
        read_options=pcsv.ReadOptions(column_names=list(header), use_threads=False, block_size=len(block) + 1),
        parse_options=pcsv.ParseOptions(newlines_in_values=False, ignore_empty_lines=False),
        convert_options=convert).read_all()


def _read(block: bytes, header: Sequence[str], columns: Sequence[parsing.Column]) -> pa.Table | None:
    """The block through pyarrow's CSV reader, `columns` typed per the schema; None when the reader refuses it."""
    present = [c for c in columns if c.name in header]
    convert = pcsv.ConvertOptions(column_types={c.name: _ARROW_TYPES[c.kind] for c in present},
                                  include_columns=[c.name for c in present], null_values=[""],
                                  strings_can_be_null=False, quoted_strings_can_be_null=False, check_utf8=False)
    try:
        return _csv(block, header, convert)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def _typed(table: pa.Table, columns: Sequence[parsing.Column], rows: int) -> tuple[pa.Table, np.ndarray]:
    """The typed values of the block's rows (as `Block.values`) and which rows `parsing` must type instead."""
    refer = np.zeros(rows, dtype=bool)
    out = {}
    for column in columns:
        if column.name not in table.column_names:
            out[column.name] = pa.nulls(rows, pa.string() if column.kind == parsing.BYTES
                                        else _ARROW_TYPES[column.kind])
            refer |= column.required
            continue
        arr = table.column(column.name).combine_chunks()
        if column.kind == parsing.FLOAT:
            values = arr.to_numpy(zero_copy_only=False)
            refer |= np.isnan(values) & np.asarray(arr.is_valid())  # NaN text, not a missing value
            refer |= np.abs(np.nan_to_num(values)) > _FLOAT32_MAX
        elif column.kind == parsing.BYTES:
            arr = arr.cast(pa.string())
            blank = pc.equal(pc.utf8_trim(arr, " \t"), "")
            arr = pc.if_else(blank, pa.scalar(None, pa.string()), arr)
        if column.required:
            refer |= ~np.asarray(arr.is_valid())
        out[column.name] = arr
    values = pa.table(out)
    some = np.zeros(rows, dtype=bool)
    for name in values.column_names:
        some |= np.asarray(values.column(name).is_valid())
    return values, refer | ~some


def _split_indices(keys: list[bytes], splits: Sequence[tuple[str, int]]) -> np.ndarray:
    """parsing.assign_split for every key, as an index into `splits`."""
    digests = b"".join([hashlib.sha256(key).digest()[:8] for key in keys])
    buckets = np.frombuffer(digests, dtype=">u8") % np.uint64(sum(b for _, b in splits))
    return np.searchsorted(np.cumsum([b for _, b in splits]), buckets, side="right")


def _split_keys(block: bytes, header: Sequence[str], split_key_columns: Sequence[str]) -> list[bytes]:
    """What parsing.type_row hashes for each line: its raw text (the fields joined by commas: the line without
    its quotes and line break), or its split-key fields joined by 0x1F."""
    if not split_key_columns:
        lines = block.replace(b'"', b"").replace(b"\r\n", b"\n").split(b"\n")
        return lines[:-1] if lines[-1] == b"" else lines
    present = [c for c in split_key_columns if c in header]
    table = _csv(block, header, pcsv.ConvertOptions(column_types={c: pa.binary() for c in present},
                                                     include_columns=present, strings_can_be_null=False,
                                                     check_utf8=False))
    fields = {c: table.column(c).to_pylist() for c in present}
    empty = [b""] * table.num_rows
    return [b"\x1f".join(key) for key in zip(*(fields.get(c, empty) for c in split_key_columns), strict=True)]


_SMALLEST = 64  # lines: a refused block is halved until its refused parts are this small, then goes to `parsing`


def _block_items(path: str, first_line: int, block: bytes, header: Sequence[str],
                 columns: Sequence[parsing.Column], split_key_columns: Sequence[str],
                 splits: Sequence[tuple[str, int]]) -> Iterator[Item]:
    """A block's rows (whole lines, one record each): one Block for those typed here, `parsing`'s rows for the
    others. A block pyarrow refuses, or that is not plain, is halved until the parts that hold the trouble are
    small: a bad line costs the bulk path a few dozen lines, not a block."""
    lines = block.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    table = _read(block, header, columns) if _plain(block) else None
    if table is None or table.num_rows != len(lines):
        if len(lines) <= _SMALLEST:
            yield from parsing.lines_rows(path, first_line, block, None, header, columns, split_key_columns, splits)
            return
        half = len(lines) // 2
        cut = sum(len(line) for line in lines[:half]) + half
        yield from _block_items(path, first_line, block[:cut], header, columns, split_key_columns, splits)
        yield from _block_items(path, first_line + half, block[cut:], header, columns, split_key_columns, splits)
        return
    values, refer = _typed(table, columns, len(lines))
    keep = np.flatnonzero(~refer)
    whole = len(keep) == len(lines)
    kept = values if whole else values.take(pa.array(keep))
    examples = encode_examples(kept, columns) if len(keep) else pa.array([], pa.large_binary())
    keys = _split_keys(block, header, split_key_columns)
    which = _split_indices(keys if whole else [keys[i] for i in keep], splits)
    by_split = {name: examples.take(pa.array(np.flatnonzero(which == k))) for k, (name, _) in enumerate(splits)}
    yield Block(by_split, kept, len(keep))
    for i in np.flatnonzero(refer):
        yield from parsing.lines_rows(path, first_line + int(i), lines[i] + b"\n", None, header, columns,
                                      split_key_columns, splits)


def _fast_header(path: str, head: bytes, columns: Sequence[parsing.Column]) -> list[str] | None:
    """The header, when the file starts with a plain one-line header; None otherwise (the file goes to `parsing`)."""
    line, newline, _ = head.partition(b"\n")
    if not newline or not line.strip() or not _plain(line + b"\n") or not _one_line_quotes(line + b"\n"):
        return None
    header = parsing.csv_header(path, io.BytesIO(line + b"\n"), columns)
    if len(header) < 2 or any(len(h.encode("utf-8")) > _MAX_NAME for h in header):
        return None
    return header


def csv_items(path: str, columns: Sequence[parsing.Column], split_key_columns: Sequence[str],
              splits: Sequence[tuple[str, int]], block_bytes: int = BLOCK_BYTES) -> Iterator[Item]:
    """parsing.csv_rows, with the rows of plain blocks typed in bulk: Blocks, and Parsed/Rejected rows."""
    with inputs.open_data(path) as stream:
        head = _read_some(stream, path, block_bytes)
        while b"\n" not in head and (more := _read_some(stream, path, block_bytes)):
            head += more
        header = _fast_header(path, head, columns)
        if header is None:
            yield from parsing.csv_rows(path, columns, split_key_columns, splits)
            return
        rest = head[head.index(b"\n") + 1:]
        line = 2
        while True:
            more = _read_some(stream, path, block_bytes)
            if not rest and not more:
                return
            cut = rest.rfind(b"\n") + 1
            if not more:
                cut = len(rest)
            elif cut == 0:
                rest += more
                continue
            block, rest = rest[:cut], rest[cut:] + more
            if not _one_line_quotes(block):  # a quoted field may hold line breaks: `parsing` reads the rest
                yield from parsing.lines_rows(path, line, block + rest, stream, header, columns, split_key_columns,
                                              splits)
                return
            yield from _block_items(path, line, block, header, columns, split_key_columns, splits)
            line += block.count(b"\n") + (not block.endswith(b"\n"))


def _read_some(stream, path: str, size: int) -> bytes:
    try:
        return stream.read(size)
    except (OSError, EOFError, zlib.error) as e:
        raise parsing.IngestError(f"ingest: {path}: cannot read the file: {e}") from None


def file_items(path: str, columns: Sequence[parsing.Column], split_key_columns: Sequence[str],
               splits: Sequence[tuple[str, int]]) -> Iterator[Item]:
    """parsing.file_rows, with CSV files read by csv_items (Parquet rows are typed one by one)."""
    if inputs.is_supported(path) and not inputs.is_parquet(path):
        return csv_items(path, columns, split_key_columns, splits)
    return parsing.file_rows(path, columns, split_key_columns, splits)
