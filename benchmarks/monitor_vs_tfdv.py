"""Benchmark: `flywheel monitor` on 1M vs 1M taxi rows (CSV) against TFDV's statistics path, in one run.

Generates a baseline and a drifted current file by resampling the taxi CSV shipped in tfx, then
times the whole `flywheel monitor` command (wall, peak RSS) and `tfdv.generate_statistics_from_csv`
on the same two files. Targets: monitor <= 6 s wall and <= 1.5 GB peak.
With --spans DIR it times the monitor on DIR/span-1 against DIR/span-2 instead (e.g. written by
`flywheel simulate taxi --out DIR --spans 2 --drift-from 2 --rows 10000000`), to show that memory stays flat.
Usage: python benchmarks/monitor_vs_tfdv.py [--rows N] [--skip-tfdv] [--spans DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv

BIN = os.path.dirname(sys.executable)


def make_data(workdir: str, rows: int) -> tuple[str, str]:
    from flywheel.pipelines.taxi.config import shipped_data

    table = pcsv.read_csv(shipped_data())
    rng = np.random.default_rng(0)
    base = table.take(pa.array(rng.integers(0, table.num_rows, rows)))
    cur = table.take(pa.array(rng.integers(0, table.num_rows, rows)))
    fare = cur.column("fare").to_numpy() * 1.3
    cur = cur.set_column(cur.column_names.index("fare"), "fare", pa.array(fare))
    paths = os.path.join(workdir, "baseline.csv"), os.path.join(workdir, "current.csv")
    pcsv.write_csv(base, paths[0])
    pcsv.write_csv(cur, paths[1])
    return paths


def time_monitor(baseline: str, current: str) -> tuple[float, float, int, list[str]]:
    started = time.monotonic()
    proc = subprocess.run([os.path.join(BIN, "flywheel"), "monitor", "--baseline", baseline, "--current", current,
                           "--json"], capture_output=True, text=True)
    elapsed = time.monotonic() - started
    if proc.returncode not in (0, 1):
        raise SystemExit(f"monitor failed: {proc.stderr}")
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    drifted = [name for name, f in json.loads(proc.stdout)["features"].items() if f["drift"]]
    return elapsed, peak_mb, proc.returncode, drifted


def time_tfdv(baseline: str, current: str) -> float:
    code = ("import sys, tensorflow_data_validation as tfdv\n"
            "for p in sys.argv[1:]: tfdv.generate_statistics_from_csv(p)\n")
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", code, baseline, current], check=True, capture_output=True,
                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--skip-tfdv", action="store_true")
    parser.add_argument("--spans", help="a folder with span-1 and span-2: time the monitor on them, no TFDV")
    args = parser.parse_args()
    if args.spans:
        baseline, current = (os.path.join(args.spans, f"span-{n}") for n in (1, 2))
        wall, peak, status, drifted = time_monitor(baseline, current)
        print(f"flywheel monitor {baseline} vs {current}: {wall:6.1f} s wall, peak {peak:,.0f} MB, exit {status}")
        print(f"drifted features: {', '.join(drifted) or 'none'}")
        return
    workdir = tempfile.mkdtemp(prefix="flywheel-monitor-bench-")
    try:
        baseline, current = make_data(workdir, args.rows)
        size = os.path.getsize(baseline) / 1e6
        wall, peak, status, drifted = time_monitor(baseline, current)
        print(f"rows: {args.rows:,} baseline + {args.rows:,} current (CSV, {size:.0f} MB each)")
        print(f"flywheel monitor (whole command): {wall:6.1f} s wall, peak {peak:,.0f} MB, exit {status} "
              f"(targets: <= 6 s, <= 1,500 MB; exit 1 = drift found)")
        print(f"drifted features: {', '.join(drifted) or 'none'} (expected: fare, the only column changed)")
        if not args.skip_tfdv:
            tfdv_wall = time_tfdv(baseline, current)
            print(f"TFDV generate_statistics_from_csv x2: {tfdv_wall:6.1f} s wall")
            print(f"ratio TFDV / flywheel monitor: {tfdv_wall / wall:.1f}x")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
