"""Ingest's input on object storage: span resolution, fingerprint and parsing on ram:// match a local copy."""

from __future__ import annotations

import dataclasses
import gzip
import os
import shutil

import pytest

from flywheel import schemas
from flywheel.data import inputs, parsing
from tests import ram_filesystem

TESTDATA = os.path.join(os.path.dirname(__file__), "..", "..", "components", "ingest", "testdata", "spans")


@pytest.fixture
def local(tmp_path_factory):
    """Spans 1-3 in every format Ingest reads: CSV, CSV.gz (in a subfolder, with a row to quarantine), Parquet;
    plus a marker file."""
    root = tmp_path_factory.mktemp("data")
    shutil.copytree(TESTDATA, root, dirs_exist_ok=True)
    with open(os.path.join(TESTDATA, "span-1", "part-0.csv"), "rb") as f:
        text = f.read()
    os.makedirs(root / "span-3" / "hour-1")
    (root / "span-3" / "hour-1" / "part-0.csv.gz").write_bytes(gzip.compress(text + b"1,2,3\n"))
    (root / "span-3" / "_SUCCESS").write_bytes(b"")
    return str(root)


def _relative(resolved: inputs.ResolvedInput, base: str) -> list[str]:
    return [path[len(base) + 1:] for path in resolved.files]


def _columns():
    return parsing.columns_from_schema(parsing.load_schema(schemas.schema_path("taxi")))


def _rows(path: str, columns) -> list:
    rows = []
    for row in parsing.file_rows(path, columns, ("trip_start_timestamp",), (("train", 2), ("eval", 1))):
        rows.append(dataclasses.replace(row, file=os.path.basename(row.file))
                    if isinstance(row, parsing.Rejected) else row)
    return rows


def test_spans_and_fingerprint_on_object_storage_match_a_local_copy(local, ram):
    root = ram_filesystem.upload(local, f"{ram}/data")
    assert inputs.available_spans(root) == [1, 2, 3]
    for span, num_spans in ((-1, 3), (2, 1), (-1, 1)):
        remote, here = inputs.resolve_input(root, span, num_spans), inputs.resolve_input(local, span, num_spans)
        assert remote.spans == here.spans
        assert _relative(remote, root) == _relative(here, local)
        assert remote.fingerprint == here.fingerprint
    everything = inputs.resolve_input(root, -1, 3)
    assert _relative(everything, root) == ["span-1/part-0.csv", "span-2/part-0.csv", "span-2/part-1.parquet",
                                           "span-3/hour-1/part-0.csv.gz"]
    assert [inputs.span_of(path, root) for path in everything.files] == [1, 2, 2, 3]
    assert inputs.resolve_input(f"{root}/span-2/part-1.parquet").files == (f"{root}/span-2/part-1.parquet",)


def test_rows_parsed_from_object_storage_are_those_of_a_local_copy(local, ram):
    root = ram_filesystem.upload(local, f"{ram}/data")
    schema = f"{ram}/schema/schema.pbtxt"
    with open(schemas.schema_path("taxi"), "rb") as f:
        ram_filesystem.write(schema, f.read())
    columns = parsing.columns_from_schema(parsing.load_schema(schema))
    assert [c.name for c in columns] == [c.name for c in _columns()]
    remote, here = inputs.resolve_input(root, -1, 3), inputs.resolve_input(local, -1, 3)
    parsing.check_files(remote.files, columns)
    for remote_file, local_file in zip(remote.files, here.files, strict=True):
        rows = _rows(remote_file, columns)
        assert rows == _rows(local_file, columns) and rows
        assert parsing.physical_rows(remote_file) == parsing.physical_rows(local_file) == sum(r.lines for r in rows)
    rejected = [r for r in _rows(remote.files[-1], columns) if isinstance(r, parsing.Rejected)]
    assert [(r.line, r.reason) for r in rejected] == [(32, "expected 18 fields, got 3")]


@pytest.mark.parametrize("layout,error", [
    ({"span-1/a.csv": b"x", "span-2/_SUCCESS": b""}, r"span-2: span 2 holds no \.csv/\.csv\.gz/\.parquet file"),
    ({"span-1/a.csv": b"x", "span-1/notes.txt": b"x"}, r"span-1/notes.txt: unsupported file type"),
    ({"span-1/a.csv": b"x", "span-01/b.csv": b"x"}, r"folders .*span-01 and .*span-1 are both span 1"),
    ({"span-1/a.csv": b"x", "stray.csv": b"x"}, r"holds span folders and also \['stray.csv'\]"),
])
def test_a_span_on_object_storage_is_never_skipped_in_silence(ram, layout, error):
    for name, content in layout.items():
        ram_filesystem.write(f"{ram}/data/{name}", content)
    with pytest.raises(inputs.InputError, match=error):
        inputs.resolve_input(f"{ram}/data", -1, 2)


def test_a_missing_input_on_object_storage_is_an_error_naming_it(ram):
    with pytest.raises(inputs.InputError, match=rf"input '{ram}/nowhere' does not exist"):
        inputs.resolve_input(f"{ram}/nowhere")


def test_parquet_on_object_storage_that_is_not_parquet_is_an_error_naming_it(ram):
    ram_filesystem.write(f"{ram}/data/span-1/broken.parquet", b"PAR1 not really")
    with pytest.raises(parsing.IngestError, match=r"broken.parquet: not a readable Parquet file"):
        parsing.check_files([f"{ram}/data/span-1/broken.parquet"], _columns())
