"""Benchmark: `flywheel predict` vs stock TFX BulkInferrer on the same rows and the same pushed model.

In one run, on this machine:
  - a taxi model is trained and pushed once (`flywheel run taxi`), unless --serving-dir names one;
  - N rows (default 1,000,000) are made from the shipped taxi CSV by repetition, as --files CSV files;
  - `flywheel predict taxi` scores them (each engine in --engines): CSV -> typed rows -> RunInference -> Parquet;
  - stock TFX, the way its users run it: CsvExampleGen -> BulkInferrer (the same model, brought in by an
    Importer, the same examples signature) on the LocalDagRunner, CSV -> tf.Examples -> PredictionLogs.
Each is a separate process, timed end to end (start-up included) with the peak memory of its process tree
(the process and all its children: Beam workers), sampled every 0.2 s, two ways: the largest sum of resident
set sizes (RSS: a page shared by several processes, such as TensorFlow's library code, counts once per
process) and the largest sum of proportional set sizes (PSS: a shared page split among its sharers, so the
sum is the physical memory the tree holds). Each flywheel engine also scores --memory-rows rows, to show its
peak does not grow with the span. BulkInferrer is measured at --stock-rows rows (default: --rows) when 1M
rows would take it too long; rows/s is compared, each at its own size. Prints the load average before and
after. Targets (issue 9): flywheel >= 3x BulkInferrer's rows/s, peak <= 1.5 GB, flat as the span grows.
--stock-rows 0 skips BulkInferrer (to measure one flywheel engine at one size, e.g. `--engines beam --rows 250000
--memory-rows 0 --stock-rows 0`): no ratio is printed then.
Usage: python benchmarks/predict_vs_bulkinferrer.py [--rows N] [--memory-rows M] [--stock-rows S] [--files K]
       [--engines local,beam] [--serving-dir DIR]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import psutil

BIN = os.path.dirname(sys.executable)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_DONE = re.compile(r"✓ (\S+) ([\d.]+) s")

_STOCK_DRIVER = """
import os, sys
from flywheel import quiet
quiet.quiet_environment(False)
import tfx
quiet.install(False)
from tfx.components import BulkInferrer, CsvExampleGen
from tfx.dsl.components.common.importer import Importer
from tfx.orchestration import metadata, pipeline
from tfx.orchestration.local.local_dag_runner import LocalDagRunner
from tfx.proto import bulk_inferrer_pb2
from tfx.types import standard_artifacts

data, model, signature, root = sys.argv[1:5]
examples = CsvExampleGen(input_base=data)
imported = Importer(source_uri=model, artifact_type=standard_artifacts.Model).with_id("ImportModel")
inferrer = BulkInferrer(examples=examples.outputs["examples"], model=imported.outputs["result"],
                        data_spec=bulk_inferrer_pb2.DataSpec(),
                        model_spec=bulk_inferrer_pb2.ModelSpec(model_signature_name=[signature]))
LocalDagRunner().run(pipeline.Pipeline(
    pipeline_name="bulk", pipeline_root=os.path.join(root, "pipeline"), components=[examples, imported, inferrer],
    metadata_connection_config=metadata.sqlite_metadata_connection_config(os.path.join(root, "metadata.sqlite")),
    enable_cache=False))
"""


def _tree_memory(proc: psutil.Process) -> tuple[int, int]:
    """(sum of RSS, sum of PSS) in bytes over the process and its children."""
    rss = pss = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            info = p.memory_full_info()
        except psutil.Error:  # a worker that ended between listing and reading
            continue
        rss, pss = rss + info.rss, pss + info.pss
    return rss, pss


def measured(cmd: list[str], cwd: str, env: dict | None = None) -> tuple[float, tuple[int, int], str]:
    """(wall seconds, (peak RSS sum, peak PSS sum) of the process tree in bytes, stdout); exits naming the
    command if it fails."""
    started = time.monotonic()
    errors = tempfile.TemporaryFile("w+")  # a file, not a pipe: a chatty child never blocks on a full pipe
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=errors, text=True,
                            env={**os.environ, **(env or {})})
    watched = psutil.Process(proc.pid)
    peak_rss = peak_pss = 0
    while proc.poll() is None:
        try:
            rss, pss = _tree_memory(watched)
            peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
        except psutil.Error:
            pass
        time.sleep(0.2)
    elapsed = time.monotonic() - started
    stdout, _ = proc.communicate()
    errors.seek(0)
    stderr = errors.read()
    if proc.returncode != 0:
        raise SystemExit(f"benchmark: {' '.join(cmd)} failed ({proc.returncode}):\n{stdout}\n{stderr[-5000:]}")
    return elapsed, (peak_rss, peak_pss), stdout


def make_rows(folder: str, rows: int, files: int) -> str:
    """`rows` data rows of the shipped taxi CSV, repeated as needed, split across `files` CSV files."""
    from flywheel.pipelines.taxi.config import shipped_data

    with open(shipped_data(), newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        body = list(reader)
    os.makedirs(folder, exist_ok=True)
    per_file = -(-rows // files)
    written = 0
    for index in range(files):
        count = min(per_file, rows - written)
        with open(os.path.join(folder, f"part-{index:03d}.csv"), "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            for i in range(written, written + count):
                writer.writerow(body[i % len(body)])
        written += count
    return folder


def train_model(workdir: str) -> str:
    out = os.path.join(workdir, "train")
    subprocess.run([os.path.join(BIN, "flywheel"), "run", "taxi", "--train-steps", "200", "--output-dir", out],
                   check=True, capture_output=True, cwd=REPO)
    return os.path.join(out, "serving")


def _line(name: str, rows: int, seconds: float, peak: tuple[int, int]) -> str:
    return (f"  {name:<34} {rows:>9,} rows {seconds:8.1f} s {rows / seconds:10,.0f} rows/s  "
            f"peak RSS {peak[0] / 2**30:5.2f} GB, PSS {peak[1] / 2**30:5.2f} GB")


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def predict(engine: str, data: str, rows: int, serving_dir: str, out: str, env: dict):
    seconds, peak, stdout = measured(
        [os.path.join(BIN, "flywheel"), "predict", "taxi", "--data", data, "--serving-dir", serving_dir,
         "--output", out, "--engine", engine, "--json"], REPO, env)
    scored = json.loads(stdout)["rows_scored"]
    if scored != rows:
        raise SystemExit(f"benchmark: flywheel predict scored {scored:,} rows, expected {rows:,}")
    print(_line(f"flywheel predict --engine {engine}", rows, seconds, peak), flush=True)
    return seconds, peak


def bulk_inferrer(workdir: str, model, data: str, rows: int, env: dict) -> float:
    """Stock TFX (CsvExampleGen -> BulkInferrer, LocalDagRunner) on `data`, timed in its own process; its rows/s."""
    # BulkInferrer reads a Model artifact's <uri>/Format-Serving (serving_model_dir for older artifacts).
    model_uri = os.path.join(workdir, "model")
    os.makedirs(model_uri)
    for name in ("Format-Serving", "serving_model_dir"):
        os.symlink(model.path, os.path.join(model_uri, name))
    driver = os.path.join(workdir, "stock_driver.py")
    with open(driver, "w") as f:
        f.write(_STOCK_DRIVER)
    seconds, peak, stdout = measured(
        [sys.executable, driver, data, model_uri, model.signature, os.path.join(workdir, "stock")], REPO, env)
    parts = {m.group(1): float(m.group(2)) for m in _DONE.finditer(stdout)}
    print(_line("TFX CsvExampleGen -> BulkInferrer", rows, seconds, peak)
          + f"  (CsvExampleGen {parts.get('CsvExampleGen', 0):.1f} s, "
            f"BulkInferrer {parts.get('BulkInferrer', 0):.1f} s)", flush=True)
    return rows / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows to score")
    parser.add_argument("--memory-rows", type=int, default=250_000,
                        help="each engine also scores this many rows: its peak memory should not grow (0: skip)")
    parser.add_argument("--stock-rows", type=int, help="rows BulkInferrer scores (default: --rows; 0: skip it)")
    parser.add_argument("--files", type=int, default=8, help="CSV files the rows are split across")
    parser.add_argument("--engines", default="local,beam", help="flywheel predict engines to measure")
    parser.add_argument("--serving-dir", help="serving folder with a pushed taxi model (default: train one)")
    parser.add_argument("--keep", action="store_true", help="keep the working folder")
    args = parser.parse_args()
    from flywheel.batch import model_version

    stock_rows = args.rows if args.stock_rows is None else args.stock_rows
    workdir = tempfile.mkdtemp(prefix="flywheel-bench-predict-")
    env = {"TF_CPP_MIN_LOG_LEVEL": "3"}
    try:
        serving_dir = args.serving_dir or train_model(workdir)
        model = model_version.resolve(serving_dir, "taxi")
        sizes = sorted({args.rows, *([stock_rows] if stock_rows else []),
                        *([args.memory_rows] if args.memory_rows else [])})
        data = {n: make_rows(os.path.join(workdir, f"data-{n}"), n, args.files) for n in sizes}
        stock = f"{stock_rows:,}" if stock_rows else "0 = skipped"
        print(f"benchmark: {args.rows:,} rows in {args.files} CSV files (memory check at {args.memory_rows:,}, "
              f"BulkInferrer at {stock}); model taxi version {model.version} (signature "
              f"{model.signature}); {os.cpu_count()} CPUs; load average {_load()}", flush=True)
        results, flat = {}, {}
        engines = [e for e in args.engines.split(",") if e]
        for engine in engines:
            results[engine] = predict(engine, data[args.rows], args.rows, serving_dir,
                                      os.path.join(workdir, f"predict-{engine}"), env)
        for engine in engines if args.memory_rows and args.memory_rows != args.rows else ():
            flat[engine] = predict(engine, data[args.memory_rows], args.memory_rows, serving_dir,
                                   os.path.join(workdir, f"predict-{engine}-{args.memory_rows}"), env)[1]
        stock_rate = bulk_inferrer(workdir, model, data[stock_rows], stock_rows, env) if stock_rows else None
        for engine, (seconds, peak) in results.items():
            ratio = (f"{args.rows / seconds / stock_rate:.2f}x BulkInferrer's rows/s (target >= 3x); "
                     if stock_rate else "")
            print(f"  flywheel predict --engine {engine}: {ratio}peak RSS {peak[0] / 2**30:.2f} GB, "
                  f"PSS {peak[1] / 2**30:.2f} GB (target <= 1.5 GB)", flush=True)
            if engine in flat:
                print(f"    memory as the span grows: {args.memory_rows:,} rows RSS {flat[engine][0] / 2**30:.2f} GB "
                      f"PSS {flat[engine][1] / 2**30:.2f} GB; {args.rows:,} rows RSS {peak[0] / 2**30:.2f} GB "
                      f"PSS {peak[1] / 2**30:.2f} GB", flush=True)
        print(f"benchmark: load average at the end {_load()}")
    finally:
        if args.keep:
            print(f"benchmark: working folder kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
