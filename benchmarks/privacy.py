"""Benchmark: k-anonymity and l-diversity of 1M rows x 4 quasi-identifiers, flywheel against pyCANON.

Two tables of 1,000,000 rows, in one run on this machine:
  - simulated taxi rows (`flywheel simulate taxi`, resampled from the shipped 15,002: many rows repeat one),
    quasi-identifiers pickup latitude/longitude (0.01 degree bins), the start time (hour bins) and the company,
    sensitive attribute payment_type;
  - random rows with as many quasi-identifiers (two normal coordinates in 0.01 bins, an hour of a year, one of
    60 companies): most classes hold one row, the worst case for a per-class loop.
For each: flywheel's measure() (k, l, the smallest classes; then also the single changes and the generalization
plan) and pyCANON's k_anonymity and l_diversity on the same generalized table as a pandas DataFrame (the
conversion not counted). Each time is the best of --repeat runs; pyCANON is stopped after --limit seconds and
reported as "more than". Prints k and l (equal, or the run fails), the times and the load average before and after.
Usage: python benchmarks/privacy.py [--rows 1000000] [--repeat 3] [--limit 600] [--tables taxi,random]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import tempfile
import time

import numpy as np
import pyarrow as pa
import pycanon.anonymity

from flywheel.pipelines.taxi.simulate import simulate_spans
from flywheel.privacy import anonymity, data, policy

QUASI = {"pickup_latitude": 0.01, "pickup_longitude": 0.01, "trip_start_timestamp": 3600, "company": None}


def bench_policy() -> policy.Policy:
    columns = {name: {"role": "quasi_identifier", "reason": "benchmark", **({"bin": b} if b else {})}
               for name, b in QUASI.items()}
    columns["payment_type"] = {"role": "sensitive", "reason": "benchmark"}
    return policy.parse({"format": policy.FORMAT, "thresholds": {"k": 5, "l": 2}, "columns": columns}, "benchmark")


def taxi_table(rows: int, folder: str) -> pa.Table:
    simulate_spans(folder, spans=1, drift_from=None, rows=rows, seed=0)
    return data.read(folder, bench_policy())[0]


def random_table(rows: int) -> pa.Table:
    rng = np.random.default_rng(0)
    return pa.table({"pickup_latitude": rng.normal(41.9, 0.05, rows), "pickup_longitude": rng.normal(-87.7, 0.05, rows),
                     "trip_start_timestamp": rng.integers(1_400_000_000, 1_400_000_000 + 365 * 86400, rows)
                     .astype(np.float64),
                     "company": pa.array(rng.integers(0, 60, rows).astype(str)),
                     "payment_type": pa.array(rng.choice(["Cash", "Credit Card", "No Charge"], rows))})


def best(repeat: int, fn) -> tuple[float, object]:
    times, found = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        found = fn()
        times.append(time.perf_counter() - start)
    return min(times), found


def _pycanon(frame, quasi, sensitive, out) -> None:
    start = time.perf_counter()
    k = pycanon.anonymity.k_anonymity(frame, quasi)
    middle = time.perf_counter()
    out.put((k, middle - start, pycanon.anonymity.l_diversity(frame, quasi, sensitive), time.perf_counter() - middle))


def pycanon_times(table: pa.Table, found_policy: policy.Policy, limit: float) -> dict:
    generalized = anonymity.generalize(table, found_policy)
    frame = pa.table({n: generalized.column(n).cast(pa.string()).fill_null("(missing)")
                      for n in generalized.column_names}).to_pandas()
    out = multiprocessing.get_context("fork").Queue()
    child = multiprocessing.get_context("fork").Process(
        target=_pycanon, args=(frame, [c.name for c in found_policy.quasi_identifiers], list(found_policy.sensitive),
                               out))
    child.start()
    child.join(limit)
    if child.is_alive():
        child.kill()
        child.join()
        return {"stopped_after_s": limit}
    k, k_s, l_value, l_s = out.get()
    return {"k": k, "l": l_value, "k_s": round(k_s, 2), "l_s": round(l_s, 2)}


def run(name: str, table: pa.Table, repeat: int, limit: float) -> dict:
    found_policy = bench_policy()
    measure_s, found = best(repeat, lambda: anonymity.measure(table, found_policy, suggest=False))
    suggest_s, _ = best(repeat, lambda: anonymity.measure(table, found_policy))
    oracle = pycanon_times(table, found_policy, limit)
    result = {"table": name, "rows": table.num_rows, "classes": found.classes, "k": found.k, "l": found.l,
              "flywheel_s": round(measure_s, 3), "flywheel_with_plan_s": round(suggest_s, 3), "pycanon": oracle}
    if "k" in oracle and (oracle["k"], oracle["l"]) != (found.k, found.l):
        raise SystemExit(f"{name}: flywheel k={found.k} l={found.l}, pyCANON k={oracle['k']} l={oracle['l']}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--limit", type=float, default=600.0, help="seconds pyCANON may take per table")
    parser.add_argument("--tables", default="taxi,random")
    args = parser.parse_args()
    print(json.dumps({"load_before": os.getloadavg()}))
    with tempfile.TemporaryDirectory() as folder:
        for name in args.tables.split(","):
            table = taxi_table(args.rows, folder) if name == "taxi" else random_table(args.rows)
            print(json.dumps(run(name, table, args.repeat, args.limit)), flush=True)
    print(json.dumps({"load_after": os.getloadavg()}))


if __name__ == "__main__":
    main()
