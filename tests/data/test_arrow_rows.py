"""The bulk path (pyarrow's reader on plain blocks) against `parsing`'s row by row path: the same typed values, the
same tf.Example bytes, the same splits and the same quarantine records, over the value grammar's whole table,
every short text over its alphabet, and awkward and bad files read in blocks of every size."""

from __future__ import annotations

import collections
import gzip
import itertools
import math
import re

import numpy as np
import pyarrow as pa
import pytest

from flywheel.data import arrow_rows, parsing

COLUMNS = [
    parsing.Column("id", parsing.INT, True),
    parsing.Column("fare", parsing.FLOAT, True),
    parsing.Column("trip_start_hour", parsing.INT, True),
    parsing.Column("company", parsing.BYTES, False),
    parsing.Column("trip_seconds", parsing.INT, False),
    parsing.Column("tips", parsing.FLOAT, False),
    parsing.Column("payment_type", parsing.BYTES, True),
]
SPLITS = [("train", 2), ("eval", 1)]
HEADER = b"id,fare,trip_start_hour,company,trip_seconds,tips,payment_type\n"


def _to_example(values):
    from flywheel.components.ingest import beam_ingest  # its Beam and TFX imports: only these tests need them

    return beam_ingest._to_example(values)


def _typed(values: dict) -> tuple:
    """A typed row as comparable text: column -> value (BYTES as text), absent columns left out."""
    return tuple(sorted((k, v.decode("utf-8") if isinstance(v, bytes) else v) for k, v in values.items()))


def _slow(path: str, split_key=()) -> tuple[collections.Counter, list[dict]]:
    rows, rejected = collections.Counter(), []
    for row in parsing.csv_rows(path, COLUMNS, split_key, SPLITS):
        if isinstance(row, parsing.Rejected):
            rejected.append(row.to_dict())
        else:
            rows[(row.split, _to_example(row.values), _typed(row.values))] += 1
    return rows, rejected


def _fast(path: str, block_bytes: int, split_key=()) -> tuple[collections.Counter, list[dict], int]:
    """The bulk path's rows and quarantine records, and how many rows it typed in bulk."""
    rows, rejected, bulk = collections.Counter(), [], 0
    for item in arrow_rows.csv_items(path, COLUMNS, split_key, SPLITS, block_bytes=block_bytes):
        if isinstance(item, arrow_rows.Block):
            values = [_typed({k: v for k, v in r.items() if v is not None}) for r in item.values.to_pylist()]
            by_example = {}
            for name, examples in item.examples.items():
                for example in examples.to_pylist():
                    by_example.setdefault(example, []).append(name)
            encoded = arrow_rows.encode_examples(item.values, COLUMNS).to_pylist() if item.rows else []
            for example, typed in zip(encoded, values, strict=True):
                rows[(by_example[example].pop(), example, typed)] += 1
            bulk += item.rows
        elif isinstance(item, parsing.Rejected):
            rejected.append(item.to_dict())
        else:
            rows[(item.split, _to_example(item.values), _typed(item.values))] += 1
    return rows, sorted(rejected, key=lambda r: r["line"]), bulk


def _same(path: str, block_sizes=(1, 7, 64, 4096, arrow_rows.BLOCK_BYTES), split_key=()) -> list[int]:
    """Asserts both paths agree on `path` for every block size; returns the rows typed in bulk per size."""
    rows, rejected = _slow(path, split_key)
    bulk = []
    for size in block_sizes:
        fast_rows, fast_rejected, typed_in_bulk = _fast(path, size, split_key)
        assert fast_rows == rows, f"block size {size}"
        assert fast_rejected == rejected, f"block size {size}"
        bulk.append(typed_in_bulk)
    return bulk


# ---- the value grammar ------------------------------------------------------------------------------------

ACCEPTED = ["1.5", "-2", "+3.25", ".5", "7.", "1e3", "-1.5E-2", " 4.5\t", "0", "12", "-3", "+4", " 5 ", "007", "-0",
            "0.0", "-0.0", "1e-400", "3.4028234663852886e38", "-3.4028234663852886e38", "1.401298464324817e-45",
            "9223372036854775807", "-9223372036854775808", "123456789012345678901234567890", "0.1", "2.5e+10",
            "\t\t8", "  ", ""]
REFUSED = ["nan", "NaN", "-nan", "inf", "-Infinity", "1_000.5", "١٢", "１２", "٣.٥", "0x10", "0X1F", "1e", "e3", ".",
           "+", "1.5.2", "True", "\u00a01.5", "1.5\u2003", "1 5", "--1", "1e3.5", "1_000", "+٣", "0b1", " 1 2", "- 1",
           "5.0x", "1e39", "1e999", "3.5e38", "9223372036854775808", "-9223372036854775809", "N/A", "NULL", "null",
           "#N/A", "1.#IND", "nan(1)", "infinity", "INF", "1d", "1f", "0o7", "+-1", "\x0b7", "7\x0c"]
ALPHABET = "019+-.eE x\tnaif"


def _grammar_texts() -> list[str]:
    short = ["".join(t) for n in range(1, 4) for t in itertools.product(ALPHABET, repeat=n)]
    return list(dict.fromkeys(ACCEPTED + REFUSED + short))


def _grammar_file(tmp_path, texts, column: str) -> str:
    """One row per text, the text in `column` and plain values elsewhere."""
    plain = {"fare": "2.5", "trip_start_hour": "3", "company": "Acme", "trip_seconds": "60", "tips": "0.5",
             "payment_type": "Cash"}
    lines = [HEADER]
    for n, text in enumerate(texts):
        row = {**plain, column: text}
        lines.append((f"{n}," + ",".join(row[c.name] for c in COLUMNS[1:]) + "\n").encode("utf-8"))
    path = tmp_path / f"{column}.csv"
    path.write_bytes(b"".join(lines))
    return str(path)


@pytest.mark.parametrize("column", ["fare", "trip_start_hour", "trip_seconds", "tips", "company", "payment_type"])
def test_every_text_of_the_value_grammar_is_typed_alike_on_both_paths(tmp_path, column):
    texts = _grammar_texts()
    path = _grammar_file(tmp_path, texts, column)
    kind = next(c.kind for c in COLUMNS if c.name == column)
    # one line per block: a number the bulk path refuses sends only its own line to `parsing` (a text, refused
    # by pyarrow only with a NUL, '0x' or the like, is typed alike in blocks of 64 lines)
    [bulk] = _same(path, block_sizes=(1 if kind != parsing.BYTES else 2048,))
    if kind != parsing.BYTES:
        # pyarrow refuses a leading '+' and a blank that is not empty: those rows go to `parsing`
        taken = [t for t in texts if _accepted(t, column) and not t.strip(" \t").startswith("+")
                 and (t == "" or t.strip(" \t"))]
        assert bulk == len(taken), "every other number went through the bulk path"


def _accepted(text: str, column: str) -> bool:
    try:
        parsing.convert(text, next(c for c in COLUMNS if c.name == column))
    except ValueError:
        return False
    return True


def test_the_grammar_table_is_what_test_parsing_checks(tmp_path):
    """The table above holds every text tests/data/test_parsing.py calls accepted or refused."""
    for text in ["1.5", "-2", "+3.25", ".5", "7.", "1e3", "-1.5E-2", " 4.5\t", "0", "12", "-3", "+4", " 5 ", "007"]:
        assert text in ACCEPTED
    for text in ["nan", "NaN", "-nan", "inf", "-Infinity", "1_000.5", "١٢", "１２", "٣.٥", "0x10", "1e", "e3", ".",
                 "+", "1.5.2", "True", "\u00a01.5", "1.5\u2003", "1 5", "--1", "1e3.5", "1_000", "+٣", "0b1", " 1 2",
                 "- 1"]:
        assert text in REFUSED


# ---- awkward and bad files --------------------------------------------------------------------------------

GOOD = b"1,2.0,3,Acme,60,0.5,Cash\n"
BAD_ROWS = [
    b"1,abc,5,Acme,10,,Cash\n", b"1,1.5,five,Acme,10,,Cash\n", b"1,1.5,2.5,Acme,10,,Cash\n",
    b"1,1.5,99999999999999999999,Acme,10,,Cash\n", b"1,1e999,5,Acme,10,,Cash\n", b"1,1e39,5,Acme,10,,Cash\n",
    b"1,,5,Acme,10,,Cash\n", b"1,1.5,5,Acme\n", b"1,1.5,5,Acme,10,,Cash,extra\n", b"1,1.5,5,Ac\xffme,10,,Cash\n",
    b"1,1.5,5,Ac\x00me,10,,Cash\n", b"1,1.5, ,Acme,10,,Cash\n", b'1,1.5,5,"Ac"me,10,,Cash\n',
    b"1,1.5,5,Ac\rme,10,,Cash\n", b'1,1.5,5,12" Cab,10,,Cash\n', b"1,1.5,5,Acme,10,,\n", b"1,1.5,5,Acme,10,,  \n",
    b"1,nan,5,Acme,10,,Cash\n", b"1,1.5,0x1F,Acme,10,,Cash\n", b"1,1.5,5,Acme,10,inf,Cash\n",
    b'1,"",5,Acme,10,,Cash\n', b"1,1.5,+5,Acme,10,,Cash\n", b",,,,,,\n", b"   \n", b"\t\n",
]
AWKWARD = [
    b'1,2.0,3,"Acme, Inc.",60,0.5,"Credit Card"\n', b'"1","2.0","3","Acme","60","0.5","Cash"\n',
    b'1,2.0,3,"He said ""hi""",60,0.5,Cash\n', b'1,2.0,3,"two\nlines",60,0.5,Cash\n', b"1,2.0,3,Acme,60,0.5,Cash\r\n",
    b"1, 2.0 ,\t3,  Acme  ,60,0.5,Cash\n", b"1,2.0,3,Caf\xc3\xa9 Cab,60,0.5,Cash\n", b"\n", b"\r\n",
    b"1,2.0,3,,,,Cash\n", b"1,-0.0,-0,0x,-9223372036854775808,1e-400,Cash\n", b"1,2.0,3,Acme,60,0.5,\" \"\n",
    b'1,2.0,3,"",60,0.5,Cash\n', b"1,2.0,3,Acme,60,0.5,Cash",
]


def _mixed(lines: list[bytes], seed: int, good: int = 300) -> bytes:
    rng = np.random.default_rng(seed)
    body = [GOOD.replace(b"1,", f"{i},".encode(), 1) for i in range(good)]
    for line in lines:
        body.insert(int(rng.integers(0, len(body))), line)
    return b"".join(body)


QUOTE_PROBLEMS = [row for row in BAD_ROWS if b'"' in row]


@pytest.mark.parametrize("seed", [0, 1])
def test_bad_rows_among_good_ones_are_quarantined_alike(tmp_path, seed):
    path = tmp_path / "bad.csv"
    path.write_bytes(HEADER + _mixed([row for row in BAD_ROWS if row not in QUOTE_PROBLEMS], seed, good=2500))
    bulk = _same(str(path), block_sizes=(64, 4096, arrow_rows.BLOCK_BYTES))
    assert min(bulk) > 1200, "a bad line costs the bulk path a few dozen lines, not its whole block"


@pytest.mark.parametrize("seed", [0, 1])
def test_from_a_quote_that_may_open_a_multiline_field_parsing_reads_the_rest_of_the_file(tmp_path, seed):
    path = tmp_path / "bad.csv"
    path.write_bytes(HEADER + _mixed(BAD_ROWS, seed))
    _same(str(path))


@pytest.mark.parametrize("seed", [0, 1])
def test_awkward_but_valid_csv_is_read_alike(tmp_path, seed):
    body = _mixed([line for line in AWKWARD if not line.endswith(b"Cash")], seed) + AWKWARD[-1]
    for name, content in [("plain.csv", HEADER + body), ("bom.csv", b"\xef\xbb\xbf" + HEADER + body),
                          ("crlf.csv", HEADER.replace(b"\n", b"\r\n") + body.replace(b"\n", b"\r\n")),
                          ("quoted_header.csv", b'"id","fare",trip_start_hour,company,trip_seconds,tips,'
                                                b'"payment_type"\n' + body),
                          ("blank_first.csv", b"\n" + HEADER + body)]:
        path = tmp_path / name
        path.write_bytes(content)
        _same(str(path))


def test_a_quoted_line_break_across_blocks_and_an_unclosed_quote_are_read_alike(tmp_path):
    body = b"".join(GOOD for _ in range(50)) + b'1,2.0,3,"a\nb\nc",60,0.5,Cash\n' + b"".join(GOOD for _ in range(50))
    for content in (HEADER + body, HEADER + body + b'1,2.0,3,"open,60,0.5,Cash\n' + GOOD * 20):
        path = tmp_path / "quoted.csv"
        path.write_bytes(content)
        _same(str(path), block_sizes=(1, 30, 64, 1000, 1 << 20))


def test_gzip_csv_is_read_alike(tmp_path):
    path = tmp_path / "data.csv.gz"
    path.write_bytes(gzip.compress(HEADER + _mixed(BAD_ROWS + AWKWARD[:-1], 3)))
    _same(str(path))


def test_split_keys_hash_the_same_fields(tmp_path):
    path = tmp_path / "keys.csv"
    path.write_bytes(HEADER + _mixed([b'7,2.0,3,"Acme, Inc.",60,0.5,Cash\n', b"8,2.0,3,,60,0.5,Cash\n"], 4))
    _same(str(path), split_key=("company", "id"))
    _same(str(path), split_key=("company", "not_a_column"))


def test_a_file_the_bulk_path_cannot_start_on_is_read_by_parsing(tmp_path):
    for content in (b"", HEADER, b"\xef\xbb\xbf" + HEADER + GOOD, b'"id,fare\n', HEADER + b"\n\n"):
        path = tmp_path / "odd.csv"
        path.write_bytes(content)
        try:
            _same(str(path))
        except parsing.IngestError as e:
            with pytest.raises(parsing.IngestError, match=re.escape(str(e))):
                list(arrow_rows.csv_items(str(path), COLUMNS, (), SPLITS))


# ---- tf.Example bytes -------------------------------------------------------------------------------------

def test_the_encoder_writes_the_bytes_of_deterministic_serialization():
    rng = np.random.default_rng(5)
    n = 2000
    ints = rng.integers(-2**63, 2**63 - 1, n, dtype=np.int64, endpoint=True)
    ints[:20] = [0, 1, -1, 127, 128, 16383, 16384, 2**63 - 1, -2**63, 2**31, -2**31, 300, 2**56, 2**49, 2**42,
                 2**35, 2**28, 2**21, 2**14, 2**7]
    floats = np.concatenate([[0.0, -0.0, 1e-45, 1.401298464324817e-45, 3.4028234663852886e38, 1e-300, 0.1],
                             rng.normal(0, 1e6, n - 7)])
    texts = [("é" * int(k)).encode("utf-8") for k in rng.integers(0, 200, n)]
    texts[:4] = [b"", b"x" * 127, b"y" * 20000, b" "]
    missing = rng.random((3, n)) < 0.3
    table = pa.table({
        "id": pa.array(ints, mask=missing[0]),
        "fare": pa.array(floats, mask=missing[1]),
        "company": pa.array([t.decode("utf-8") for t in texts], pa.string(), mask=missing[2]),
        "trip_start_hour": pa.array(np.arange(n)),
    })
    columns = [parsing.Column("trip_start_hour", parsing.INT, True), parsing.Column("company", parsing.BYTES, False),
               parsing.Column("id", parsing.INT, False), parsing.Column("fare", parsing.FLOAT, False)]
    encoded = arrow_rows.encode_examples(table, columns).to_pylist()
    for row, example in zip(table.to_pylist(), encoded, strict=True):
        values = {k: (v.encode("utf-8") if isinstance(v, str) else v) for k, v in row.items() if v is not None}
        assert example == _to_example(values)
        assert not any(isinstance(v, float) and math.isnan(v) for v in values.values())
