"""One data-file discovery (`flywheel.data.inputs`) behind every command that reads data: `flywheel monitor`,
`replay` and `flywheel predict` accept what Ingest accepts and refuse what it refuses, with the same words."""

from __future__ import annotations

import gzip
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flywheel import schemas
from flywheel.api.batch import predict
from flywheel.api.errors import UsageError
from flywheel.data import inputs
from flywheel.monitoring import monitor, profile
from flywheel.traffic import replay

CSV = b"fare,company\n1.5,a\n2.5,b\n3.5,c\n"
SCHEMA = schemas.schema_path("taxi")


def _write(path, name: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    if name.endswith(".parquet"):
        pq.write_table(pa.table({"fare": [1.5, 2.5, 3.5], "company": ["a", "b", "c"]}), str(path / name))
    else:
        (path / name).write_bytes(gzip.compress(CSV) if name.endswith(".gz") else CSV)


@pytest.mark.parametrize("name", ["part.csv", "part.csv.gz", "part.parquet", "PART.CSV"])
@pytest.mark.parametrize("layout", ["folder", "spans"])
def test_monitor_and_replay_read_the_files_ingest_reads(tmp_path, name, layout):
    folder = tmp_path / "data"
    _write(folder / "span-3" if layout == "spans" else folder, name)
    found = inputs.resolve_input(str(folder)).files
    assert [os.path.basename(f) for f in found] == [name]
    assert replay.find_source(str(folder), SCHEMA, None).files == found
    assert inputs.files_under(str(folder)) == list(found)
    result = monitor.run_monitor(str(folder), str(folder))
    assert result["rows"] == {"baseline": 3, "current": 3} and result["drift_detected"] is False


def _unsupported(tmp_path) -> str:
    _write(tmp_path / "data", "part.csv")
    (tmp_path / "data" / "notes.txt").write_text("not data")
    return str(tmp_path / "data")


def _empty(tmp_path) -> str:
    (tmp_path / "data").mkdir()
    return str(tmp_path / "data")


def _same_span_twice(tmp_path) -> str:
    _write(tmp_path / "data" / "span-1", "a.csv")
    _write(tmp_path / "data" / "span-01", "b.csv")
    return str(tmp_path / "data")


def _dangling(tmp_path) -> str:
    _write(tmp_path / "data", "a.csv")
    os.symlink(str(tmp_path / "gone.csv"), str(tmp_path / "data" / "b.csv"))
    return str(tmp_path / "data")


REFUSED = {"missing": lambda tmp_path: str(tmp_path / "nothing-here"), "unsupported": _unsupported,
           "empty": _empty, "same span twice": _same_span_twice, "dangling symlink": _dangling}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_monitor_replay_and_predict_refuse_what_ingest_refuses_with_the_same_words(tmp_path, case):
    data = REFUSED[case](tmp_path)
    with pytest.raises(inputs.InputError) as ingest:
        inputs.resolve_input(data)
    words = str(ingest.value).removeprefix("ingest: ")
    with pytest.raises(profile.MonitorError) as monitored:
        monitor.run_monitor(data, data)
    with pytest.raises(replay.ReplayError) as replayed:
        replay.find_source(data, SCHEMA, None)
    with pytest.raises(UsageError) as predicted:
        predict("taxi", data, str(tmp_path / "serving"), str(tmp_path / "out"))
    named = f"predict: --data {data} does not exist" if case == "missing" else f"predict: --data {data}: {words}"
    assert (str(monitored.value), str(replayed.value), str(predicted.value)) == (
        f"monitor: {words}", f"replay: {words}", named)
