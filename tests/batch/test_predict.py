"""`flywheel predict` on a tiny real pushed model: predictions, quarantine, counts, versions, errors, the CLI.

The oracle for the predictions is the served SavedModel's own examples signature, called in this process on
tf.Examples built here from the CSV with the schema's types (not with the code under test).
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import tensorflow as tf

from flywheel.api.batch import PredictResult, predict
from flywheel.api.errors import UsageError
from flywheel.batch import model_version
from flywheel.batch import predict as batch_predict
from flywheel.data import parsing
from flywheel.pipelines.taxi import features
from flywheel.schemas import schema_path
from flywheel.store import layout
from tests import tiny_runs
from tests.conftest import call_cli, run_cli, shipped_data

SCHEMA = parsing.load_schema(schema_path("taxi"))
TYPES = {f.name: f.type for f in SCHEMA.feature}


@pytest.fixture(scope="module")
def serving_dir(taxi_runs) -> str:
    """Two pushed versions of the taxi model, from the checked-in taxi runs (shared by the session)."""
    return os.path.join(taxi_runs, "serving")


def _versions(serving_dir: str) -> list[int]:
    return layout.versions(serving_dir, "taxi")


def _example(row: dict) -> bytes:
    feature = {}
    for name, text in row.items():
        if name not in TYPES or text == "":
            continue
        if TYPES[name] == 2:  # INT
            feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(text)]))
        elif TYPES[name] == 3:  # FLOAT
            feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=[float(text)]))
        else:
            feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[text.encode()]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _model_scores(version_path: str, signature: str, csv_path: str) -> dict[tuple, float]:
    """{(trip_start_timestamp, fare, trip_miles): score} from the SavedModel's signature, called in-process."""
    with open(csv_path, newline="") as f:
        records = list(csv.DictReader(f))
    fn = tf.saved_model.load(version_path).signatures[signature]
    (output,) = fn(examples=tf.constant([_example(r) for r in records])).values()
    return {_key(r["trip_start_timestamp"], r["fare"], r["trip_miles"]): float(s)
            for r, s in zip(records, output.numpy().ravel(), strict=True)}


def _key(timestamp, fare, miles) -> tuple:
    return int(timestamp), round(float(fare), 4), round(float(miles), 4)


def _predictions(result: PredictResult) -> pa.Table:
    return ds.dataset(result.predictions, format="parquet").to_table()


@pytest.mark.slow  # a Beam job
def test_predictions_equal_the_served_models_signature_and_parquet_has_the_schema(serving_dir, tmp_path):
    data = tiny_runs.write_sample(str(tmp_path / "data"), 2 * tiny_runs.ROWS, rows=300)
    result = predict("taxi", data, serving_dir, str(tmp_path / "out"))
    assert result.error is None
    assert (result.rows_in, result.rows_scored, result.rows_quarantined) == (300, 300, 0)
    latest = max(_versions(serving_dir))
    assert result.model_version == latest

    table = _predictions(result)
    assert table.num_rows == 300
    names = [f.name for f in SCHEMA.feature]
    assert table.schema.names == ["source_file", "source_line"] + names + ["prediction", "model_version"]
    assert table.schema.field("fare").type == pa.float64()
    assert table.schema.field("trip_start_hour").type == pa.int64()
    assert table.schema.field("payment_type").type == pa.string()
    assert table.schema.field("prediction").type == pa.float64()
    assert set(table.column("model_version").to_pylist()) == {latest}
    for part in os.listdir(result.predictions):
        assert pq.read_schema(os.path.join(result.predictions, part)) == table.schema

    expected = _model_scores(result.model_path, result.signature, os.path.join(data, "data.csv"))
    rows = table.select(["trip_start_timestamp", "fare", "trip_miles", "prediction"]).to_pylist()
    got = {_key(r["trip_start_timestamp"], r["fare"], r["trip_miles"]): r["prediction"] for r in rows}
    assert got.keys() == expected.keys()
    # float32 scores: other batch sizes sum in another order, a few ULPs apart (1.8e-6 relative was seen)
    np.testing.assert_allclose([got[k] for k in expected], list(expected.values()), rtol=1e-5)
    assert len(set(expected.values())) > 10  # a model that scores every row the same would not test much

    with open(result.counts_path) as f:
        counts = json.load(f)
    assert counts["rows_in"] == counts["rows_scored"] + counts["rows_quarantined"] == 300
    assert counts["files"][0]["file"] == os.path.join(data, "data.csv")


def _bad_rows_folder(root) -> tuple[str, str]:
    """A CSV without the label column (not needed to score) holding three bad rows, and a Parquet file."""
    folder = root / "bad"
    sample = tiny_runs.write_sample(str(root / "sample"), 0, rows=20)
    with open(os.path.join(sample, "data.csv"), newline="") as f:
        records = list(csv.DictReader(f))
    header = [h for h in records[0] if h != features.LABEL_KEY]
    folder.mkdir()
    path = str(folder / "a.csv")
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, header, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(records[:10])
    lines = open(path).read().splitlines()
    lines[3] = lines[3].replace(records[2]["fare"], "N/A", 1)  # data line 3: fare is not a FLOAT
    lines[5] = ",".join(["" if h == "trip_start_hour" else v for h, v in zip(header, next(csv.reader([lines[5]])),
                                                                             strict=True)])
    lines[7] = lines[7] + ",extra"  # one field too many
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    pq.write_table(pa.Table.from_pylist([{k: v for k, v in r.items()} for r in records[10:]]).cast(pa.schema(
        [pa.field(k, pa.string()) for k in records[0]])), str(folder / "b.parquet"))
    return str(folder), path


@pytest.mark.slow  # a Beam job
def test_bad_rows_are_quarantined_with_line_and_column_and_counts_add_up(serving_dir, tmp_path):
    data, bad_csv = _bad_rows_folder(tmp_path)
    result = predict("taxi", data, serving_dir, str(tmp_path / "out"))
    assert result.error is None
    assert (result.rows_in, result.rows_scored, result.rows_quarantined) == (20, 17, 3)
    with open(result.quarantine_path) as f:
        quarantined = sorted((json.loads(line) for line in f), key=lambda r: r["line"])
    assert [(r["file"], r["line"], r["column"]) for r in quarantined] == [
        (bad_csv, 4, "fare"), (bad_csv, 6, "trip_start_hour"), (bad_csv, 8, None)]
    assert "expected FLOAT, got 'N/A'" in quarantined[0]["reason"]
    assert "missing required value" in quarantined[1]["reason"]
    assert "expected" in quarantined[2]["reason"] and "fields" in quarantined[2]["reason"]
    table = _predictions(result)
    assert table.num_rows == 17
    assert table.column("tips").null_count == 7  # absent from the CSV, present in the Parquet file
    keys = sorted(zip(table.column("source_file").to_pylist(), table.column("source_line").to_pylist(),
                      strict=True))
    parquet = os.path.join(data, "b.parquet")
    assert keys == sorted([(bad_csv, line) for line in range(2, 12) if line not in (4, 6, 8)]
                          + [(parquet, row) for row in range(1, 11)]), "the quarantine's (file, line) key, in turn"
    with open(result.counts_path) as f:
        files = {c["file"]: c for c in json.load(f)["files"]}
    assert files[bad_csv]["rows_in"] == 10 and files[bad_csv]["rows_quarantined"] == 3
    assert files[os.path.join(data, "b.parquet")]["rows_scored"] == 10


def _with_trip_ids(root, rows: int) -> tuple[str, list[dict]]:
    """A CSV of the shipped rows with a `trip_id` first column (as `flywheel simulate` writes), the third row's id
    empty, and a record line broken by a quoted line break (one row over two lines)."""
    sample = tiny_runs.write_sample(str(root / "sample"), 0, rows=rows)
    with open(os.path.join(sample, "data.csv"), newline="") as f:
        records = [{"trip_id": f"t-{i}", **r} for i, r in enumerate(csv.DictReader(f))]
    records[2]["trip_id"] = ""
    records[4]["company"] = "Two\nLines Cab"
    path = root / "ids" / "data.csv"
    path.parent.mkdir()
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, list(records[0]))
        writer.writeheader()
        writer.writerows(records)
    return str(path), records


@pytest.mark.slow  # a Beam job
def test_each_prediction_joins_back_to_its_row_by_file_and_line_and_by_the_id_column(serving_dir, tmp_path):
    path, records = _with_trip_ids(tmp_path, 40)
    result = predict("taxi", path, serving_dir, str(tmp_path / "out"), id_column="trip_id")
    assert result.error is None and result.id_column == "trip_id"
    assert (result.rows_in, result.rows_scored, result.rows_quarantined) == (40, 39, 1)
    with open(result.quarantine_path) as f:
        (missing,) = [json.loads(line) for line in f]
    assert (missing["line"], missing["column"]) == (4, "trip_id") and "missing required value" in missing["reason"]

    table = _predictions(result)
    assert table.schema.field("trip_id").type == pa.string() and "trip_id" not in {f.name for f in SCHEMA.feature}
    by_id = {r["trip_id"]: r for r in table.to_pylist()}
    assert len(by_id) == 39
    expected = _model_scores(result.model_path, result.signature, path)
    for i, record in enumerate(records):
        if i == 2:
            continue
        row = by_id[f"t-{i}"]
        assert row["fare"] == pytest.approx(float(record["fare"]))
        key = _key(record["trip_start_timestamp"], record["fare"], record["trip_miles"])
        assert row["prediction"] == pytest.approx(expected[key], rel=1e-5), "the score of that very row"
        # line 1 is the header; the record with a line break in a quoted field takes two lines
        assert (row["source_file"], row["source_line"]) == (path, i + 2 + (i > 4))

    without = predict("taxi", path, serving_dir, str(tmp_path / "plain"))
    assert without.rows_scored == 40 and "trip_id" not in _predictions(without).schema.names
    lines = {r["source_line"]: r["prediction"] for r in _predictions(without).to_pylist()}
    assert lines[9] == pytest.approx(by_id["t-6"]["prediction"]), "file and line key a row without any id column"


def test_an_id_column_named_as_an_output_column_is_refused(serving_dir, tmp_path, capfd):
    path, _ = _with_trip_ids(tmp_path, 5)
    for name in ("prediction", "source_line"):
        result = call_cli(capfd, "predict", "taxi", "--data", path, "--serving-dir", serving_dir, "--output",
                          str(tmp_path / name), "--id-column", name)
        assert result.returncode == 2, result.stderr
        assert f"id column {name!r} would be overwritten by the output column" in result.stderr
        assert "Traceback" not in result.stderr and not (tmp_path / name).exists()


def test_a_file_missing_a_required_column_is_refused_by_name(serving_dir, tmp_path, capfd):
    sample = tiny_runs.write_sample(str(tmp_path / "sample"), 0, rows=5)
    with open(os.path.join(sample, "data.csv"), newline="") as f:
        records = list(csv.DictReader(f))
    path = tmp_path / "no_fare.csv"
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, [h for h in records[0] if h != "fare"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(records)
    result = predict("taxi", str(path), serving_dir, str(tmp_path / "out"))
    assert result.error is not None and str(path) in result.error and "'fare'" in result.error
    assert result.rows_scored == 0
    cli = call_cli(capfd, "predict", "taxi", "--data", str(path), "--serving-dir", serving_dir, "--output",
                   str(tmp_path / "again"), "--quiet")
    assert cli.returncode == 1 and not cli.stdout.strip(), "no '0 rows in, 0 scored' summary: " + cli.stdout
    lines = cli.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"flywheel: predict: {path}: missing required column"), lines


@pytest.mark.slow  # a Beam job
def test_version_picks_that_version(serving_dir, tmp_path):
    older = min(_versions(serving_dir))
    data = tiny_runs.write_sample(str(tmp_path / "data"), 0, rows=50)
    result = predict("taxi", data, serving_dir, str(tmp_path / "out"), version=older)
    assert result.model_version == older and result.model_path == os.path.join(serving_dir, "taxi", str(older))
    assert set(_predictions(result).column("model_version").to_pylist()) == {older}
    expected = _model_scores(result.model_path, result.signature, os.path.join(data, "data.csv"))
    got = sorted(_predictions(result).column("prediction").to_pylist())
    np.testing.assert_allclose(got, sorted(expected.values()), rtol=1e-5)


def test_unknown_version_or_model_names_what_exists(serving_dir, tmp_path):
    data = tiny_runs.write_sample(str(tmp_path / "data"), 0, rows=5)
    versions = _versions(serving_dir)
    with pytest.raises(UsageError, match=f"no version 7 .*versions: {versions[0]}, {versions[1]}"):
        predict("taxi", data, serving_dir, str(tmp_path / "a"), version=7)
    other = tmp_path / "serving"
    shutil.copytree(os.path.join(serving_dir, "taxi", str(versions[0])), other / "chicago" / "3")
    with pytest.raises(UsageError, match="no model 'taxi' in serving folder .*; models there: chicago"):
        predict("taxi", data, str(other), str(tmp_path / "b"))
    with pytest.raises(UsageError, match="models there: none"):
        predict("taxi", data, str(tmp_path / "empty"), str(tmp_path / "c"))
    assert not os.path.exists(tmp_path / "a")


def test_a_non_empty_output_is_refused(serving_dir, tmp_path):
    data = tiny_runs.write_sample(str(tmp_path / "data"), 0, rows=5)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.parquet").write_bytes(b"x")
    with pytest.raises(UsageError, match="already exists and is not an empty folder"):
        predict("taxi", data, serving_dir, str(tmp_path / "out"))


def test_counts_that_do_not_add_up_fail_naming_the_file():
    counts = {"rows_in": 10, "rows_quarantined": 2, "physical_rows": 10}
    expected = "data/part-1.csv: 10 rows read but 7 scored \\+ 2 quarantined"
    with pytest.raises(model_version.PredictError, match=expected):
        batch_predict._check_file(("data/part-1.csv", {"counts": [counts], "scored": [3, 4]}))
    assert batch_predict._check_file(("f.csv", {"counts": [counts], "scored": [8]}))["rows_scored"] == 8


@pytest.mark.slow  # the flywheel command, on Beam's multi-process runner
def test_cli_scores_the_span_asked_for_on_the_beam_engine(serving_dir, tmp_path, capfd):
    spans = tmp_path / "spans"
    tiny_runs.write_sample(str(spans / "span-1"), 0, rows=40)
    tiny_runs.write_sample(str(spans / "span-2"), 40, rows=60)
    out = tmp_path / "out"
    result = run_cli("predict", "taxi", "--data", str(spans), "--span", "1", "--serving-dir", serving_dir,
                     "--output", str(out), "--engine", "beam", "--json")
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    assert printed["spans"] == [1] and printed["rows_scored"] == 40 and printed["engine"] == "beam"
    assert ds.dataset(str(out / "predictions"), format="parquet").count_rows() == 40
    told = call_cli(capfd, "predict", "taxi", "--data", str(spans), "--serving-dir", serving_dir, "--output",
                    str(tmp_path / "told"), "--quiet")
    assert told.returncode == 0, told.stderr
    assert f"  predictions: {tmp_path / 'told' / 'predictions'}/part-*.parquet (source_file and source_line key " \
           "each row)" in told.stdout.splitlines(), told.stdout
    assert f"  counts: {tmp_path / 'told' / 'counts.json'}" in told.stdout.splitlines()
    assert "the version serving now" in " ".join(call_cli(capfd, "predict", "--help").stdout.split())
    again = call_cli(capfd, "predict", "taxi", "--data", str(spans), "--serving-dir", serving_dir, "--output",
                     str(out))
    assert again.returncode == 2 and again.stderr.startswith("flywheel: predict: --output ")
    wrong = call_cli(capfd, "predict", "taxi", "--data", str(spans), "--serving-dir", serving_dir, "--version", "1",
                     "--output", str(tmp_path / "new"))
    assert wrong.returncode == 2 and "has no version 1" in wrong.stderr


@pytest.mark.slow  # a Beam job
def test_a_file_that_breaks_off_mid_read_fails_the_run_naming_it(serving_dir, tmp_path):
    """The header reads, then the gzip stream ends early: the error comes from inside the Beam pipeline."""
    import gzip

    with open(shipped_data(), "rb") as f:
        compressed = gzip.compress(f.read())
    path = tmp_path / "cut.csv.gz"
    path.write_bytes(compressed[: len(compressed) * 3 // 4])
    result = predict("taxi", str(path), serving_dir, str(tmp_path / "out"))
    assert result.error is not None and result.error.startswith(f"predict: {path}: cannot read the file")
    assert "Traceback" not in result.error and "[while running" not in result.error


@pytest.mark.slow  # a Beam job
def test_progress_lines_name_the_file_the_rows_read_and_the_time(serving_dir, tmp_path, capfd):
    data = tiny_runs.write_sample(str(tmp_path / "data"), 0, rows=25)
    result = predict("taxi", data, serving_dir, str(tmp_path / "out"), progress_every=10)
    assert result.rows_scored == 25
    lines = [line for line in capfd.readouterr().err.splitlines() if line.startswith("predict: ")]
    assert re.fullmatch(rf"predict: scoring 1 file\(s\) with taxi version {result.model_version} \(\d+ s\)", lines[0])
    assert [re.sub(r" \(\d+ s\)$", "", line) for line in lines[1:]] == [
        "predict: data.csv: 10 rows read, 0 quarantined", "predict: data.csv: 20 rows read, 0 quarantined",
        "predict: data.csv: done, 25 rows read, 0 quarantined"]
    quiet = predict("taxi", data, serving_dir, str(tmp_path / "quiet"))
    assert quiet.rows_scored == 25 and "predict: " not in capfd.readouterr().err


@pytest.mark.slow  # a Beam job
def test_the_beam_engine_launcher_never_imports_tensorflow(serving_dir, tmp_path):
    """The pipeline is built and the model resolved without TensorFlow in the launching process: only the
    workers that score load it (it holds about 0.4 GB in each process that does)."""
    data = tiny_runs.write_sample(str(tmp_path / "data"), 0, rows=5)
    code = ("import sys\n"
            "import apache_beam as beam\n"
            "from flywheel.batch import model_version, predict, rows\n"
            "from flywheel.data import parsing\n"
            "from flywheel.schemas import schema_path\n"
            "model = model_version.resolve(sys.argv[1], 'taxi', apart=True)\n"
            "columns = rows.serving_columns(parsing.load_schema(schema_path('taxi')))\n"
            "predict.check_output(sys.argv[3])\n"
            "predict.expand(beam.Pipeline(), [sys.argv[2]], predict.PredictOptions(columns, model), sys.argv[3])\n"
            "print(model.signature, sorted(m for m in sys.modules if m.split('.')[0] == 'tensorflow'))\n")
    done = subprocess.run([sys.executable, "-c", code, serving_dir, data, str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["serving_examples", "[]"]
