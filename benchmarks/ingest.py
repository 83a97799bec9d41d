"""Benchmark: `flywheel ingest` against the floor and stock TFX on the same CSV files, at 1M and 10M rows.

For each size in --rows (default 1,000,000 and 10,000,000), in one run on this machine:
  - the span is written by `flywheel simulate taxi --rows N --files K` (taxi-like rows, K files);
  - the floor: the same files read by pyarrow's C++ CSV reader with the schema's types, encoded to tf.Examples
    by tfx-bsl's C++ encoder (RecordBatchToExamples), written as gzip TFRecords by TensorFlow's writer; one
    process, no checks (no quarantine, no split, no profile, no count);
  - `flywheel ingest`: the same files, with every check (strict value grammar, quarantine, physical row count,
    hash split), in its default engine (Beam's DirectRunner in one process);
  - stock TFX: CsvExampleGen + StatisticsGen in a pipeline of their own on TFX's LocalDagRunner (its default
    Beam engine).
Each is a separate process, timed end to end (start-up included) with the peak memory of its process tree (the
process and all its children, such as Beam workers), sampled every 0.2 s: the largest sum of resident set sizes.
Prints rows/s and each one's ratio to the floor, and the load average before and after. Targets (issue 21):
flywheel >= 50% of the floor's rows/s at 1M and 10M rows, peak memory flat and <= 1.5 GB.
Usage: python benchmarks/ingest.py [--rows 1000000,10000000] [--files 8] [--systems floor,flywheel,tfx]
       [--workdir DIR] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import psutil

BIN = os.path.dirname(sys.executable)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCHEMA = os.path.join(REPO, "schemas", "taxi", "schema.pbtxt")
SYSTEMS = ("floor", "flywheel", "tfx")

_TFX_DRIVER = """
import os, sys
from flywheel import quiet
quiet.quiet_environment(False)
import tfx
quiet.install(False)
from tfx.components import CsvExampleGen, StatisticsGen
from tfx.orchestration import metadata, pipeline
from tfx.orchestration.local.local_dag_runner import LocalDagRunner

data, root = sys.argv[1:3]
examples = CsvExampleGen(input_base=data)
statistics = StatisticsGen(examples=examples.outputs["examples"])
LocalDagRunner().run(pipeline.Pipeline(
    pipeline_name="ingest", pipeline_root=os.path.join(root, "pipeline"), components=[examples, statistics],
    metadata_connection_config=metadata.sqlite_metadata_connection_config(os.path.join(root, "metadata.sqlite")),
    enable_cache=False))
"""


def floor(data: str, out: str, schema_path: str) -> int:
    """The floor, run in its own process: every CSV file of `data` -> typed Arrow batches -> tf.Examples -> one gzip
    TFRecord file per input file. Returns the rows written."""
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import tensorflow as tf
    from tfx_bsl.coders import example_coder

    from flywheel.data import parsing

    columns = parsing.columns_from_schema(parsing.load_schema(schema_path))
    types = {parsing.INT: pa.int64(), parsing.FLOAT: pa.float32(), parsing.BYTES: pa.binary()}
    convert = pcsv.ConvertOptions(column_types={c.name: types[c.kind] for c in columns},
                                  include_columns=[c.name for c in columns], include_missing_columns=True)
    os.makedirs(out, exist_ok=True)
    rows = 0
    for index, name in enumerate(sorted(os.listdir(data))):
        reader = pcsv.open_csv(os.path.join(data, name), read_options=pcsv.ReadOptions(block_size=16 << 20),
                               convert_options=convert)
        options = tf.io.TFRecordOptions(compression_type="GZIP")
        with tf.io.TFRecordWriter(os.path.join(out, f"data_tfrecord-{index:05d}.gz"), options) as writer:
            for batch in reader:
                lists = [_lists(column) for column in batch.columns]
                for example in example_coder.RecordBatchToExamples(
                        pa.RecordBatch.from_arrays(lists, batch.schema.names)):
                    writer.write(example)
                rows += batch.num_rows
    return rows


def _lists(column):
    """One-value lists of a column's values, an empty list for a missing one (tfx-bsl's encoder takes lists)."""
    import numpy as np
    import pyarrow as pa

    offsets = np.zeros(len(column) + 1, dtype=np.int32)
    np.cumsum(np.asarray(column.is_valid()), out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), column.drop_null())


def _tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:  # a worker that ended between listing and reading
            continue
    return total


def measured(cmd: list[str]) -> tuple[float, int, str]:
    """(wall seconds, peak RSS summed over the process tree in bytes, stdout); exits naming the command if it fails."""
    started = time.monotonic()
    errors = tempfile.TemporaryFile("w+")  # a file, not a pipe: a chatty child never blocks on a full pipe
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=errors, text=True)
    watched = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            peak = max(peak, _tree_rss(watched))
        except psutil.Error:
            pass
        time.sleep(0.2)
    elapsed = time.monotonic() - started
    stdout, _ = proc.communicate()
    errors.seek(0)
    if proc.returncode != 0:
        raise SystemExit(f"benchmark: {' '.join(cmd)} failed ({proc.returncode}):\n{stdout}\n{errors.read()[-5000:]}")
    return elapsed, peak, stdout


def make_span(workdir: str, rows: int, files: int) -> tuple[str, float, int]:
    """The span folder of `rows` simulated rows in `files` files; (folder, seconds, peak RSS) of writing it."""
    out = os.path.join(workdir, f"data-{rows}")
    shutil.rmtree(out, ignore_errors=True)
    seconds, peak, _ = measured([os.path.join(BIN, "flywheel"), "simulate", "taxi", "--out", out, "--spans", "1",
                                 "--rows", str(rows), "--files", str(files)])
    return os.path.join(out, "span-1"), seconds, peak


def run_system(system: str, data: str, out: str) -> tuple[float, int, int]:
    """(seconds, peak RSS, rows written) of one system on the span folder `data`."""
    shutil.rmtree(out, ignore_errors=True)
    if system == "floor":
        seconds, peak, stdout = measured([sys.executable, os.path.abspath(__file__), "floor", data, out])
        return seconds, peak, int(stdout.strip().splitlines()[-1])
    if system == "flywheel":
        seconds, peak, stdout = measured([os.path.join(BIN, "flywheel"), "ingest", "--data", data, "--schema", SCHEMA,
                                          "--output-dir", out, "--json"])
        result = json.loads(stdout)
        if result["error"] or result["rows_quarantined"]:
            raise SystemExit(f"benchmark: flywheel ingest did not ingest every row: {result}")
        return seconds, peak, sum(result["rows_written"].values())
    os.makedirs(out, exist_ok=True)
    seconds, peak, _ = measured([sys.executable, "-c", _TFX_DRIVER, data, out])
    return seconds, peak, -1


def _line(name: str, rows: int, seconds: float, peak: int, floor_rate: float | None) -> str:
    rate = rows / seconds
    ratio = f"{rate / floor_rate:6.2f}x the floor" if floor_rate else ""
    return (f"  {name:<10} {rows:>11,} rows {seconds:8.1f} s {rate:10,.0f} rows/s  "
            f"peak RSS {peak / 2**30:5.2f} GB  {ratio}")


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="1000000,10000000", help="span sizes, comma-separated")
    parser.add_argument("--files", type=int, default=8, help="CSV files per span")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help=f"which of {','.join(SYSTEMS)} to run")
    parser.add_argument("--workdir", default="bench_output/ingest", help="spans and outputs (replaced)")
    parser.add_argument("--keep", action="store_true", help="keep the spans and outputs")
    args = parser.parse_args()
    systems = [s for s in args.systems.split(",") if s]
    unknown = sorted(set(systems) - set(SYSTEMS))
    if unknown:
        parser.error(f"--systems: unknown {unknown}; expected some of {list(SYSTEMS)}")
    results = []
    print(f"load average before: {_load()}")
    for rows in (int(r) for r in args.rows.split(",")):
        data, seconds, peak = make_span(args.workdir, rows, args.files)
        print(f"{rows:,} rows in {args.files} files: simulate {seconds:.1f} s, peak RSS {peak / 2**30:.2f} GB")
        floor_rate = None
        for system in systems:
            seconds, peak, written = run_system(system, data, os.path.join(args.workdir, f"{system}-{rows}"))
            if written not in (-1, rows):
                raise SystemExit(f"benchmark: {system} wrote {written:,} rows, expected {rows:,}")
            if system == "floor":
                floor_rate = rows / seconds
            print(_line(system, rows, seconds, peak, floor_rate if system != "floor" else None), flush=True)
            results.append({"system": system, "rows": rows, "seconds": round(seconds, 2), "peak_rss": peak,
                            "rows_per_s": round(rows / seconds), "vs_floor": round(rows / seconds / floor_rate, 3)
                            if floor_rate else None})
            if not args.keep:
                shutil.rmtree(os.path.join(args.workdir, f"{system}-{rows}"), ignore_errors=True)
        if not args.keep:
            shutil.rmtree(os.path.dirname(data), ignore_errors=True)
    print(f"load average after: {_load()}")
    with open(os.path.join(args.workdir, "results.json"), "w") as f:
        json.dump(results, f, indent=2)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "floor":
        print(floor(sys.argv[2], sys.argv[3], SCHEMA))
    else:
        main()
