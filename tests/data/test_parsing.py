"""Ingest's typing and quarantine rules on bad and awkward input (plain functions, no Beam)."""

from __future__ import annotations

import gzip
import io
import json
import re
import subprocess
import sys
import textwrap

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flywheel import schemas
from flywheel.data import parsing

COLUMNS = [
    parsing.Column("fare", parsing.FLOAT, True),
    parsing.Column("trip_start_hour", parsing.INT, True),
    parsing.Column("company", parsing.BYTES, False),
    parsing.Column("trip_seconds", parsing.INT, False),
]
SPLITS = [("train", 2), ("eval", 1)]
HEADER = b"fare,trip_start_hour,company,trip_seconds\n"


def rows(tmp_path, content: bytes, name: str = "data.csv"):
    path = tmp_path / name
    path.write_bytes(content)
    return list(parsing.csv_rows(str(path), COLUMNS, (), SPLITS)), str(path)


BAD_ROWS = [
    # (row bytes, column, reason pattern)
    (b"abc,5,Acme,10\n", "fare", r"expected FLOAT, got 'abc'"),
    (b"1.5,five,Acme,10\n", "trip_start_hour", r"expected INT, got 'five'"),
    (b"1.5,2.5,Acme,10\n", "trip_start_hour", r"expected INT, got '2.5'"),
    (b"1.5,99999999999999999999,Acme,10\n", "trip_start_hour", r"out of range for INT \(int64\)"),
    (b"1e999,5,Acme,10\n", "fare", r"out of range for FLOAT"),
    (b"1e39,5,Acme,10\n", "fare", r"out of range for FLOAT \(float32\)"),
    (b",5,Acme,10\n", "fare", r"missing required value"),
    (b"1.5,5,Acme\n", None, r"expected 4 fields, got 3"),
    (b"1.5,5,Acme,10,extra\n", None, r"expected 4 fields, got 5"),
    (b"1.5,5,Ac\xffme,10\n", None, r"not valid UTF-8"),
    (b"1.5,5,Ac\x00me,10\n", None, r"NUL byte"),
    (b"1.5, ,Acme,10\n", "trip_start_hour", r"missing required value for INT"),
    (b'1.5,5,"Ac"me,10\n', None, r"malformed CSV"),
    (b"1.5,5,Ac\rme,10\n", None, r"malformed CSV: a carriage return inside an unquoted field"),
    (b'1.5,5,12" Cab,10\n', None, r"malformed CSV: a quote inside an unquoted field"),
]


@pytest.mark.parametrize("row,column,reason", BAD_ROWS)
def test_bad_rows_are_quarantined_with_file_line_column_reason(tmp_path, row, column, reason):
    good = b"2.0,3,Acme,60\n"
    parsed, path = rows(tmp_path, HEADER + good + row + good)
    assert len(parsed) == 3, "every row is either parsed or quarantined"
    rejected = [r for r in parsed if isinstance(r, parsing.Rejected)]
    assert len(rejected) == 1
    assert parsing.physical_rows(path) == sum(r.lines for r in parsed) == 3
    r = rejected[0]
    assert (r.file, r.line, r.column) == (path, 3, column)
    assert re.search(reason, r.reason), r.reason


def test_awkward_but_valid_csv(tmp_path):
    content = ("\ufeff" + 'fare,trip_start_hour,company,trip_seconds\r\n'
               '1.5,5,"Acme, Inc.",10\r\n'
               '2.5,6,"Two\r\nLines Cab",\r\n'
               '3.5,7,,20\r\n').encode("utf-8")
    parsed, _ = rows(tmp_path, content)
    assert all(isinstance(p, parsing.Parsed) for p in parsed), parsed
    assert [p.values.get("company") for p in parsed] == [b"Acme, Inc.", b"Two\r\nLines Cab", None]
    assert parsed[1].values.get("trip_seconds") is None  # optional and empty: missing, not zero
    assert parsed[2].values["trip_start_hour"] == 7


def test_line_numbers_count_physical_lines_after_quoted_newlines(tmp_path):
    content = HEADER + b'1.0,1,"multi\nline",1\n' + b"bad,1,x,1\n"
    parsed, _ = rows(tmp_path, content)
    assert isinstance(parsed[1], parsing.Rejected) and parsed[1].line == 4


def test_missing_required_column_names_file_and_columns(tmp_path):
    path = tmp_path / "nofare.csv"
    path.write_bytes(b"trip_start_hour,company\n5,Acme\n")
    with pytest.raises(parsing.IngestError, match=r"nofare.csv: missing required column\(s\) \['fare'\]"):
        parsing.check_files([str(path)], COLUMNS)


def test_extra_columns_are_ignored_not_fatal(tmp_path):
    parsed, _ = rows(tmp_path, b"fare,trip_start_hour,unknown_col\n1.0,2,zzz\n")
    assert isinstance(parsed[0], parsing.Parsed) and "unknown_col" not in parsed[0].values


def test_empty_file_is_an_error(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    with pytest.raises(parsing.IngestError, match=r"empty.csv: file is empty"):
        parsing.check_files([str(path)], COLUMNS)


def test_split_is_deterministic_and_roughly_two_to_one():
    keys = [f"row-{i}" for i in range(3000)]
    first = [parsing.assign_split(k, SPLITS) for k in keys]
    assert first == [parsing.assign_split(k, SPLITS) for k in keys]
    share = first.count("eval") / len(first)
    assert 0.29 < share < 0.37, share


def test_columns_from_curated_schema():
    cols = {c.name: c for c in parsing.columns_from_schema(parsing.load_schema(schemas.schema_path("taxi")))}
    assert cols["fare"] == parsing.Column("fare", parsing.FLOAT, True)
    assert cols["company"].kind == parsing.BYTES and not cols["company"].required
    assert cols["trip_start_hour"].kind == parsing.INT


@pytest.mark.parametrize("text,error", [
    ("train", r"expected 'name:buckets"),
    ("train:0,eval:1", r"expected 'name:buckets"),
    ("train:1,train:2", r"duplicate split names"),
])
def test_bad_split_config(text, error):
    with pytest.raises(parsing.IngestError, match=error):
        parsing.parse_splits(text)


def test_typed_rows_become_the_same_tf_example_bytes_whatever_the_column_order():
    import tensorflow as tf

    from flywheel.components.ingest import beam_ingest

    values = {"fare": 12.5, "trip_start_hour": 19, "company": "Café Cab".encode()}
    one = beam_ingest._to_example(values)
    other = beam_ingest._to_example(dict(reversed(list(values.items()))))
    assert one == other
    feature = tf.train.Example.FromString(one).features.feature
    assert feature["fare"].float_list.value == [12.5]
    assert feature["trip_start_hour"].int64_list.value == [19]
    assert feature["company"].bytes_list.value == ["Café Cab".encode()]


FLOAT_COLUMN = parsing.Column("x", parsing.FLOAT, True)
INT_COLUMN = parsing.Column("x", parsing.INT, True)


@pytest.mark.parametrize("text,expected", [
    ("1.5", 1.5), ("-2", -2.0), ("+3.25", 3.25), (".5", 0.5), ("7.", 7.0), ("1e3", 1000.0), ("-1.5E-2", -0.015),
    (" 4.5\t", 4.5), ("0", 0.0),
])
def test_float_accepts_ascii_decimal_numbers(text, expected):
    assert parsing.convert(text, FLOAT_COLUMN) == expected


@pytest.mark.parametrize("text", [
    "nan", "NaN", "-nan", "inf", "-Infinity", "1_000.5", "١٢", "１２", "٣.٥", "0x10", "1e", "e3", ".", "+",
    "1.5.2", "1,5", "True", "\u00a01.5", "1.5\u2003", "1 5", "--1", "1e3.5",
])
def test_float_refuses_what_python_float_takes_and_other_text(text):
    with pytest.raises(ValueError, match=re.escape(f"expected FLOAT, got {text!r}")):
        parsing.convert(text, FLOAT_COLUMN)


@pytest.mark.parametrize("text", ["1_000", "+٣", "1e3", "0x10", "True", "5.0", "１２", "0b1", " 1 2", "- 1"])
def test_int_refuses_what_python_int_takes_and_other_text(text):
    with pytest.raises(ValueError, match=re.escape(f"expected INT, got {text!r}")):
        parsing.convert(text, INT_COLUMN)


@pytest.mark.parametrize("text,expected", [("12", 12), ("-3", -3), ("+4", 4), (" 5 ", 5), ("007", 7)])
def test_int_accepts_ascii_integers(text, expected):
    assert parsing.convert(text, INT_COLUMN) == expected


def test_a_float_column_row_with_nan_or_digit_lookalikes_is_quarantined_not_written(tmp_path):
    content = HEADER + "nan,1,,\ninf,1,,\n1_000.5,1,,\n١٢,1,,\n１２,1,,\n2.5,3,,\n".encode()
    parsed, _ = rows(tmp_path, content)
    assert [type(p).__name__ for p in parsed] == ["Rejected"] * 5 + ["Parsed"]
    assert all(p.column == "fare" and "expected FLOAT" in p.reason for p in parsed[:5])


def _accounted(parsed, path) -> int:
    covered = sum(p.lines for p in parsed)
    assert covered == parsing.physical_rows(path), "every physical row is written or quarantined"
    return covered


def test_unclosed_quote_quarantines_its_line_and_the_rest_of_the_file_is_read(tmp_path):
    good = b"2.0,3,Acme,60\n" * 3000
    parsed, path = rows(tmp_path, HEADER + b'1.0,2,"Acme,60\n' + good)
    rejected = [p for p in parsed if isinstance(p, parsing.Rejected)]
    assert len(rejected) == 1 and len(parsed) == 3001
    r = rejected[0]
    assert (r.file, r.line, r.lines) == (path, 2, 1)
    assert r.reason.startswith("unclosed quote: the quoted field opened on line 2 runs past")
    assert r.raw == '1.0,2,"Acme,60'
    assert _accounted(parsed, path) == 3001


def test_unclosed_quote_near_the_end_of_the_file(tmp_path):
    parsed, path = rows(tmp_path, HEADER + b"1.0,2,x,3\n" + b'1.0,2,"Acme,60\n' + b"2.0,3,Acme,60\n" * 2)
    assert [type(p).__name__ for p in parsed] == ["Parsed", "Rejected", "Parsed", "Parsed"]
    assert parsed[1].line == 3
    assert parsed[1].reason == ("unclosed quote: the quoted field opened on line 3 is not closed before the end of "
                                "the file; line 3 quarantined alone, reading resumes at line 4")
    _accounted(parsed, path)


def test_a_stray_quote_pair_does_not_swallow_the_rows_between(tmp_path):
    middle = b"2.0,3,Acme,60\n" * 50
    content = HEADER + b'1.0,2,"Acme,60\n' + middle + b'3.0,4,Acme",60\n' + b"4.0,5,Acme,60\n"
    parsed, path = rows(tmp_path, content)
    rejected = [p for p in parsed if isinstance(p, parsing.Rejected)]
    assert [r.line for r in rejected] == [2, 53], [r.reason for r in rejected]
    assert rejected[0].reason == ("stray quote: line 3, inside the quoted field opened on line 2, reads as a complete "
                                  "row in the record spanning lines 2-53; line 2 quarantined alone, reading resumes "
                                  "at line 3")
    assert sum(isinstance(p, parsing.Parsed) for p in parsed) == 51
    _accounted(parsed, path)


def test_a_stray_quote_pair_on_adjacent_lines_hides_no_row(tmp_path):
    parsed, path = rows(tmp_path, HEADER + b'1.0,2,"Acme,60\n3.0,4,Acme",60\n4.0,5,Acme,60\n')
    assert [(type(p).__name__, p.line if isinstance(p, parsing.Rejected) else None) for p in parsed] == [
        ("Rejected", 2), ("Rejected", 3), ("Parsed", None)]
    assert "stray quote: line 3" in parsed[0].reason and "quote inside an unquoted field" in parsed[1].reason
    _accounted(parsed, path)


def test_a_quoted_field_longer_than_the_line_limit_counts_as_unclosed(tmp_path):
    lines = b"".join(b"more text\n" for _ in range(parsing.MAX_RECORD_LINES + 5))
    parsed, path = rows(tmp_path, HEADER + b'1.0,2,"open\n' + lines + b'",60\n')
    assert isinstance(parsed[0], parsing.Rejected) and parsed[0].line == 2
    assert f"runs past {parsing.MAX_RECORD_LINES} lines" in parsed[0].reason
    _accounted(parsed, path)


def test_legit_quoted_newlines_and_doubled_quotes_stay_one_row(tmp_path):
    content = HEADER + b'1.0,2,"Two\nLines, ""Inc""\n\nCab",60\n' + b"2.0,3,x,1\n"
    parsed, path = rows(tmp_path, content)
    assert all(isinstance(p, parsing.Parsed) for p in parsed)
    assert parsed[0].values["company"] == b'Two\nLines, "Inc"\n\nCab' and parsed[0].lines == 3
    assert _accounted(parsed, path) == 4


def test_a_well_formed_multiline_row_with_a_bad_value_is_quarantined_whole(tmp_path):
    parsed, path = rows(tmp_path, HEADER + b'abc,2,"Two\nLines",60\n2.0,3,x,1\n')
    assert isinstance(parsed[0], parsing.Rejected) and (parsed[0].line, parsed[0].lines) == (2, 2)
    assert parsed[0].column == "fare" and isinstance(parsed[1], parsing.Parsed)
    _accounted(parsed, path)


@pytest.mark.parametrize("content,rows_expected", [
    (HEADER, 0),
    (HEADER.rstrip(b"\n"), 0),
    (b"\n\n" + HEADER + b"\n1.0,2,x,3\n   \n\t\n2.0,3,y,4", 2),
    (b"\xef\xbb\xbf" + HEADER.replace(b"\n", b"\r\n") + b"1.0,2,x,3\r\n2.0,3,y,4\r\n", 2),
    (HEADER + b"1.0,2,x,3\n" * 4 + b'"\n', 5),
])
def test_header_only_blank_lines_bom_crlf_and_a_final_stray_quote_are_all_accounted(tmp_path, content, rows_expected):
    parsed, path = rows(tmp_path, content)
    assert len(parsed) == rows_expected
    assert _accounted(parsed, path) == rows_expected


def test_header_that_is_not_utf8_is_an_error(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes(b"f\xe4re,trip_start_hour\n1.0,2\n")
    with pytest.raises(parsing.IngestError, match=r"latin1.csv line 1: header is not valid UTF-8"):
        parsing.check_files([str(path)], COLUMNS)


def test_gzip_csv_is_read_like_plain_csv(tmp_path):
    content = HEADER + b"1.0,2,x,3\n" + b"bad,2,x,3\n"
    path = tmp_path / "part.csv.gz"
    path.write_bytes(gzip.compress(content))
    parsing.check_files([str(path)], COLUMNS)
    parsed = list(parsing.file_rows(str(path), COLUMNS, (), SPLITS))
    assert isinstance(parsed[0], parsing.Parsed) and parsed[1].line == 3 and parsed[1].column == "fare"
    assert parsing.physical_rows(str(path)) == 2


@pytest.mark.parametrize("damage", ["truncated", "not_gzip"])
def test_a_corrupt_gzip_csv_is_an_error_naming_the_file(tmp_path, damage):
    whole = gzip.compress(HEADER + b"1.0,2,x,3\n" * 2000)
    path = tmp_path / "part.csv.gz"
    path.write_bytes(whole[: len(whole) // 2] if damage == "truncated" else b"plain text, not gzip\n")
    with pytest.raises(parsing.IngestError, match=r"part.csv.gz: cannot read the file"):
        parsing.check_files([str(path)], COLUMNS)
        list(parsing.file_rows(str(path), COLUMNS, (), SPLITS))


def _parquet(tmp_path, table: pa.Table, name: str = "part.parquet") -> str:
    path = str(tmp_path / name)
    pq.write_table(table, path)
    return path


def test_parquet_nan_is_missing_quarantined_when_required_and_absent_when_optional(tmp_path):
    table = pa.table({"fare": [1.5, float("nan"), None, 2.5], "trip_start_hour": [1, 2, 3, 4],
                      "trip_seconds": [1.0, 2.0, 3.0, float("nan")]})
    path = _parquet(tmp_path, table)
    parsed = list(parsing.file_rows(path, COLUMNS, (), SPLITS))
    assert [type(p).__name__ for p in parsed] == ["Parsed", "Rejected", "Rejected", "Parsed"]
    assert parsed[1].reason == "column 'fare': missing required value for FLOAT (NaN)" and parsed[1].line == 2
    assert parsed[2].reason == "column 'fare': missing required value for FLOAT"
    assert "trip_seconds" not in parsed[3].values and parsed[0].values["trip_seconds"] == 1
    assert parsing.physical_rows(path) == 4 == sum(p.lines for p in parsed)


def test_parquet_text_numbers_follow_the_same_grammar(tmp_path):
    path = _parquet(tmp_path, pa.table({"fare": ["1.5", "nan", "١٢"], "trip_start_hour": ["1", "1_000", "2"]}))
    parsed = list(parsing.file_rows(path, COLUMNS, (), SPLITS))
    assert isinstance(parsed[0], parsing.Parsed) and parsed[0].values == {"fare": 1.5, "trip_start_hour": 1}
    assert [p.reason for p in parsed[1:]] == ["column 'fare': expected FLOAT, got 'nan'",
                                              "column 'fare': expected FLOAT, got '١٢'"]


@pytest.mark.parametrize("damage", ["truncated", "not_parquet", "empty"])
def test_a_corrupt_parquet_file_is_an_error_naming_the_file(tmp_path, damage):
    path = _parquet(tmp_path, pa.table({"fare": [1.5] * 100, "trip_start_hour": [1] * 100}))
    whole = open(path, "rb").read()
    broken = {"truncated": whole[: len(whole) - 20], "not_parquet": b"fare,trip_start_hour\n1,2\n", "empty": b""}
    with open(path, "wb") as f:
        f.write(broken[damage])
    reads = (lambda: parsing.check_files([path], COLUMNS), lambda: list(parsing.file_rows(path, COLUMNS, (), SPLITS)),
             lambda: parsing.physical_rows(path))
    for read in reads:
        with pytest.raises(parsing.IngestError, match=r"part.parquet: not a readable Parquet file"):
            read()


def test_the_accounting_check_fails_when_rows_go_missing():
    with pytest.raises(parsing.IngestError, match=r"x.csv: the file holds 5 data rows but 4 were written or "
                                                   r"quarantined"):
        parsing.check_accounted("x.csv", 5, 4)
    parsing.check_accounted("x.csv", 5, 5)


def test_the_beam_parse_step_refuses_a_file_whose_rows_are_not_all_accounted(tmp_path, monkeypatch):
    from flywheel.components.ingest import beam_ingest
    from flywheel.data import arrow_rows

    path = tmp_path / "data.csv"
    path.write_bytes(HEADER + b"1.0,2,x,3\n2.0,3,y,4\n")
    options = beam_ingest.IngestOptions(columns=tuple(COLUMNS))
    plan = beam_ingest.Shards(str(tmp_path / "examples"), str(tmp_path / "incomplete"), 1)
    outputs = list(beam_ingest._ParseFile(options, plan).process((0, str(path))))
    counts = outputs[-1].value
    assert counts[beam_ingest.PHYSICAL_TAG] == counts[beam_ingest.READ_TAG] == 2
    monkeypatch.setattr(arrow_rows, "file_items", lambda *a: list(parsing.file_rows(*a))[1:])
    with pytest.raises(parsing.IngestError, match=r"data.csv: the file holds 2 data rows but 1 were written"):
        list(beam_ingest._ParseFile(options, plan).process((0, str(path))))
    assert not list((tmp_path / "incomplete").rglob("*.gz")), "the refused file's shards are removed"


def test_resolving_and_parsing_input_does_not_import_tensorflow(tmp_path):
    """The parsing path (inputs + parsing, CSV, gzip CSV and Parquet) never imports TensorFlow: local files go
    through TFX's local filesystem plugin alone."""
    (tmp_path / "span-1").mkdir()
    (tmp_path / "span-1" / "a.csv").write_bytes(HEADER + b"1.0,2,x,3\n")
    (tmp_path / "span-1" / "b.csv.gz").write_bytes(gzip.compress(HEADER + b"bad,2,x,3\n"))
    _parquet(tmp_path / "span-1", pa.table({"fare": [1.5], "trip_start_hour": [1]}), "c.parquet")
    script = textwrap.dedent(f"""
        import json, sys
        from flywheel import schemas
        from flywheel.data import inputs, parsing
        resolved = inputs.resolve_input({str(tmp_path)!r})
        columns = parsing.columns_from_schema(parsing.load_schema(schemas.schema_path("taxi")))
        columns = [c for c in columns if c.name in ("fare", "trip_start_hour")]
        parsing.check_files(resolved.files, columns)
        kinds = [type(r).__name__ for f in resolved.files for r in parsing.file_rows(f, columns, (), [("train", 1)])]
        print(json.dumps({{"rows": kinds, "tf": sorted(m for m in sys.modules if m.split(".")[0] in
                                                         ("tensorflow", "keras", "tfx"))}}))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["rows"] == ["Parsed", "Rejected", "Parsed"]
    assert [m for m in out["tf"] if m.split(".")[0] != "tfx"] == []
    assert [m for m in out["tf"] if m not in ("tfx", "tfx.dsl", "tfx.version") and not m.startswith("tfx.dsl.io")] == []


@pytest.mark.parametrize("block", [1, 2, 3, 7])
def test_physical_lines_are_whole_whatever_the_read_size(block):
    data = b"ab\ncd\n\nlong line " + b"x" * 20 + b"\r\nlast"

    class SmallReads:
        def __init__(self):
            self._data = io.BytesIO(data)

        def read(self, _size):
            return self._data.read(block)

    assert list(parsing._physical_lines(SmallReads(), "p")) == [b"ab\n", b"cd\n", b"\n",
                                                                b"long line " + b"x" * 20 + b"\r\n", b"last"]
