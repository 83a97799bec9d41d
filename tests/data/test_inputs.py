"""Which files an ingestion reads: spans, suffixes, symlinks and hard links (plain functions, no Beam)."""

from __future__ import annotations

import gzip
import os
import re

import pytest

from flywheel.data import inputs

HEADER = b"fare,trip_start_hour\n"


def _file(path, content: bytes = HEADER + b"1.0,2\n") -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return str(path)


def _names(resolved: inputs.ResolvedInput, base) -> list[str]:
    return [os.path.relpath(f, base) for f in resolved.files]


def test_csv_gzip_and_parquet_are_read_markers_and_hidden_files_are_not(tmp_path):
    _file(tmp_path / "span-1" / "a.csv")
    _file(tmp_path / "span-1" / "b.csv.gz", gzip.compress(HEADER))
    _file(tmp_path / "span-1" / "C.CSV")
    _file(tmp_path / "span-1" / "d.parquet", b"")
    for ignored in ("_SUCCESS", ".part-0.csv.crc", "_metadata", ".hidden/x.txt", "_tmp/y.json"):
        _file(tmp_path / "span-1" / ignored, b"")
    assert _names(inputs.resolve_input(str(tmp_path)), tmp_path) == [
        "span-1/C.CSV", "span-1/a.csv", "span-1/b.csv.gz", "span-1/d.parquet"]


@pytest.mark.parametrize("name", ["part-0.tsv", "part-0.csv.bz2", "part-0.csv.zip", "part-0.json", "README",
                                  "part-0.parquet.gz", "nested/part-0.txt"])
def test_a_file_of_unsupported_type_in_a_data_folder_is_an_error_naming_it(tmp_path, name):
    _file(tmp_path / "span-1" / "a.csv")
    _file(tmp_path / "span-1" / name, b"x")
    with pytest.raises(inputs.InputError, match=rf"{name}: unsupported file type; expected a name ending in "
                                                r"\.csv, \.csv\.gz, \.parquet"):
        inputs.resolve_input(str(tmp_path))


def test_a_plain_file_of_unsupported_type_is_an_error(tmp_path):
    path = _file(tmp_path / "data.txt")
    with pytest.raises(inputs.InputError, match=r"data.txt: unsupported file type"):
        inputs.resolve_input(path)


@pytest.mark.parametrize("a,b", [("span-1", "span-01"), ("span-007", "span-7"), ("span-0", "span-000")])
def test_two_folders_of_one_span_are_an_error_naming_both(tmp_path, a, b):
    _file(tmp_path / a / "x.csv")
    _file(tmp_path / b / "x.csv")
    first, second = sorted([a, b])
    with pytest.raises(inputs.InputError, match=rf"folders .*{first} and .*{second} are both span"):
        inputs.resolve_input(str(tmp_path))


def test_span_01_alone_is_span_1_and_its_files_are_read(tmp_path):
    _file(tmp_path / "span-01" / "x.csv")
    _file(tmp_path / "span-2" / "x.csv")
    resolved = inputs.resolve_input(str(tmp_path), span=1)
    assert resolved.spans == (1,) and _names(resolved, tmp_path) == ["span-01/x.csv"]
    assert inputs.span_of(resolved.files[0], str(tmp_path)) == 1


@pytest.mark.parametrize("name", ["span-x", "span--1", "span-+1", "span-١", "span-１", "span-1.5", "span_1",
                                  "Span-2", "span"])
def test_a_name_that_looks_like_a_span_but_is_not_one_is_an_error(tmp_path, name):
    _file(tmp_path / "span-1" / "x.csv")
    _file(tmp_path / name / "x.csv")
    with pytest.raises(inputs.InputError, match=rf"{re.escape(name)}: not a span folder name"):
        inputs.resolve_input(str(tmp_path))


def test_entries_beside_span_folders_are_an_error_not_skipped(tmp_path):
    _file(tmp_path / "span-1" / "x.csv")
    _file(tmp_path / "extra.csv")
    _file(tmp_path / "_SUCCESS", b"")
    with pytest.raises(inputs.InputError, match=r"holds span folders and also \['extra.csv'\]"):
        inputs.resolve_input(str(tmp_path))


def test_a_span_that_is_a_file_or_holds_no_data_is_an_error(tmp_path):
    _file(tmp_path / "span-1" / "x.csv")
    (tmp_path / "span-2").mkdir()
    _file(tmp_path / "span-2" / "_SUCCESS", b"")
    with pytest.raises(inputs.InputError, match=r"span-2: span 2 holds no"):
        inputs.resolve_input(str(tmp_path), num_spans=2)
    _file(tmp_path / "span-3", b"")
    with pytest.raises(inputs.InputError, match=r"span-3: a span must be a folder"):
        inputs.resolve_input(str(tmp_path))


@pytest.mark.parametrize("target,looping", [(".", "span-1/again"), ("..", "span-1/again/span-1")])
def test_a_symlink_loop_is_an_error_and_not_followed(tmp_path, target, looping):
    _file(tmp_path / "span-1" / "x.csv")
    os.symlink(target, tmp_path / "span-1" / "again")
    with pytest.raises(inputs.InputError, match=rf"{looping} is a symlink loop: it leads back to a folder above"):
        inputs.resolve_input(str(tmp_path))


def test_a_symlink_loop_without_spans_is_an_error(tmp_path):
    _file(tmp_path / "a" / "x.csv")
    os.symlink(tmp_path, tmp_path / "a" / "up")
    with pytest.raises(inputs.InputError, match=r"a/up is a symlink loop"):
        inputs.resolve_input(str(tmp_path))


@pytest.mark.parametrize("link", [os.symlink, os.link])
def test_one_real_file_reached_by_two_paths_is_an_error_naming_both(tmp_path, link):
    real = _file(tmp_path / "span-1" / "a.csv")
    link(real, tmp_path / "span-1" / "b.csv")
    with pytest.raises(inputs.InputError, match=r"span-1/b.csv and .*span-1/a.csv are the same file"):
        inputs.resolve_input(str(tmp_path))


def test_one_real_folder_reached_by_two_paths_is_an_error(tmp_path):
    _file(tmp_path / "span-1" / "part" / "a.csv")
    os.symlink(tmp_path / "span-1" / "part", tmp_path / "span-1" / "same")
    with pytest.raises(inputs.InputError, match=r"span-1/same and .*span-1/part are the same folder"):
        inputs.resolve_input(str(tmp_path))


def test_a_file_shared_by_two_spans_is_an_error_only_when_both_are_read(tmp_path):
    real = _file(tmp_path / "span-1" / "a.csv")
    (tmp_path / "span-2").mkdir()
    os.symlink(real, tmp_path / "span-2" / "a.csv")
    assert len(inputs.resolve_input(str(tmp_path)).files) == 1
    with pytest.raises(inputs.InputError, match=r"are the same file"):
        inputs.resolve_input(str(tmp_path), num_spans=2)


def test_symlinked_files_and_span_folders_elsewhere_are_read_once(tmp_path):
    elsewhere = _file(tmp_path / "store" / "a.csv")
    data = tmp_path / "data"
    (data / "span-1").mkdir(parents=True)
    os.symlink(elsewhere, data / "span-1" / "a.csv")
    os.symlink(tmp_path / "store", data / "span-2")
    resolved = inputs.resolve_input(str(data), span=1)
    assert _names(resolved, data) == ["span-1/a.csv"]
    assert _names(inputs.resolve_input(str(data), span=2), data) == ["span-2/a.csv"]


@pytest.mark.parametrize("where", ["span-1/gone.csv", "span-2"])
def test_a_dangling_symlink_is_an_error_naming_it(tmp_path, where):
    _file(tmp_path / "span-1" / "x.csv")
    os.symlink(tmp_path / "nowhere", tmp_path / where)
    with pytest.raises(inputs.InputError, match=rf"{where} is a dangling symlink"):
        inputs.resolve_input(str(tmp_path))
