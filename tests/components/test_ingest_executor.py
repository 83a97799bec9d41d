"""Ingest through Beam and through its TFX executor, on the tiny span testdata and on bad files."""

from __future__ import annotations

import gzip
import json
import os
import shutil

import pytest
import tensorflow as tf
from tfx.types import artifact_utils, standard_artifacts

from flywheel import schemas
from flywheel.components.ingest import executor as ingest_executor
from flywheel.components.ingest import spec
from flywheel.data import inputs, parsing
from tests.conftest import call_cli, run_cli

TESTDATA = os.path.join(os.path.dirname(__file__), "..", "..", "components", "ingest", "testdata", "spans")


def _count_records(split_dir: str) -> int:
    return sum(1 for f in os.listdir(split_dir) if f.endswith(".gz")
               for _ in tf.data.TFRecordDataset(os.path.join(split_dir, f), compression_type="GZIP"))


def test_resolve_latest_given_and_window_of_spans():
    assert inputs.available_spans(TESTDATA) == [1, 2]
    latest = inputs.resolve_input(TESTDATA)
    assert latest.spans == (2,) and [os.path.basename(f) for f in latest.files] == ["part-0.csv", "part-1.parquet"]
    assert inputs.resolve_input(TESTDATA, span=1).spans == (1,)
    window = inputs.resolve_input(TESTDATA, num_spans=2)
    assert window.spans == (1, 2) and len(window.files) == 3
    assert window.fingerprint != latest.fingerprint
    with pytest.raises(inputs.InputError, match=r"span 7 not found .* available spans: 1, 2$"):
        inputs.resolve_input(TESTDATA, span=7)


def test_fingerprint_changes_with_content(tmp_path):
    shutil.copytree(TESTDATA, tmp_path / "d")
    before = inputs.resolve_input(str(tmp_path / "d")).fingerprint
    assert before == inputs.resolve_input(str(tmp_path / "d")).fingerprint
    with open(tmp_path / "d" / "span-2" / "part-0.csv", "ab") as f:
        f.write(b"\n")
    assert inputs.resolve_input(str(tmp_path / "d")).fingerprint != before


def schema_artifact(folder: str) -> standard_artifacts.Schema:
    """A Schema artifact as ImportSchemaGen writes one: a folder holding only the taxi schema (its folder in the
    repository also holds the privacy policy)."""
    os.makedirs(folder, exist_ok=True)
    shutil.copy(schemas.schema_path("taxi"), folder)
    schema = standard_artifacts.Schema()
    schema.uri = folder
    return schema


def _run_executor(tmp_path, input_base: str, limit: float = 0.01):
    schema = schema_artifact(str(tmp_path / "ImportSchemaGen" / "schema" / "1"))
    examples, quarantine, profile = standard_artifacts.Examples(), spec.Quarantine(), spec.DataProfile()
    examples.uri = str(tmp_path / "Ingest" / "examples" / "1")
    quarantine.uri = str(tmp_path / "Ingest" / "quarantine" / "1")
    profile.uri = str(tmp_path / "Ingest" / "profile" / "1")
    props = {spec.INPUT_BASE_KEY: input_base, spec.SPAN_KEY: -1, spec.NUM_SPANS_KEY: 2,
             spec.SPLIT_KEY_COLUMNS_KEY: "", spec.SPLITS_KEY: "train:2,eval:1", spec.QUARANTINE_LIMIT_KEY: limit}
    context = ingest_executor.Executor.Context(tmp_dir=str(tmp_path / "tmp"), unique_id="1")
    ingest_executor.Executor(context).Do({spec.SCHEMA_KEY: [schema]},
                                         {spec.EXAMPLES_KEY: [examples], spec.QUARANTINE_KEY: [quarantine],
                                          spec.PROFILE_KEY: [profile]}, props)
    return examples, quarantine, profile


@pytest.mark.slow  # a Beam job
def test_executor_writes_standard_examples_and_counts(tmp_path):
    examples, quarantine, _ = _run_executor(tmp_path, TESTDATA)
    assert artifact_utils.decode_split_names(examples.split_names) == ["train", "eval"]
    written = json.loads(examples.get_string_custom_property(spec.ROWS_WRITTEN))
    assert examples.get_int_custom_property(spec.ROWS_READ) == 30 + 30 + 10
    assert examples.get_int_custom_property(spec.ROWS_QUARANTINED) == 0
    assert examples.get_int_custom_property(spec.PHYSICAL_ROWS) == 70
    assert sum(written.values()) == 70 and written["train"] > written["eval"] > 0
    for split in ("train", "eval"):
        assert _count_records(os.path.join(examples.uri, f"Split-{split}")) == written[split]
    assert examples.get_string_custom_property(spec.SPANS) == "1,2" and examples.span == 2
    assert len(examples.get_string_custom_property(spec.FINGERPRINT)) == 64
    record = next(iter(tf.data.TFRecordDataset(
        [os.path.join(examples.uri, "Split-train", f) for f in os.listdir(os.path.join(examples.uri, "Split-train"))],
        compression_type="GZIP")))
    example = tf.train.Example.FromString(record.numpy())
    assert example.features.feature["trip_start_hour"].int64_list.value
    assert example.features.feature["fare"].float_list.value


def _bad_copy(tmp_path, share_bad: int) -> str:
    data = tmp_path / "data" / "span-3"
    data.mkdir(parents=True)
    lines = open(os.path.join(TESTDATA, "span-1", "part-0.csv"), "rb").read().splitlines(keepends=True)
    for i in range(1, 1 + share_bad):
        lines[i] = lines[i].replace(b",", b",not-a-number,", 1).replace(b",not-a-number,", b",x", 1)
    (data / "part.csv").write_bytes(b"".join(lines))
    return str(tmp_path / "data")


@pytest.mark.slow  # a Beam job
def test_limit_exceeded_fails_and_keeps_the_quarantine(tmp_path):
    base = _bad_copy(tmp_path, share_bad=3)
    with pytest.raises(parsing.IngestError, match=r"3 of 30 rows quarantined \(10.00%\), above the limit of 1.00%"):
        _run_executor(tmp_path, base)
    kept = tmp_path / "Ingest" / spec.FAILED_QUARANTINE_DIR / "1" / spec.QUARANTINE_FILE
    rows = [json.loads(line) for line in kept.read_text().splitlines()]
    assert len(rows) == 3 and all(r["file"].endswith("part.csv") and r["line"] in (2, 3, 4) for r in rows)


@pytest.mark.slow  # a Beam job
def test_an_unclosed_quote_costs_one_row_and_gzip_spans_are_read(tmp_path):
    lines = open(os.path.join(TESTDATA, "span-1", "part-0.csv"), "rb").read().splitlines(keepends=True)
    header, body = lines[0], lines[1:]
    (tmp_path / "data" / "span-1").mkdir(parents=True)
    (tmp_path / "data" / "span-1" / "part.csv.gz").write_bytes(gzip.compress(b"".join(lines)))
    (tmp_path / "data" / "span-2").mkdir()
    broken = body[0].replace(b",Credit Card,", b',"Credit Card,', 1)
    assert broken != body[0]
    (tmp_path / "data" / "span-2" / "part.csv").write_bytes(header + body[0] + broken + b"".join(body * 10))
    examples, quarantine, _ = _run_executor(tmp_path, str(tmp_path / "data"))
    read, written = examples.get_int_custom_property(spec.ROWS_READ), examples.get_string_custom_property(
        spec.ROWS_WRITTEN)
    assert read == 30 + 1 + 1 + 300 == examples.get_int_custom_property(spec.PHYSICAL_ROWS)
    assert examples.get_int_custom_property(spec.ROWS_QUARANTINED) == 1
    assert sum(json.loads(written).values()) == read - 1
    with open(os.path.join(quarantine.uri, spec.QUARANTINE_FILE)) as f:
        [row] = [json.loads(line) for line in f]
    assert row["file"].endswith("span-2/part.csv") and row["line"] == 3 and row["lines"] == 1
    assert row["reason"].startswith("unclosed quote: the quoted field opened on line 3")


def test_a_corrupt_parquet_file_fails_the_execution_naming_it(tmp_path):
    shutil.copytree(TESTDATA, tmp_path / "data")
    (tmp_path / "data" / "span-2" / "part-2.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(parsing.IngestError, match=r"span-2/part-2.parquet: not a readable Parquet file"):
        _run_executor(tmp_path, str(tmp_path / "data"))


@pytest.mark.slow  # the flywheel command as a process
def test_cli_ingest_json(tmp_path):
    """The installed `flywheel ingest` in its own process: --json prints only JSON on stdout."""
    result = run_cli("ingest", "--data", TESTDATA, "--schema", schemas.schema_path("taxi"), "--output-dir",
                     str(tmp_path / "out"), "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["rows_read"] == 40 and out["span"] == 2 and out["rows_quarantined"] == 0
    assert out["rows_read"] == sum(out["rows_written"].values()) + out["rows_quarantined"]
    assert len(out["fingerprint"]) == 64 and os.path.exists(out["quarantine_path"])


@pytest.mark.slow  # a Beam job
def test_cli_ingest_over_limit_exits_nonzero_and_keeps_quarantine(tmp_path, capfd):
    base = _bad_copy(tmp_path, share_bad=3)
    result = call_cli(capfd, "ingest", "--data", base, "--schema", schemas.schema_path("taxi"), "--output-dir",
                      str(tmp_path / "out"), "--json")
    assert result.returncode == 1
    assert "3 of 30 rows quarantined" in result.stderr and "part.csv line 2" in result.stderr
    out = json.loads(result.stdout)
    assert out["rows_quarantined"] == 3 and out["rows_read"] == 30
    with open(out["quarantine_path"]) as f:
        assert len(f.read().splitlines()) == 3


def test_cli_ingest_missing_required_column(tmp_path, capfd):
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"trip_start_hour,company\n5,Acme\n")
    result = call_cli(capfd, "ingest", "--data", str(bad), "--schema", schemas.schema_path("taxi"), "--output-dir",
                      str(tmp_path / "out"))
    assert result.returncode == 1
    assert "bad.csv: missing required column(s)" in result.stderr and "'fare'" in result.stderr


@pytest.mark.slow  # a Beam job
def test_examples_are_plain_gzip_files(tmp_path):
    examples, _, _ = _run_executor(tmp_path, TESTDATA)
    path = os.path.join(examples.uri, "Split-eval", sorted(os.listdir(os.path.join(examples.uri, "Split-eval")))[0])
    with gzip.open(path, "rb") as f:
        assert len(f.read(12)) == 12
