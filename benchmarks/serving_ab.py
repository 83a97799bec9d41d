"""Benchmark: two builds of `flywheel serve` against each other, interleaved, to tell a code change from the machine.

Starts both servers on one serving folder, then runs wrk's concurrency-1 one-row load on each for `--duration`
seconds, alternating A/B and B/A for `--rounds` rounds, so that whatever else the machine does falls on both alike.
Prints each round's p50, the medians, requests/s, and in how many rounds B was the slower one. A build is a
`flywheel` command: another checkout's virtualenv (`git worktree add ../before <commit>`, then `make venv` there)
against this one's.
Usage: python benchmarks/serving_ab.py FLYWHEEL_A FLYWHEEL_B --serving-dir DIR [--model taxi] [--rounds 10]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import socket
import statistics
import subprocess
import tempfile
import time

ROW = ('{"instances": [{"trip_miles": 1.2, "fare": 8.5, "trip_seconds": 600, "pickup_latitude": 41.9, '
       '"pickup_longitude": -87.6, "trip_start_hour": 14, "trip_start_day": 3, "trip_start_month": 5, '
       '"payment_type": "Cash"}]}')
WRK_SCRIPT = 'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = [[{body}]]\n'
READY_SECONDS = 120


@dataclasses.dataclass
class Side:
    name: str
    command: str
    port: int = 0
    process: subprocess.Popen | None = None
    p50_ms: list[float] = dataclasses.field(default_factory=list)
    requests_per_s: list[float] = dataclasses.field(default_factory=list)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(side: Side, serving_dir: str, model: str) -> None:
    """Starts the side's server and returns once it has printed its `ready` line (or fails naming its output)."""
    side.port = free_port()
    side.process = subprocess.Popen([side.command, "serve", "--serving-dir", serving_dir, "--model", model,
                                     "--port", str(side.port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True)
    deadline = time.monotonic() + READY_SECONDS
    seen = []
    for line in side.process.stdout:
        seen.append(line)
        if "ready:" in line:
            return
        if time.monotonic() > deadline:
            break
    side.process.kill()
    raise SystemExit(f"serving ab: {side.name} ({side.command}) did not say ready:\n{''.join(seen)}")


def measure(side: Side, script: str, model: str, duration: int) -> None:
    url = f"http://127.0.0.1:{side.port}/v1/models/{model}:predict"
    out = subprocess.run(["wrk", "-t1", "-c1", f"-d{duration}", "-s", script, "--latency", url],
                         capture_output=True, text=True, check=True).stdout
    p50 = re.search(r"50%\s+([\d.]+)(us|ms)", out)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if p50 is None or rate is None or "Non-2xx" in out:
        raise SystemExit(f"serving ab: wrk on {side.name} printed no latency or had failed requests:\n{out}")
    side.p50_ms.append(float(p50.group(1)) * (0.001 if p50.group(2) == "us" else 1.0))
    side.requests_per_s.append(float(rate.group(1)))


def report(a: Side, b: Side) -> None:
    for side in (a, b):
        rounds = ", ".join(f"{v:.3f}" for v in side.p50_ms)
        print(f"{side.name}: p50 median {statistics.median(side.p50_ms):.3f} ms (rounds {rounds}); "
              f"{statistics.median(side.requests_per_s):,.0f} req/s")
    slower = sum(pb > pa for pa, pb in zip(a.p50_ms, b.p50_ms, strict=True))
    ratio = statistics.median(b.p50_ms) / statistics.median(a.p50_ms)
    print(f"B/A p50: {ratio:.3f}x; B slower in {slower} of {len(a.p50_ms)} rounds")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", help="build A's `flywheel` command")
    parser.add_argument("b", help="build B's `flywheel` command")
    parser.add_argument("--serving-dir", required=True)
    parser.add_argument("--model", default="taxi")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--duration", type=int, default=3, help="seconds of load per side per round")
    args = parser.parse_args()
    a, b = Side("A", args.a), Side("B", args.b)
    with tempfile.TemporaryDirectory(prefix="serving-ab-") as work:
        script = os.path.join(work, "post.lua")
        with open(script, "w") as f:
            f.write(WRK_SCRIPT.format(body=ROW))
        try:
            for side in (a, b):
                start(side, args.serving_dir, args.model)
            for r in range(args.rounds):
                for side in ((a, b) if r % 2 == 0 else (b, a)):
                    measure(side, script, args.model, args.duration)
        finally:
            for side in (a, b):
                if side.process is not None:
                    side.process.terminate()
                    side.process.wait(timeout=60)
    report(a, b)


if __name__ == "__main__":
    main()
