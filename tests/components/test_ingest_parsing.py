"""Ingest's typing and quarantine rules on bad and awkward input (plain functions, no Beam)."""

from __future__ import annotations

import re

import pytest

from flywheel import schemas
from flywheel.components.ingest import parsing

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
]


@pytest.mark.parametrize("row,column,reason", BAD_ROWS)
def test_bad_rows_are_quarantined_with_file_line_column_reason(tmp_path, row, column, reason):
    good = b"2.0,3,Acme,60\n"
    parsed, path = rows(tmp_path, HEADER + good + row + good)
    assert len(parsed) == 3, "every row is either parsed or quarantined"
    rejected = [r for r in parsed if isinstance(r, parsing.Rejected)]
    assert len(rejected) == 1
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
