"""Benchmark: `flywheel predict` vs stock TFX BulkInferrer on the same rows and the same pushed model.

In one run, on this machine:
  - a taxi model is trained and pushed once (`flywheel run taxi`), unless --serving-dir names one;
  - N rows (default 1,000,000) are made from the shipped taxi CSV by repetition, as --files CSV files;
  - `flywheel predict taxi` scores them (each engine in --engines): CSV -> typed rows -> RunInference -> Parquet;
  - stock TFX, the way its users run it: CsvExampleGen -> BulkInferrer (the same model, brought in by an
    Importer, the same examples signature) on the LocalDagRunner, CSV -> tf.Examples -> PredictionLogs.
Each is a separate process, timed end to end (start-up included) with its peak RSS: the largest sum of the
resident memory of the process and all its children (Beam workers), sampled every 0.1 s. Prints rows/s,
peak memory and the ratios. Targets (issue 9): flywheel >= 3x BulkInferrer's rows/s, peak <= 1.5 GB.
Usage: python benchmarks/predict_vs_bulkinferrer.py [--rows N] [--files K] [--engines local,beam]
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
from flywheel.pipelines import quiet
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


def _tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:  # a worker that ended between listing and reading
            pass
    return total


def measured(cmd: list[str], cwd: str, env: dict | None = None) -> tuple[float, int, str]:
    """(wall seconds, peak RSS of the process tree in bytes, stdout); exits naming the command if it fails."""
    started = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})
    watched = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            peak = max(peak, _tree_rss(watched))
        except psutil.Error:
            pass
        time.sleep(0.1)
    elapsed = time.monotonic() - started
    stdout, stderr = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"benchmark: {' '.join(cmd)} failed ({proc.returncode}):\n{stdout}\n{stderr[-5000:]}")
    return elapsed, peak, stdout


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


def _line(name: str, rows: int, seconds: float, peak: int) -> str:
    return f"  {name:<34} {seconds:8.1f} s {rows / seconds:12,.0f} rows/s  peak {peak / 2**30:5.2f} GB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows to score")
    parser.add_argument("--files", type=int, default=8, help="CSV files the rows are split across")
    parser.add_argument("--engines", default="local,beam", help="flywheel predict engines to measure")
    parser.add_argument("--serving-dir", help="serving folder with a pushed taxi model (default: train one)")
    parser.add_argument("--keep", action="store_true", help="keep the working folder")
    args = parser.parse_args()
    from flywheel.batch import served

    workdir = tempfile.mkdtemp(prefix="flywheel-bench-predict-")
    env = {"TF_CPP_MIN_LOG_LEVEL": "3"}
    try:
        serving_dir = args.serving_dir or train_model(workdir)
        model = served.resolve(serving_dir, "taxi")
        data = make_rows(os.path.join(workdir, "data"), args.rows, args.files)
        print(f"benchmark: {args.rows:,} rows in {args.files} CSV files; model taxi version {model.version} "
              f"(signature {model.signature}); {os.cpu_count()} CPUs", flush=True)
        results = {}
        for engine in [e for e in args.engines.split(",") if e]:
            out = os.path.join(workdir, f"predict-{engine}")
            seconds, peak, stdout = measured(
                [os.path.join(BIN, "flywheel"), "predict", "taxi", "--data", data, "--serving-dir", serving_dir,
                 "--output", out, "--engine", engine, "--json"], REPO, env)
            scored = json.loads(stdout)["rows_scored"]
            if scored != args.rows:
                raise SystemExit(f"benchmark: flywheel predict scored {scored:,} rows, expected {args.rows:,}")
            results[f"flywheel predict --engine {engine}"] = (seconds, peak)
            print(_line(f"flywheel predict --engine {engine}", args.rows, seconds, peak), flush=True)
        # BulkInferrer reads a Model artifact's <uri>/Format-Serving (serving_model_dir for older artifacts).
        model_uri = os.path.join(workdir, "model")
        os.makedirs(model_uri)
        for name in ("Format-Serving", "serving_model_dir"):
            os.symlink(model.path, os.path.join(model_uri, name))
        driver = os.path.join(workdir, "stock_driver.py")
        with open(driver, "w") as f:
            f.write(_STOCK_DRIVER)
        stock_root = os.path.join(workdir, "stock")
        seconds, peak, stdout = measured([sys.executable, driver, data, model_uri, model.signature, stock_root],
                                         REPO, env)
        parts = {m.group(1): float(m.group(2)) for m in _DONE.finditer(stdout)}
        results["TFX CsvExampleGen -> BulkInferrer"] = (seconds, peak)
        print(_line("TFX CsvExampleGen -> BulkInferrer", args.rows, seconds, peak)
              + f"  (CsvExampleGen {parts.get('CsvExampleGen', 0):.1f} s, "
                f"BulkInferrer {parts.get('BulkInferrer', 0):.1f} s)", flush=True)
        stock = results["TFX CsvExampleGen -> BulkInferrer"][0]
        for name, (seconds, peak) in results.items():
            if name.startswith("flywheel"):
                print(f"  {name}: {stock / seconds:.2f}x BulkInferrer's rows/s (target >= 3x), peak "
                      f"{peak / 2**30:.2f} GB (target <= 1.5 GB)")
    finally:
        if args.keep:
            print(f"benchmark: working folder kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
