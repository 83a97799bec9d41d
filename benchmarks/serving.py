"""Benchmark: `flywheel serve` against the in-process floor and KServe's Python model server, in one run.

On one pushed taxi model (a small one is trained with the library unless --serving-dir names a serving
folder), measures and prints:
- floor: the SavedModel's `serving_examples` signature called in-process on serialized tf.Examples of
  the issue's JSON row (p50 of 1-row calls; rows/s of 512-row calls); with `--rounds` above 1, the floor
  and flywheel serve's concurrency-1 and 512-row loads run in rounds, one after the other, and the 512-row
  figure is the median over rounds of flywheel serve's rows/s as a share of the floor's in the same round;
- peer: KServe's Python model server (V1 protocol, TF Serving's REST shape) with a custom predictor
  written the way a KServe user writes one (JSON rows -> tf.Example -> signature), run from its own
  virtualenv (KServe needs protobuf 6, which TFX 1.16 cannot share), created on first use under the
  cache folder;
- flywheel serve as real processes, plain and with --log-dir (every request logged): for the concurrency-32
  load, `--processes` of each side by side, `--rounds` rounds of one run on each, and the log's cost is the
  median over rounds of the logging processes' requests/s as a share of the plain ones' in the same round,
  so that it is not what else the machine did during one run, nor one process's luck;
under load from wrk (Debian package `wrk`) posting the JSON body: concurrency 1 and 32 with one row,
and 512-row requests. wrk's latency percentiles and requests/s; every non-2xx answer or socket
error counts as a failed request.
Usage: python benchmarks/serving.py [--serving-dir DIR] [--duration S] [--rounds N] [--processes N] [--skip-peer]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from typing import Optional

from flywheel import quiet

BIN = os.path.dirname(sys.executable)
MODEL = "taxi"
ROW = {"trip_miles": 1.2, "fare": 8.5, "trip_seconds": 600, "pickup_latitude": 41.9, "pickup_longitude": -87.6,
       "trip_start_hour": 14, "trip_start_day": 3, "trip_start_month": 5, "payment_type": "Cash"}
FLOAT_FEATURES = ("trip_miles", "fare", "pickup_latitude", "pickup_longitude")
BIG_ROWS = 512
BIG_CONCURRENCY = 1  # one 512-row request at a time, as the floor makes one 512-row call at a time
PEER_REQUIREMENTS = ("kserve==0.21.*", "tensorflow-cpu==2.21.*")
GOALS = {"c1_p50_ms": 1.0, "c32_vs_peer": 3.0, "c32_p99_ms": 50.0, "big_vs_floor": 0.5, "log_cost": 0.10}

# The peer: a KServe custom predictor as its documentation shows one (kserve.Model with load/predict),
# turning each JSON row into a tf.Example for the model's serialized-examples signature.
PEER_PREDICTOR = '''
import argparse

import kserve
import tensorflow as tf

FLOAT_FEATURES = {floats!r}


def to_example(row):
    feature = {{}}
    for name, value in row.items():
        if isinstance(value, str):
            feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode()]))
        elif name in FLOAT_FEATURES:
            feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=[value]))
        else:
            feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
    return tf.train.Example(features=tf.train.Features(feature=feature))


class TaxiModel(kserve.Model):
    def __init__(self, name, model_dir):
        super().__init__(name)
        self.model_dir = model_dir
        self.load()

    def load(self):
        self.model = tf.saved_model.load(self.model_dir)
        self.predict_fn = self.model.signatures["serving_examples"]
        self.ready = True
        return self.ready

    def predict(self, payload, headers=None):
        examples = [to_example(row).SerializeToString() for row in payload["instances"]]
        outputs = self.predict_fn(examples=tf.constant(examples))
        return {{"predictions": outputs["outputs"].numpy().tolist()}}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(parents=[kserve.model_server.parser])
    parser.add_argument("--model_dir", required=True)
    args, _ = parser.parse_known_args()
    kserve.ModelServer().start([TaxiModel(args.model_name, args.model_dir)])
'''.format(floats=FLOAT_FEATURES)

WRK_SCRIPT = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = assert(io.open({path!r}, "rb"))
wrk.body = f:read("*a")
f:close()
"""


@dataclasses.dataclass
class Load:
    """One wrk run: percentiles in ms, requests/s, rows per request, failed requests (non-2xx + socket errors)."""

    name: str
    concurrency: int
    rows: int
    requests: int = 0
    rps: float = 0.0
    p50: float = 0.0
    p90: float = 0.0
    p99: float = 0.0
    failed: int = 0

    @property
    def rows_per_s(self) -> float:
        return self.rps * self.rows

    def line(self) -> str:
        return (f"  {self.name:<34} c={self.concurrency:<3} {self.rps:9,.0f} req/s {self.rows_per_s:10,.0f} rows/s  "
                f"p50 {self.p50:7.2f} ms  p90 {self.p90:7.2f} ms  p99 {self.p99:7.2f} ms  failed {self.failed}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(number) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]


def parse_wrk(output: str, load: Load) -> Load:
    """Fills `load` from wrk --latency output; raises naming the line wrk did not print."""
    percentiles = dict(re.findall(r"^\s+(50|90|99)%\s+(\S+)\s*$", output, re.M))
    total = re.search(r"^\s+(\d+) requests in", output, re.M)
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    if len(percentiles) != 3 or total is None or rps is None:
        raise RuntimeError(f"serving bench: wrk printed no latency distribution or Requests/sec:\n{output}")
    load.p50, load.p90, load.p99 = (_ms(percentiles[p]) for p in ("50", "90", "99"))
    load.requests, load.rps = int(total.group(1)), float(rps.group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    load.failed = (int(non2xx.group(1)) if non2xx else 0) + (sum(map(int, socket_errors.groups()))
                                                             if socket_errors else 0)
    if load.requests == 0:
        raise RuntimeError(f"serving bench: {load.name} answered no request in the whole run:\n{output}")
    return load


def body(rows: int) -> bytes:
    return json.dumps({"instances": [ROW] * rows}).encode()


class Wrk:
    def __init__(self, workdir: str, duration: float, threads: int):
        self.workdir, self.duration, self.threads = workdir, duration, threads
        self.scripts: dict[int, str] = {}

    def script(self, rows: int) -> str:
        if rows not in self.scripts:
            data = os.path.join(self.workdir, f"body-{rows}.json")
            with open(data, "wb") as f:
                f.write(body(rows))
            path = self.scripts[rows] = os.path.join(self.workdir, f"post-{rows}.lua")
            with open(path, "w") as f:
                f.write(WRK_SCRIPT.format(path=data))
        return self.scripts[rows]

    def run(self, name: str, url: str, concurrency: int, rows: int) -> Load:
        threads = min(self.threads, concurrency)
        base = ["wrk", "-t", str(threads), "-c", str(concurrency), "-s", self.script(rows), "--latency",
                "--timeout", "10s"]
        subprocess.run([*base, "-d", "2s", url], check=True, capture_output=True)  # warm-up, not counted
        proc = subprocess.run([*base, "-d", f"{self.duration:g}s", url], check=True, capture_output=True, text=True)
        return parse_wrk(proc.stdout, Load(name, concurrency, rows))


def check_wrk() -> None:
    if shutil.which("wrk") is None:
        raise SystemExit("serving bench: wrk is not installed. It is a Debian/Ubuntu package: "
                         "`sudo apt-get install -y wrk` (macOS: `brew install wrk`).")


# ---- the model ---------------------------------------------------------------------------------------------------

def train_model(workdir: str) -> str:
    """A small taxi model trained and pushed by the library's own pipeline; returns its serving folder."""
    from flywheel.api.pipeline import FINISHED, UP_TO_DATE, run_pipeline
    from flywheel.pipelines.taxi.config import Paths, TaxiConfig

    out = os.path.join(workdir, "pipeline")
    print(f"training a small taxi model under {out} (a few minutes)...", file=sys.stderr, flush=True)
    # As `flywheel run` does: TensorFlow, Beam and absl quiet, one progress line per component (on stderr).
    result = run_pipeline(TaxiConfig(paths=Paths.under(out), train_steps=200, eval_steps=20, min_auc=0.01,
                                         max_auc_drop=1.0), "local", progress=sys.stderr)
    if result.status not in (FINISHED, UP_TO_DATE):
        raise SystemExit(f"serving bench: training the small taxi model {result.status}: {result.error or ''}")
    return os.path.join(out, "serving")


def latest_version(serving_dir: str) -> str:
    from flywheel.store import layout

    latest = layout.latest(serving_dir, MODEL)
    if latest is None:
        raise SystemExit(f"serving bench: no pushed {MODEL} version under {serving_dir}/{MODEL}/")
    return latest.path


# ---- floor -------------------------------------------------------------------------------------------------------

def serialized_row() -> bytes:
    import tensorflow as tf

    feature = {}
    for name, value in ROW.items():
        if isinstance(value, str):
            feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode()]))
        elif name in FLOAT_FEATURES:
            feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=[value]))
        else:
            feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


class Floor:
    """The examples signature, loaded once, called in-process: `p50(seconds)` of 1-row calls, `rows_per_s(seconds)`
    of 512-row calls one after another (rows over wall time, as wrk's figures for the servers are)."""

    def __init__(self, version_path: str):
        import tensorflow as tf

        self.fn = tf.saved_model.load(version_path).signatures["serving_examples"]
        self.one, self.big = tf.constant([serialized_row()]), tf.constant([serialized_row()] * BIG_ROWS)

    def _warm(self, examples) -> None:
        for _ in range(20):
            self.fn(examples=examples)["outputs"].numpy()

    def p50(self, seconds: float) -> float:
        self._warm(self.one)
        out, deadline = [], time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            self.fn(examples=self.one)["outputs"].numpy()
            out.append(time.perf_counter() - started)
        return statistics.median(out) * 1000.0

    def rows_per_s(self, seconds: float) -> float:
        self._warm(self.big)
        calls, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            self.fn(examples=self.big)["outputs"].numpy()
            calls += 1
        return BIG_ROWS * calls / (time.perf_counter() - started)

    def measure(self, seconds: float) -> tuple[float, float]:
        return self.p50(seconds), self.rows_per_s(seconds)


def floor_rounds(wrk: Wrk, floor: Floor, base: str, rounds: int,
                 seconds: float) -> tuple[dict[str, Load], float, float, list[float]]:
    """The floor and flywheel serve's 1-row concurrency-1 and 512-row loads, `rounds` times in a row; in each round
    the floor's 512-row rate is measured right before and right after flywheel serve's. Returns ({"c1", "big"}: the
    median of each load's runs, the floor's median p50 and rows/s, for each round the 512-row rows/s as a share of
    the mean of the floor's two measurements around it): a share taken within one round sees the machine as the
    floor saw it, and its median over rounds is the comparison (this machine's speed drifts by tens of percent
    within minutes, the floor's with it)."""
    url = f"{base}/v1/models/{MODEL}:predict"
    runs: dict[str, list[Load]] = {"c1": [], "big": []}
    p50s, floors, shares = [], [], []
    for round_ in range(rounds):
        p50s.append(floor.p50(seconds))
        runs["c1"].append(wrk.run("flywheel serve, 1 row", url, 1, 1))
        before = floor.rows_per_s(seconds)
        runs["big"].append(wrk.run(f"flywheel serve, {BIG_ROWS} rows", url, BIG_CONCURRENCY, BIG_ROWS))
        after = floor.rows_per_s(seconds)
        floors.append((before + after) / 2)
        shares.append(runs["big"][-1].rows_per_s / floors[-1])
        print(f"  round {round_ + 1}: floor 1 row p50 {p50s[-1]:.3f} ms, {BIG_ROWS} rows {before:,.0f} then "
              f"{after:,.0f} rows/s; flywheel serve c=1 p50 {runs['c1'][-1].p50:.2f} ms, {BIG_ROWS} rows "
              f"{runs['big'][-1].rows_per_s:,.0f} rows/s = {shares[-1]:.0%} of the floor", flush=True)
    loads = {name: median_load(r) for name, r in runs.items()}
    for name, load in loads.items():
        print(f"{load.line()}  (median of {len(runs[name])} runs)", flush=True)
    return loads, statistics.median(p50s), statistics.median(floors), shares


# ---- servers -----------------------------------------------------------------------------------------------------

def wait_ready(proc: subprocess.Popen, url: str, name: str, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            with open(proc.log_path, errors="replace") as log:
                raise SystemExit(f"serving bench: {name} did not come up at {url} (exit {proc.poll()}); the end of "
                                 f"{proc.log_path}:\n{log.read()[-3000:]}")
        time.sleep(0.5)


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def peer_python(cache_dir: str) -> str:
    """The KServe virtualenv's python, created on first use (python3.10 -m venv + pip) under cache_dir."""
    venv = os.path.join(cache_dir, "kserve-venv")
    python = os.path.join(venv, "bin", "python")
    stamp = os.path.join(venv, ".installed")
    wanted = " ".join(PEER_REQUIREMENTS)
    if os.path.exists(stamp) and open(stamp).read() == wanted:
        return python
    base = os.path.join(sys.base_prefix, "bin", "python3.10")
    base = base if os.path.exists(base) else shutil.which("python3.10")
    if base is None:
        raise SystemExit("serving bench: the KServe peer needs python3.10 to create its virtualenv")
    print(f"creating the KServe virtualenv at {venv} ({wanted}; a few minutes)...", file=sys.stderr, flush=True)
    subprocess.run([base, "-m", "venv", venv], check=True)
    subprocess.run([python, "-m", "pip", "install", "-q", *PEER_REQUIREMENTS], check=True)
    with open(stamp, "w") as f:
        f.write(wanted)
    return python


def start_peer(python: str, workdir: str, version_path: str) -> tuple[subprocess.Popen, str]:
    script = os.path.join(workdir, "kserve_taxi.py")
    with open(script, "w") as f:
        f.write(PEER_PREDICTOR)
    port = _free_port()
    # One worker, no gRPC, and no line logged per request (flywheel serve logs none either).
    proc = _start([python, script, "--model_name", MODEL, "--model_dir", version_path, "--http_port", str(port),
                   "--workers", "1", "--enable_grpc", "false", "--enable_latency_logging", "false",
                   "--configure_logging", "false"], os.path.join(workdir, "kserve.log"))
    base = f"http://127.0.0.1:{port}"
    wait_ready(proc, f"{base}/v1/models/{MODEL}", "KServe")
    return proc, base


def _start(command: list[str], log_path: str) -> subprocess.Popen:
    """A server process whose output goes to a file (a pipe nobody reads would stall it once full)."""
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    proc.log_path = log_path
    return proc


def start_flywheel(serving_dir: str, log_dir: Optional[str], workdir: str) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    command = [os.path.join(BIN, "flywheel"), "serve", "--serving-dir", serving_dir, "--model", MODEL, "--port",
               str(port)]
    if log_dir:
        command += ["--log-dir", log_dir]
    proc = _start(command, os.path.join(workdir, "flywheel-serve.log"))
    base = f"http://127.0.0.1:{port}"
    wait_ready(proc, f"{base}/v1/models/{MODEL}", "flywheel serve")
    return proc, base


def log_counters(metrics: str) -> dict[str, float]:
    """The request-log counters (logged_rows, dropped_rows...) in a server's Prometheus metrics text."""
    return {name: float(value) for name, value in
            re.findall(r'^flywheel_serving_request_log\{counter="(\w+)"\} (\S+)$', metrics, re.M)}


def dropped_rows(base: str) -> float:
    """Rows a --log-dir server's request log has lost so far (its metrics route)."""
    with urllib.request.urlopen(f"{base}/monitoring/prometheus/metrics", timeout=10) as answer:
        return log_counters(answer.read().decode()).get("dropped_rows", 0.0)


def logged_rows(log_dirs: list[str]) -> int:
    """Rows in the Parquet files of the request logs (read from the files' footers)."""
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(os.path.join(folder, name)).metadata.num_rows for log_dir in log_dirs
               for folder, _, names in os.walk(log_dir) for name in names if name.endswith(".parquet"))


def median_load(runs: list[Load]) -> Load:
    """One load from interleaved runs of the same load: the medians of requests/s and of each percentile, the
    sums of requests and failures."""
    first = runs[0]
    return Load(first.name, first.concurrency, first.rows, requests=sum(r.requests for r in runs),
                rps=statistics.median(r.rps for r in runs), p50=statistics.median(r.p50 for r in runs),
                p90=statistics.median(r.p90 for r in runs), p99=statistics.median(r.p99 for r in runs),
                failed=sum(r.failed for r in runs))


def interleaved_c32(wrk: Wrk, servers: dict[str, list[str]], rounds: int) -> tuple[dict[str, Load], list[float]]:
    """The 1-row concurrency-32 load on every process of each variant ({variant: [base URL of each of its
    processes]}, all up side by side), `rounds` times, in an order reversed every other round (so that no
    variant always runs first or after a given process). Returns ({variant: the median of its runs}, for each
    round the last variant's mean requests/s as a share of the first's): a share is taken within one round, so
    what else the machine does during a round weighs on both alike, and its median over rounds is the
    comparison. One process per variant is not enough: two identical processes can differ by 5 %."""
    runs: dict[str, list[Load]] = {name: [] for name in servers}
    order = [(name, base) for name, bases in servers.items() for base in bases]
    first, last = next(iter(servers)), list(servers)[-1]
    shares = []
    for round_ in range(rounds):
        this_round: dict[str, list[float]] = {name: [] for name in servers}
        for name, base in (order if round_ % 2 == 0 else order[::-1]):
            load = wrk.run(f"{name}, 1 row", f"{base}/v1/models/{MODEL}:predict", 32, 1)
            runs[name].append(load)
            this_round[name].append(load.rps)
        shares.append(statistics.mean(this_round[last]) / statistics.mean(this_round[first]))
        print(f"  round {round_ + 1}: " + ", ".join(f"{name} {', '.join(f'{r:,.0f}' for r in this_round[name])}"
                                                  for name in servers)
              + f" req/s; {last} / {first} = {shares[-1]:.3f}", flush=True)
    loads = {name: median_load(r) for name, r in runs.items()}
    for name, load in loads.items():
        print(f"{load.line()}  (median of {len(runs[name])} runs)", flush=True)
    return loads, shares


def run_loads(wrk: Wrk, name: str, base: str, big: bool = True, c1: bool = True, c32: bool = True) -> dict[str, Load]:
    url = f"{base}/v1/models/{MODEL}:predict"
    loads = {}
    if c1:
        loads["c1"] = wrk.run(f"{name}, 1 row", url, 1, 1)
        print(loads["c1"].line(), flush=True)
    if c32:
        loads["c32"] = wrk.run(f"{name}, 1 row", url, 32, 1)
        print(loads["c32"].line(), flush=True)
    if big:
        loads["big"] = wrk.run(f"{name}, {BIG_ROWS} rows", url, BIG_CONCURRENCY, BIG_ROWS)
        print(loads["big"].line(), flush=True)
    return loads


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serving-dir", help="a serving folder holding taxi/<version>/ (default: train a small "
                                              "model first)")
    parser.add_argument("--workdir", help="where the trained model, bodies and logs go (default: a temp folder)")
    parser.add_argument("--cache-dir", default=os.path.join(os.environ.get("XDG_CACHE_HOME") or
                                                            os.path.expanduser("~/.cache"), "flywheel-bench"),
                        help="where the KServe virtualenv is kept")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of each wrk run")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--skip-peer", action="store_true", help="do not run the KServe peer")
    parser.add_argument("--rounds", type=int, default=7,
                        help="rounds of the floor then flywheel serve at concurrency 1 and with 512 rows (the 512-row "
                             "share: the median of the rounds' shares), and of concurrency-32 runs on flywheel serve's "
                             "plain and --log-dir processes, up side by side and interleaved (the log's cost: the "
                             "median of the rounds' ratios); 1: one run of each, one process per variant")
    parser.add_argument("--processes", type=int, default=2,
                        help="processes of each variant (plain, --log-dir) in the interleaved rounds")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()
    if args.rounds < 1 or args.processes < 1:
        parser.error(f"--rounds and --processes must be at least 1, got {args.rounds} and {args.processes}")
    quiet.quiet_environment(verbose=False)
    check_wrk()
    workdir = args.workdir or tempfile.mkdtemp(prefix="flywheel-serving-bench-")
    os.makedirs(workdir, exist_ok=True)
    serving_dir = os.path.abspath(args.serving_dir) if args.serving_dir else train_model(workdir)
    version_path = latest_version(serving_dir)
    peer = None if args.skip_peer else peer_python(args.cache_dir)
    load = os.getloadavg()
    print(f"model: {version_path}\nmachine: {os.cpu_count()} CPUs, load average {load[0]:.2f} at start; "
          f"wrk {args.threads} thread(s), {args.duration:g} s per run", flush=True)

    quiet.install(verbose=False, out=sys.stderr)
    floor = Floor(version_path)
    if args.rounds == 1:  # else measured in each round, next to flywheel serve's runs (floor_rounds)
        floor_p50, floor_rows = floor.measure(min(args.duration, 5.0))
        print(f"  floor (in-process, serialized examples)  1 row p50 {floor_p50:.3f} ms; {BIG_ROWS} rows "
              f"{floor_rows:,.0f} rows/s", flush=True)
    wrk = Wrk(workdir, args.duration, args.threads)
    results: dict[str, dict[str, Load]] = {}
    if peer:
        proc, base = start_peer(peer, workdir, version_path)
        try:
            results["peer"] = run_loads(wrk, "KServe 0.21 (V1)", base)
        finally:
            stop(proc)
    started: list[subprocess.Popen] = []

    def flywheel_server(log_dir: Optional[str]) -> str:
        proc, url = start_flywheel(serving_dir, log_dir, workdir)
        started.append(proc)
        return url

    shares: list[float] = []
    big_shares: list[float] = []
    log_dirs: list[str] = []
    dropped = 0.0
    try:
        base = flywheel_server(None)
        if args.rounds == 1:  # one run of each load, one process per variant
            results["flywheel"] = run_loads(wrk, "flywheel serve", base)
            log_dirs.append(os.path.join(workdir, "request-logs-1"))
            logged_base = flywheel_server(log_dirs[0])
            results["logged"] = run_loads(wrk, "flywheel serve --log-dir", logged_base, big=False, c1=False)
            dropped = dropped_rows(logged_base)
        else:  # concurrency 1 and 512 rows in rounds with the floor; the log's cost from processes side by side
            results["flywheel"], floor_p50, floor_rows, big_shares = floor_rounds(
                wrk, floor, base, args.rounds, min(args.duration, 5.0))
            plain = [base] + [flywheel_server(None) for _ in range(args.processes - 1)]
            log_dirs = [os.path.join(workdir, f"request-logs-{i + 1}") for i in range(args.processes)]
            logging = [flywheel_server(log_dir) for log_dir in log_dirs]
            c32, shares = interleaved_c32(wrk, {"flywheel serve": plain, "flywheel serve --log-dir": logging},
                                          args.rounds)
            dropped = sum(dropped_rows(base) for base in logging)
            results["flywheel"]["c32"] = c32["flywheel serve"]
            results["logged"] = {"c32": c32["flywheel serve --log-dir"]}
    finally:
        for proc in started:
            stop(proc)

    fw, logged = results["flywheel"], results["logged"]
    # Every request answered by a --log-dir server is in its log (the servers stopped by SIGTERM wrote all they
    # held): at least as many rows as wrk counted (it does not count requests still in flight when a run ends).
    written, counted = logged_rows(log_dirs), sum(load.requests for load in logged.values())
    complete = dropped == 0 and written >= counted
    print(f"request logs: {written:,} rows written for the {counted:,} requests wrk counted; {dropped:,.0f} dropped",
          flush=True)
    failed = sum(load.failed for loads in results.values() for load in loads.values())
    # The log's cost: from the rounds' shares (each taken within one round) when interleaved, else one run each.
    log_cost = 1.0 - (statistics.median(shares) if shares else logged["c32"].rps / fw["c32"].rps)
    spread = f" (rounds: {', '.join(f'{1.0 - x:.1%}' for x in shares)})" if shares else ""
    print("\nflywheel serve against the goals:")
    print(f"  c=1 p50 {fw['c1'].p50:.2f} ms (goal <= {GOALS['c1_p50_ms']} ms; floor {floor_p50:.2f} ms): "
          f"{verdict(fw['c1'].p50 <= GOALS['c1_p50_ms'])}")
    if "peer" in results:
        peer_loads = results["peer"]
        ratio = fw["c32"].rps / peer_loads["c32"].rps
        print(f"  c=32 {fw['c32'].rps:,.0f} req/s = {ratio:.1f}x KServe's {peer_loads['c32'].rps:,.0f} "
              f"(goal >= {GOALS['c32_vs_peer']:g}x): {verdict(ratio >= GOALS['c32_vs_peer'])}")
        print(f"  c=1 against KServe: p50 {fw['c1'].p50:.2f} vs {peer_loads['c1'].p50:.2f} ms, "
              f"{fw['c1'].rps:,.0f} vs {peer_loads['c1'].rps:,.0f} req/s; {BIG_ROWS} rows: "
              f"{fw['big'].rows_per_s / peer_loads['big'].rows_per_s:.1f}x KServe's rows/s")
    print(f"  c=32 p99 {fw['c32'].p99:.1f} ms (goal <= {GOALS['c32_p99_ms']:g} ms): "
          f"{verdict(fw['c32'].p99 <= GOALS['c32_p99_ms'])}")
    share = statistics.median(big_shares) if big_shares else fw["big"].rows_per_s / floor_rows
    big_spread = f" (rounds: {', '.join(f'{x:.0%}' for x in big_shares)})" if big_shares else ""
    print(f"  {BIG_ROWS}-row requests {fw['big'].rows_per_s:,.0f} rows/s = {share:.0%} of the floor{big_spread} "
          f"(goal >= {GOALS['big_vs_floor']:.0%}): {verdict(share >= GOALS['big_vs_floor'])}")
    print(f"  logging every request costs {log_cost:.1%} of c=32 throughput{spread} (goal <= "
          f"{GOALS['log_cost']:.0%}; every request logged: {'yes' if complete else 'NO'}): "
          f"{verdict(log_cost <= GOALS['log_cost'] and complete)}")
    print(f"  failed requests: {failed} (goal 0): {verdict(failed == 0)}")
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"floor": {"p50_ms": floor_p50, "rows_per_s": floor_rows}, "big_vs_floor_rounds": big_shares,
                       "log_cost_rounds": [1.0 - x for x in shares],
                       "request_log": {"rows_written": written, "requests_counted": counted, "dropped": dropped},
                       **{server: {k: dataclasses.asdict(v) for k, v in loads.items()}
                          for server, loads in results.items()}}, f, indent=2)


if __name__ == "__main__":
    main()
