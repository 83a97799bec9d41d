"""Benchmark: a model release through rollouts under a steady load from `flywheel replay`, no failed request allowed.

On one pushed taxi model (a small one is trained with the library unless --serving-dir names a serving folder;
its newest version is copied, the folder itself is never changed), a serving folder of four versions is made:
v1 the model (stable, pinned), v2 a copy of it (a good candidate), v3 a SavedModel with the same serving_default
signature that answers a constant (a bad candidate), v4 another copy (the green side of a blue/green switch).
`flywheel serve --log-dir` runs as a real process. The load runs in its own process for the whole scenario:
`flywheel.api.traffic.replay` of simulated spans (`flywheel.api.pipeline.simulate`, one trip id per row) at a
fixed rate, several requests in flight, one row per request with its trip id as X-Request-Id; and, since replay
sends no custom header, a few keyed clients (httpx) sending X-Rollout-Key, the sticky canary key. The scenario:

    steady (v1) -> start canary 20 % of v2 -> >= 5,000 requests under the canary -> rollout analyze (promote)
    -> start canary 20 % of v3 -> rollout analyze (rolls it back by itself) -> blue/green to v4 -> switch back

Prints: requests sent and failed (exit 1 unless 0), the canary share of the replayed requests (from the request
log's model_version) against the configured percent (+-3 points), whether every keyed client stayed on one
version (the one its key hashes to) during each canary, the analysis decisions and their reasons, the time each
switch took to apply (rollout.json written -> first request answered by the new routing, from the request log),
and latency p50/p99 during the switches against the steady state (server side from the request log's
latency_ms; client side per replay call).
Usage: python benchmarks/rollout.py [--serving-dir DIR] [--quick] [--rate R] [--canary-requests N] [--json F]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import glob
import itertools
import json
import math
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from typing import Any, Callable, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np

from benchmarks import serving as serving_bench
from flywheel import quiet
from flywheel.store import layout

MODEL = serving_bench.MODEL
ID_COLUMN = "trip_id"
KEY_HEADER = "X-Rollout-Key"  # flywheel serve's default sticky canary key header
KEYED_PREFIX = "keyed-"  # the keyed clients' request ids
CANARY_PERCENT = 20.0
SHARE_TOLERANCE = 3.0  # points, over SHARE_REQUESTS requests or more (the claim)
SHARE_REQUESTS = 5_000
SPAN_SECONDS = 4.0  # seconds of load per replayed span: the load thread can stop between spans
SETTLE_SECONDS = 2.0  # after a switch applies, still counted as "during the switch" for latency
EXPECTED_DECISIONS = ("promote", "rollback")
CONSTANT_VALUE = 0.3

# A SavedModel whose serving_default has the real model's inputs and outputs (names, dtypes, shapes) and answers
# CONSTANT_VALUE for every row. Saved by a child process: tracing and saving a tf.function in a process that has
# run a pipeline crashed the interpreter at exit.
CONSTANT_MODEL = """
import json
import sys

import tensorflow as tf

path, spec, value = sys.argv[1], json.loads(sys.argv[2]), float(sys.argv[3])
inputs = {name: tf.TensorSpec([None if d < 0 else d for d in s["shape"]], s["dtype"], name=name)
          for name, s in spec["inputs"].items()}
first = sorted(inputs)[0]


class Constant(tf.Module):
    @tf.function(input_signature=[inputs])
    def serve(self, features):
        rows = tf.shape(features[first])[:1]
        return {name: tf.fill(tf.concat([rows, tf.constant([max(d, 1) for d in s["shape"][1:]], tf.int32)], 0),
                              tf.constant(value, s["dtype"]))
                for name, s in spec["outputs"].items()}


module = Constant()
tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
"""


# ---- the serving folder ----------------------------------------------------------------------------------------

def signature_spec(version_path: str) -> dict[str, dict[str, dict[str, Any]]]:
    """{"inputs"|"outputs": {name: {"dtype", "shape"}}} of a SavedModel's serving_default (-1: any size)."""
    import tensorflow as tf

    graph = next(g for g in layout.read_saved_model(version_path).meta_graphs
                 if "serve" in g.meta_info_def.tags)
    signature = graph.signature_def["serving_default"]

    def tensors(specs) -> dict[str, dict[str, Any]]:
        return {name: {"dtype": tf.dtypes.as_dtype(t.dtype).name,
                       "shape": [-1] if t.tensor_shape.unknown_rank else [d.size for d in t.tensor_shape.dim]}
                for name, t in specs.items()}

    return {"inputs": tensors(signature.inputs), "outputs": tensors(signature.outputs)}


def publish(serving_dir: str, source: Optional[str], version: int,
            build: Optional[Callable[[str], None]] = None) -> str:
    """Publishes version `version` as Push does (a hidden staging folder renamed into place whole, push.json
    beside saved_model.pb): a copy of `source`, or what `build(staging)` saves."""
    root = os.path.join(serving_dir, MODEL)
    os.makedirs(root, exist_ok=True)
    staging = os.path.join(root, f".push-{version}-bench")
    if source is not None:
        shutil.copytree(source, staging)
    else:
        build(staging)
    manifest_path = os.path.join(staging, layout.MANIFEST_FILE)
    manifest = json.load(open(manifest_path)) if os.path.exists(manifest_path) else {"model_name": MODEL}
    with open(manifest_path, "w") as f:
        json.dump({**manifest, "version": version}, f)
    final = os.path.join(root, str(version))
    os.rename(staging, final)
    return final


def constant_model(spec: dict[str, Any]) -> Callable[[str], None]:
    def build(path: str) -> None:
        done = subprocess.run([sys.executable, "-c", CONSTANT_MODEL, path, json.dumps(spec), str(CONSTANT_VALUE)],
                              capture_output=True, text=True, timeout=300,
                              env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
        if done.returncode != 0:
            raise SystemExit(f"rollout bench: saving the constant model failed:\n{done.stderr[-3000:]}")
    return build


@dataclasses.dataclass(frozen=True)
class Versions:
    stable: int
    good: int
    bad: int
    green: int


def make_serving(source_serving_dir: str, workdir: str) -> tuple[str, Versions, concurrent.futures.Future]:
    """A fresh serving folder: v1 (the source's newest version, pinned stable), v2 and v4 its copies, v3 the
    constant model. The versions after v1 are pushed once the state pins v1, so none of them serves by default.
    v3 is saved (by a child process) and published in the background, while the server starts: wait for the
    returned future before using it."""
    from flywheel.rollout import store

    source = serving_bench.latest_version(source_serving_dir)
    stable = int(os.path.basename(source.rstrip("/")))
    versions = Versions(stable, stable + 1, stable + 2, stable + 3)
    serving_dir = os.path.join(workdir, "serving")
    publish(serving_dir, source, versions.stable)
    store.pin(serving_dir, MODEL)
    publish(serving_dir, source, versions.good)
    publish(serving_dir, source, versions.green)
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    bad = pool.submit(publish, serving_dir, None, versions.bad, constant_model(signature_spec(source)))
    pool.shutdown(wait=False)  # the thread finishes the job; the future gives its result or error
    return serving_dir, versions, bad


# ---- the load --------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Call:
    """One `flywheel.api.traffic.replay` call (one span): wall-clock start and end, and its result."""

    started: float
    ended: float
    result: Any


@dataclasses.dataclass(frozen=True)
class Keyed:
    """One request of a keyed client: when it was answered, its key, HTTP status (or the client's error name) and
    the version that answered (X-Model-Version; None without one)."""

    time: float
    key: str
    status: str
    version: Optional[int]


def _replay_spans(spans: list[str], url: str, rate: float, concurrency: int, features: tuple[str, ...],
                  stopping: Any, calls: list[Call]) -> None:
    from flywheel.api.traffic import replay

    for span in spans:
        if stopping.is_set():
            return
        started = time.time()
        result = replay("taxi", span, url, rate=rate, id_column=ID_COLUMN, concurrency=concurrency,
                            features=features)
        calls.append(Call(started, time.time(), result))
    raise RuntimeError(f"rollout bench: the load ran out of spans ({len(spans)}) before the scenario ended (the "
                       "server answered slower than the planned rate)")


def _keyed_clients(url: str, row: dict[str, Any], keys: int, rate: float, stopping: Any,
                   answers: list[Keyed]) -> None:
    """`keys` clients, each sending its key in KEY_HEADER, taking turns at `rate` requests/s in all."""
    import httpx

    body = {"instances": [row]}
    with httpx.Client(timeout=30.0) as client:
        for n in itertools.count():
            if stopping.is_set():
                return
            key = f"user-{n % keys}"
            try:
                response = client.post(f"{url}:predict", json=body,
                                       headers={KEY_HEADER: key, "X-Request-Id": f"{KEYED_PREFIX}{n}"})
                status = str(response.status_code)
                version = response.headers.get("X-Model-Version")
            except httpx.HTTPError as e:
                status, version = type(e).__name__, None
            answers.append(Keyed(time.time(), key, status, int(version) if version else None))
            time.sleep(1.0 / rate)


def _load_process(spans: list[str], url: str, plan: "Plan", features: tuple[str, ...], row: dict[str, Any],
                  stopping: Any, results: Any) -> None:
    """The load's own process (the benchmark's log reading and analyses never delay a request): the replay and
    the keyed clients, each in a thread, until `stopping` is set or one fails; then (calls, answers, error)."""
    calls: list[Call] = []
    answers: list[Keyed] = []
    errors: list[str] = []

    def guarded(target: Callable[..., None], *args: Any) -> threading.Thread:
        def run() -> None:
            try:
                target(*args)
            except BaseException:  # reported to the main process, which fails the benchmark with it
                errors.append(traceback.format_exc())
                stopping.set()
        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread

    threads = [guarded(_replay_spans, spans, url, plan.rate, plan.concurrency, features, stopping, calls),
               guarded(_keyed_clients, url, row, plan.keys, plan.keyed_rate, stopping, answers)]
    for thread in threads:
        thread.join()
    results.put((calls, answers, errors))


class Load:
    """The steady load, in its own process: `flywheel.api.traffic.replay` of span after span at the plan's rate
    (stopping between spans), and keyed clients sending KEY_HEADER (replay sends no custom header)."""

    def __init__(self, spans: list[str], url: str, plan: "Plan", features: tuple[str, ...], row: dict[str, Any]):
        context = multiprocessing.get_context("spawn")
        self._stopping, self._results = context.Event(), context.Queue()
        self._process = context.Process(target=_load_process, name="rollout-bench-load", daemon=True,
                                        args=(spans, url, plan, features, row, self._stopping, self._results))
        self.calls: list[Call] = []
        self.answers: list[Keyed] = []

    def start(self) -> None:
        self._process.start()

    def check(self) -> None:
        """Fails the benchmark when the load stopped by itself (a replay or client error)."""
        if self._stopping.is_set() or not self._process.is_alive():
            self.stop()

    def stop(self) -> None:
        self._stopping.set()
        self.calls, self.answers, errors = self._results.get(timeout=120)
        self._process.join(timeout=60)
        if errors:
            raise SystemExit("rollout bench: the load failed:\n" + "\n".join(errors))


# ---- the request log -------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Log:
    """The request log's requests (row_index 0), as arrays: id, time (Unix s), version, role, status, latency."""

    request_id: np.ndarray
    time: np.ndarray
    version: np.ndarray
    role: np.ndarray
    status: np.ndarray
    latency_ms: np.ndarray

    @classmethod
    def read(cls, log_dir: str) -> "Log":
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        columns = ["request_id", "row_index", "time", "model_version", "rollout_role", "status", "latency_ms"]
        files = sorted(glob.glob(os.path.join(log_dir, "span-*", "part-*.parquet")))
        if not files:
            empty = np.array([])
            return cls(empty, empty, empty, empty, empty, empty)
        table = pa.concat_tables([pq.read_table(f, columns=columns) for f in files])
        table = table.filter(pc.equal(table.column("row_index"), 0)).sort_by("time")
        seconds = table.column("time").cast(pa.int64()).to_numpy().astype(np.float64) / 1e6

        def numbers(name: str, dtype: Any) -> np.ndarray:  # a null (no version resolved) as -1
            return table.column(name).fill_null(-1).to_numpy().astype(dtype)

        return cls(np.asarray(table.column("request_id").to_pylist(), dtype=object), seconds,
                   numbers("model_version", np.int64),
                   np.asarray(table.column("rollout_role").to_pylist(), dtype=object),
                   numbers("status", np.int64), numbers("latency_ms", np.float64))

    def where(self, mask: np.ndarray) -> "Log":
        return Log(*(getattr(self, f.name)[mask] for f in dataclasses.fields(self)))

    def __len__(self) -> int:
        return len(self.request_id)


def wait_for(log_dir: str, enough: Callable[[Log], bool], what: str, timeout: float, load: Load) -> Log:
    """Reads the log until `enough(log)` (the server writes it every 5 s); fails naming `what` after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        log = Log.read(log_dir)
        if enough(log):
            return log
        load.check()
        if time.monotonic() > deadline:
            raise SystemExit(f"rollout bench: waited {timeout:.0f} s for {what}; the log holds {len(log)} requests")
        time.sleep(1.0)


# ---- switches --------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Switch:
    """A routing change: when rollout.json was written, and which requests only the new routing answers."""

    name: str
    written: float
    new_routing: Callable[[Log], np.ndarray]
    applied: Optional[float] = None

    @property
    def seconds(self) -> Optional[float]:
        return None if self.applied is None else self.applied - self.written

    def find(self, log: Log) -> Optional[float]:
        after = log.where(log.time >= self.written)
        hits = after.time[self.new_routing(after)]
        self.applied = float(hits[0]) if len(hits) else None
        return self.applied


def written_at(serving_dir: str) -> float:
    """When rollout.json was last written (its mtime: the temporary file is renamed over it whole)."""
    from flywheel.rollout import state

    return os.stat(state.path(serving_dir, MODEL)).st_mtime


def on_version(version: int) -> Callable[[Log], np.ndarray]:
    return lambda log: log.version == version


def without_rollout(version: int) -> Callable[[Log], np.ndarray]:
    """Answered by `version` with no rollout running (role null): after a promote or a rollback."""
    return lambda log: (log.version == version) & np.array([r is None for r in log.role], dtype=bool)


# ---- figures ---------------------------------------------------------------------------------------------------

def percentiles(values: np.ndarray) -> str:
    if len(values) == 0:
        return "no request"
    p50, p99 = np.percentile(values, [50, 99])
    return f"p50 {p50:6.2f} ms  p99 {p99:7.2f} ms  ({len(values):,} requests)"


def canary_share(log: Log, start: Switch, stable: int, candidate: int) -> dict[str, Any]:
    """The candidate's share of the replayed requests routed under the canary (roles stable/canary, after it
    applied; the keyed clients' requests left out: their keys, not a draw, choose)."""
    from flywheel.server import routing

    replayed = np.array([not str(i).startswith(KEYED_PREFIX) for i in log.request_id], dtype=bool)
    roles = np.array([r in (routing.STABLE, routing.CANARY) for r in log.role], dtype=bool)
    window = log.where((log.time >= start.applied) & np.isin(log.version, [stable, candidate]) & roles & replayed)
    ids, first = np.unique(window.request_id, return_index=True)
    on_candidate = int(np.sum(window.version[first] == candidate))
    share = 100.0 * on_candidate / len(ids) if len(ids) else float("nan")
    return {"requests": int(len(ids)), "candidate": on_candidate, "share": share, "configured": CANARY_PERCENT,
            "tolerance": share_tolerance(len(ids)),
            "within_tolerance": bool(abs(share - CANARY_PERCENT) <= share_tolerance(len(ids)))}


def share_tolerance(requests: int) -> float:
    """+-3 points from 5,000 requests on; below that (--quick), 4 standard deviations of the binomial draw the
    server makes per request, so a reduced run does not fail by chance (1,000 requests: +-5.1 points)."""
    if requests >= SHARE_REQUESTS:
        return SHARE_TOLERANCE
    p = CANARY_PERCENT / 100.0
    return max(SHARE_TOLERANCE, 400.0 * math.sqrt(p * (1.0 - p) / max(requests, 1)))


def sticky(answers: list[Keyed], start: Switch, end: Switch, stable: int, candidate: int) -> dict[str, Any]:
    """The keyed clients between a canary's start applying and its end being written: keys answered by one
    version only, and by the one their key hashes to (routing.key_share * 100 < percent: the candidate)."""
    from flywheel.server import routing

    seen: dict[str, set[Optional[int]]] = {}
    for answer in answers:
        if start.applied is not None and start.applied <= answer.time < end.written:
            seen.setdefault(answer.key, set()).add(answer.version)
    one = [k for k, v in seen.items() if len(v) == 1]
    expected = [k for k in one if seen[k] == {candidate if routing.key_share(k) * 100.0 < CANARY_PERCENT
                                              else stable}]
    return {"keys": len(seen), "one_version": len(one), "hashed_version": len(expected),
            "on_candidate": sum(1 for k in one if seen[k] == {candidate}),
            "requests": sum(1 for a in answers if start.applied is not None
                            and start.applied <= a.time < end.written),
            "ok": bool(seen) and len(expected) == len(seen)}


def latency_windows(log: Log, switches: list[Switch], begin: float) -> tuple[np.ndarray, np.ndarray]:
    """Server-side latencies (ms) of requests answered while a switch applied (rollout.json written -> first
    request of the new routing + SETTLE_SECONDS) and of the others (the steady state), from `begin`."""
    during = np.zeros(len(log), dtype=bool)
    for switch in switches:
        end = (switch.applied if switch.applied is not None else log.time.max()) + SETTLE_SECONDS
        during |= (log.time >= switch.written) & (log.time <= end)
    answered = (log.status == 200) & (log.time >= begin)
    return log.latency_ms[answered & during], log.latency_ms[answered & ~during]


def client_windows(calls: list[Call], switches: list[Switch]) -> tuple[list[Any], list[Any]]:
    """The replay calls (spans) that overlapped a switch, and the others."""
    def overlaps(call: Call) -> bool:
        return any(call.started <= (s.applied or s.written) + SETTLE_SECONDS and s.written <= call.ended
                   for s in switches)
    return [c.result for c in calls if overlaps(c)], [c.result for c in calls if not overlaps(c)]


def client_line(results: list[Any]) -> str:
    if not results:
        return "no replay call"
    p50 = float(np.median([r.latency_ms["p50"] for r in results]))
    p99 = max(r.latency_ms["p99"] for r in results)
    return (f"p50 {p50:6.2f} ms (median of calls)  p99 {p99:7.2f} ms (worst call)  "
            f"({sum(r.requests_sent for r in results):,} requests in {len(results)} replay calls)")


# ---- the scenario ----------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Plan:
    rate: float
    concurrency: int
    canary_requests: int
    candidate_requests: int  # on the bad candidate and on green before the next step
    steady_seconds: float
    max_seconds: float
    keys: int = 20  # keyed clients
    keyed_rate: float = 10.0  # their requests per second, in all

    def load_seconds(self) -> float:
        """Seconds of traffic to simulate: three times the scenario at the planned rate, plus a minute."""
        requests = self.canary_requests + 2 * self.candidate_requests * 100.0 / CANARY_PERCENT
        return 3.0 * (4 * self.steady_seconds + requests / self.rate + 30.0) + 60.0


def analyze(serving_dir: str, log_dir: str, report_dir: str) -> Any:
    from flywheel.api.rollout import rollout_analyze

    result = rollout_analyze(serving_dir, MODEL, log_dir, report_dir=report_dir)
    print(f"  rollout analyze: {result.decision}" + "".join(f"\n    {r}" for r in result.analysis.reasons)
          + f"\n    report: {report_dir}/report.html", flush=True)
    return result


def scenario(serving_dir: str, versions: Versions, log_dir: str, workdir: str, load: Load, plan: Plan
             ) -> tuple[list[Switch], list[Any], dict[str, Any]]:
    """Runs the release steps against the running server and load; returns the switches, the analyses and the
    canary share."""
    from flywheel.api.rollout import rollout_rollback, rollout_start

    switches: list[Switch] = []
    timeout = plan.max_seconds

    def switch(name: str, new_routing: Callable[[Log], np.ndarray]) -> Switch:
        switches.append(Switch(name, written_at(serving_dir), new_routing))
        print(f"  {name}", flush=True)
        return switches[-1]

    def after(s: Switch, version: int, count: int) -> Callable[[Log], bool]:
        return lambda log: s.find(log) is not None and int(np.sum((log.time >= s.applied)
                                                                  & (log.version == version))) >= count

    time.sleep(plan.steady_seconds)
    rollout_start(serving_dir, MODEL, version=versions.good, mode="canary", percent=CANARY_PERCENT,
                      reason="benchmark: a good candidate")
    canary = switch(f"start canary {CANARY_PERCENT:g}% of v{versions.good} (a copy of stable)",
                    on_version(versions.good))
    log = wait_for(log_dir, lambda log: canary.find(log) is not None and canary_share(
        log, canary, versions.stable, versions.good)["requests"] >= plan.canary_requests,
                   f"{plan.canary_requests:,} replayed requests under the canary", timeout, load)
    share = canary_share(log, canary, versions.stable, versions.good)
    analyses = [analyze(serving_dir, log_dir, os.path.join(workdir, "analysis-good"))]
    switch(f"{analyses[-1].decision} v{versions.good} (by the analysis)", without_rollout(versions.good))

    time.sleep(plan.steady_seconds)
    rollout_start(serving_dir, MODEL, version=versions.bad, mode="canary", percent=CANARY_PERCENT,
                      reason="benchmark: a bad candidate (constant output)")
    bad = switch(f"start canary {CANARY_PERCENT:g}% of v{versions.bad} (constant output)", on_version(versions.bad))
    wait_for(log_dir, after(bad, versions.bad, plan.candidate_requests),
             f"{plan.candidate_requests} requests on the bad candidate", timeout, load)
    analyses.append(analyze(serving_dir, log_dir, os.path.join(workdir, "analysis-bad")))
    stable_now = versions.good if analyses[0].decision == "promote" else versions.stable
    switch(f"{analyses[-1].decision} v{versions.bad} (by the analysis)", without_rollout(stable_now))

    time.sleep(plan.steady_seconds)
    rollout_start(serving_dir, MODEL, version=versions.green, mode="blue_green",
                      reason="benchmark: blue/green switch")
    green = switch(f"blue/green: all traffic to v{versions.green}", on_version(versions.green))
    wait_for(log_dir, after(green, versions.green, plan.candidate_requests),
             f"{plan.candidate_requests} requests on green", timeout, load)
    rollout_rollback(serving_dir, MODEL, reason="benchmark: blue/green switch back")
    switch(f"blue/green: switch back to v{stable_now}", without_rollout(stable_now))
    time.sleep(plan.steady_seconds)
    return switches, analyses, share


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serving-dir", help="a serving folder holding taxi/<version>/; its newest version is "
                                              "copied (default: train a small model first)")
    parser.add_argument("--workdir", help="where the serving folder, spans, logs and reports go (default: a temp "
                                          "folder)")
    parser.add_argument("--quick", action="store_true", help="a reduced run (fewer requests, same steps) for tests")
    parser.add_argument("--rate", type=float, help="replayed requests per second (default 100)")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight")
    parser.add_argument("--canary-requests", type=int, help="requests under the first canary before its analysis "
                                                            "(default 5,000; --quick 1,000)")
    parser.add_argument("--max-seconds", type=float, default=600.0, help="give up waiting for any step after this")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()
    plan = Plan(rate=args.rate or 100.0, concurrency=args.concurrency,
                canary_requests=args.canary_requests or (1_000 if args.quick else 5_000),
                candidate_requests=120 if args.quick else 300, steady_seconds=1.0 if args.quick else 5.0,
                max_seconds=args.max_seconds)
    quiet.quiet_environment(verbose=False)
    from flywheel.api.pipeline import simulate
    from flywheel.server.run import signature_inputs

    workdir = os.path.abspath(args.workdir or tempfile.mkdtemp(prefix="flywheel-rollout-bench-"))
    os.makedirs(workdir, exist_ok=True)
    for previous in ("serving", "traffic", "request-logs", "analysis-good", "analysis-bad"):  # from an earlier run
        shutil.rmtree(os.path.join(workdir, previous), ignore_errors=True)
    source = os.path.abspath(args.serving_dir) if args.serving_dir else serving_bench.train_model(workdir)
    serving_dir, versions, bad_published = make_serving(source, workdir)
    rows = max(1, int(plan.rate * SPAN_SECONDS))
    spans = simulate("taxi", os.path.join(workdir, "traffic"), spans=math.ceil(plan.load_seconds() / SPAN_SECONDS),
                         rows=rows, drift_from=None).files
    log_dir = os.path.join(workdir, "request-logs")
    load_avg = os.getloadavg()
    print(f"model: {serving_bench.latest_version(source)} -> {serving_dir}: v{versions.stable} stable, "
          f"v{versions.good} copy, v{versions.bad} constant {CONSTANT_VALUE}, v{versions.green} copy\n"
          f"machine: {os.cpu_count()} CPUs, load average {load_avg[0]:.2f} at start; load: replay at "
          f"{plan.rate:g} requests/s, {plan.concurrency} in flight, {rows} rows per span", flush=True)

    port = serving_bench._free_port()
    proc = serving_bench._start([os.path.join(serving_bench.BIN, "flywheel"), "serve", "--serving-dir", serving_dir,
                                 "--model", MODEL, "--port", str(port), "--log-dir", log_dir, "--rollout-key-header",
                                 KEY_HEADER], os.path.join(workdir, "flywheel-serve.log"))
    url = f"http://127.0.0.1:{port}/v1/models/{MODEL}"
    try:
        serving_bench.wait_ready(proc, url, "flywheel serve")
        bad_published.result()
        features = tuple(sorted(signature_inputs(os.path.join(serving_dir, MODEL, str(versions.stable)))))
        load = Load(spans, url, plan, features, serving_bench.ROW)
        began = time.time()
        load.start()
        try:
            switches, analyses, share = scenario(serving_dir, versions, log_dir, workdir, load, plan)
        finally:
            load.stop()
    finally:
        serving_bench.stop(proc)  # SIGTERM: the request log writes everything it holds
    log = Log.read(log_dir)
    for s in switches:
        s.find(log)
    report(log, load, switches, analyses, share, began, args.json, versions)


def report(log: Log, load: Load, switches: list[Switch], analyses: list[Any], share: dict[str, Any], began: float,
           json_path: Optional[str], versions: Versions) -> None:
    by_status: dict[str, int] = {}
    for call in load.calls:
        for status, n in call.result.by_status.items():
            by_status[status] = by_status.get(status, 0) + n
    keyed_status: dict[str, int] = {}
    for answer in load.answers:
        keyed_status[answer.status] = keyed_status.get(answer.status, 0) + 1
    replayed = sum(c.result.requests_sent for c in load.calls)
    sent = replayed + len(load.answers)
    failed = sum(c.result.failed for c in load.calls) + sum(1 for a in load.answers if a.status != "200")
    server_failed = int(np.sum(log.status != 200))
    decisions = [a.decision for a in analyses]
    stable_then = versions.good if decisions[0] == "promote" else versions.stable  # stable under the second canary
    stickiness = [sticky(load.answers, switches[0], switches[1], versions.stable, versions.good),
                  sticky(load.answers, switches[2], switches[3], stable_then, versions.bad)]
    during, steady = latency_windows(log, switches, began)
    client_during, client_steady = client_windows(load.calls, switches)
    elapsed = max(c.ended for c in load.calls) - min(c.started for c in load.calls)
    print(f"\nrequests sent: {sent:,} in {elapsed:.0f} s: {replayed:,} replayed ({replayed / elapsed:,.0f}/s, "
          f"{len(load.calls)} replay calls) answered {by_status}, {len(load.answers):,} keyed answered "
          f"{keyed_status}; logged by the server: {len(log):,}")
    print(f"failed client requests: {failed} (goal 0): {serving_bench.verdict(failed == 0)}; failed in the server's "
          f"log: {server_failed}")
    print(f"canary share: {share['share']:.2f}% of {share['requests']:,} replayed requests answered by "
          f"v{versions.good} (configured {share['configured']:g}%, +-{share['tolerance']:.1f} points): "
          f"{serving_bench.verdict(share['within_tolerance'])}")
    for name, found in zip((f"canary of v{versions.good}", f"canary of v{versions.bad}"), stickiness, strict=True):
        print(f"sticky keys, {name}: {found['one_version']} of {found['keys']} keys answered by one version, "
              f"{found['hashed_version']} by the one their key hashes to ({found['on_candidate']} on the candidate; "
              f"{found['requests']} requests): {serving_bench.verdict(found['ok'])}")
    print(f"analysis decisions: {decisions} (expected {list(EXPECTED_DECISIONS)}): "
          f"{serving_bench.verdict(tuple(decisions) == EXPECTED_DECISIONS)}")
    for analysis in analyses:
        print(f"  {analysis.decision}: " + ("; ".join(analysis.analysis.reasons) or "-"))
    print("switches (rollout.json written -> first request answered by the new routing):")
    for s in switches:
        took = f"{s.seconds:.2f} s" if s.seconds is not None else "NEVER APPLIED"
        print(f"  {s.name:<52} {took}")
    print(f"latency, server side (request log), during switches (written -> applied + {SETTLE_SECONDS:g} s): "
          f"{percentiles(during)}\n  steady state: {percentiles(steady)}")
    print(f"latency, client side (replay, {SPAN_SECONDS:g} s calls), calls overlapping a switch: "
          f"{client_line(client_during)}\n  other calls: {client_line(client_steady)}")
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    ok = (failed == 0 and server_failed == 0 and share["within_tolerance"] and all(s["ok"] for s in stickiness)
          and tuple(decisions) == EXPECTED_DECISIONS and all(s.applied is not None for s in switches))
    if json_path:
        with open(json_path, "w") as f:
            json.dump({"requests_sent": sent, "replayed": replayed, "failed": failed, "server_failed": server_failed,
                       "by_status": by_status, "keyed_status": keyed_status, "canary_share": share,
                       "sticky": stickiness, "decisions": decisions,
                       "reasons": [list(a.analysis.reasons) for a in analyses],
                       "switches": [{"name": s.name, "seconds": s.seconds} for s in switches],
                       "latency_ms": {"during_switches": percentile_dict(during),
                                      "steady": percentile_dict(steady)}, "ok": ok}, f, indent=2)
    sys.exit(0 if ok else 1)


def percentile_dict(values: np.ndarray) -> dict[str, Any]:
    if len(values) == 0:
        return {"requests": 0}
    p50, p99 = np.percentile(values, [50, 99])
    return {"p50": round(float(p50), 3), "p99": round(float(p99), 3), "requests": int(len(values))}


if __name__ == "__main__":
    main()
