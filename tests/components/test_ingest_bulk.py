"""Ingest with the bulk path (pyarrow's reader, `arrow_rows`) writes what row by row typing (`parsing`) writes: the
same records per split, quarantine lines and counts, and profiles with the same counts, extremes and value tables
(means and squared deviations merged in another order: equal to 1e-12), on the shipped data, the component's
testdata and bad input."""

from __future__ import annotations

import collections
import gzip
import json
import math
import os
import shutil
import struct

import google_crc32c
import pytest

from flywheel import schemas
from flywheel.components.ingest import beam_ingest, run
from flywheel.data import arrow_rows, inputs, parsing
from flywheel.monitoring import profile
from flywheel.pipelines.taxi.config import shipped_data

pytestmark = pytest.mark.slow  # Beam pipelines, twice per data set
TESTDATA = os.path.join(os.path.dirname(beam_ingest.__file__), "testdata", "spans")


def _unmask(masked: int) -> int:
    rotated = (masked - 0xA282EAD8) & 0xFFFFFFFF
    return ((rotated >> 17) | (rotated << 15)) & 0xFFFFFFFF


def _records(path: str) -> list[bytes]:
    """The records of a gzip TFRecord file, each checksum checked."""
    data, out, at = gzip.decompress(open(path, "rb").read()), [], 0
    while at < len(data):
        length_bytes = data[at:at + 8]
        (length,) = struct.unpack("<Q", length_bytes)
        assert _unmask(struct.unpack("<I", data[at + 8:at + 12])[0]) == google_crc32c.value(length_bytes)
        record = data[at + 12:at + 12 + length]
        assert _unmask(struct.unpack("<I", data[at + 12 + length:at + 16 + length])[0]) == google_crc32c.value(record)
        out.append(record)
        at += 16 + length
    return out


def _ingest(tmp_path, name: str, base: str, num_spans: int) -> dict:
    out = tmp_path / name
    options = beam_ingest.IngestOptions(columns=tuple(parsing.columns_from_schema(
        parsing.load_schema(schemas.schema_path("taxi")))))
    resolved = inputs.resolve_input(base, -1, num_spans)
    counts = run.run_ingest(resolved, options, str(out / "examples"), str(out / "quarantine"), str(out / "work"),
                            profile_uri=str(out / "profile"), input_base=base)
    splits = {}
    for split in ("train", "eval"):
        folder = out / "examples" / f"Split-{split}"
        splits[split] = collections.Counter(r for f in sorted(os.listdir(folder)) for r in _records(str(folder / f)))
    quarantine = (out / "quarantine" / "quarantine.jsonl").read_text().splitlines()
    summary = json.loads((out / "quarantine" / "counts.json").read_text())
    return {"counts": counts, "splits": splits, "quarantine": sorted(quarantine), "summary": summary,
            "profiles": profile.read_span_profiles(str(out / "profile"))}


def _same_profiles(before: dict, after: dict) -> None:
    assert sorted(before) == sorted(after)
    for span in before:
        a, b = before[span].to_json(), after[span].to_json()
        a, b = json.loads(a), json.loads(b)
        assert a["rows"] == b["rows"]
        for name, column in a["columns"].items():
            other = b["columns"][name]
            for key in column:
                if key in ("mean", "m2") and column[key] is not None:
                    assert math.isclose(column[key], other[key], rel_tol=1e-12, abs_tol=1e-9), (span, name, key)
                else:
                    assert column[key] == other[key], (span, name, key)


def _both_ways(tmp_path, monkeypatch, base: str, num_spans: int = 1) -> dict:
    after = _ingest(tmp_path, "bulk", base, num_spans)
    with monkeypatch.context() as patched:
        patched.setattr(arrow_rows, "file_items", parsing.file_rows)
        before = _ingest(tmp_path, "rows", base, num_spans)
    assert after["splits"] == before["splits"]
    assert after["quarantine"] == before["quarantine"]
    assert after["counts"] == before["counts"]
    assert after["summary"] == before["summary"]
    _same_profiles(before["profiles"], after["profiles"])
    return after


def test_the_shipped_data_ingests_the_same(tmp_path, monkeypatch):
    base = tmp_path / "data" / "span-1"
    base.mkdir(parents=True)
    shutil.copy(shipped_data(), base / "data.csv")
    after = _both_ways(tmp_path, monkeypatch, str(tmp_path / "data"))
    assert after["counts"].rows_read == 15_002 and after["counts"].rows_quarantined == 0


def test_the_component_testdata_ingests_the_same(tmp_path, monkeypatch):
    after = _both_ways(tmp_path, monkeypatch, TESTDATA, num_spans=2)
    assert after["counts"].rows_read == after["counts"].physical_rows


BAD_LINES = [
    "{id},nan,{rest}", "{id},inf,{rest}", "{id},1e39,{rest}", "{id},,{rest}", "{id},1_000,{rest}", "{id},0x1F,{rest}",
    "{id},\"12\",{rest}", "{id},12,{rest},extra", "{id},12", "{id},12,{rest}\r", "{id},١٢,{rest}",
    "\"{id},12,{rest}", "{id},\"a\nb\",{rest}", "   ", "\t",
]


def test_bad_input_ingests_the_same(tmp_path, monkeypatch):
    """The shipped rows with bad lines spread over three files (one gzip): every kind of quarantine reason."""
    with open(shipped_data(), "rb") as f:
        header, *lines = f.read().decode("utf-8").splitlines()
    span = tmp_path / "bad" / "span-1"
    span.mkdir(parents=True)
    for index in range(3):
        body = lines[index * 3000:(index + 1) * 3000]
        for k, bad in enumerate(BAD_LINES):
            first, _, rest = body[100 * k + index].partition(",")
            body.insert(97 * k + 5, bad.format(id=first, rest=rest.partition(",")[2]))
        text = (header + "\n" + "\n".join(body) + "\n").encode("utf-8")
        if index == 1:
            text = text.replace(b"Taxi Affiliation", b"Taxi \xff Affiliation", 1)
        if index == 2:
            (span / "part-2.csv.gz").write_bytes(gzip.compress(text))
        else:
            (span / f"part-{index}.csv").write_bytes(text)
    after = _both_ways(tmp_path, monkeypatch, str(tmp_path / "bad"))
    assert after["counts"].rows_quarantined >= 3 * 10
