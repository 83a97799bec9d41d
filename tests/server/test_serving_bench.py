"""The serving benchmark's figures: wrk's output read back, and interleaved runs reduced to their medians."""

from __future__ import annotations

import importlib.util
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _bench():
    spec = importlib.util.spec_from_file_location("serving_bench", os.path.join(REPO, "benchmarks", "serving.py"))
    module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)  # its dataclasses look it up there
    spec.loader.exec_module(module)
    return module


WRK_OUTPUT = """Running 10s test @ http://127.0.0.1:8501/v1/models/taxi:predict
  1 threads and 32 connections
  Latency Distribution
     50%   {p50}
     75%    9.00ms
     90%   {p90}
     99%   {p99}
  {requests} requests in 10.01s, 5.00MB read
{failures}Requests/sec:   {rps}
Transfer/sec:    500.00KB
"""


def test_interleaved_runs_give_the_median_requests_per_second_and_percentiles_and_sum_failures():
    bench = _bench()
    runs = [bench.parse_wrk(WRK_OUTPUT.format(p50=p50, p90="12.00ms", p99=p99, requests=requests, rps=rps,
                                              failures=failures), bench.Load("flywheel serve, 1 row", 32, 1))
            for p50, p99, requests, rps, failures in [
                ("7.00ms", "40.00ms", 20000, "2000.00", ""),
                ("9.00ms", "111.00ms", 15000, "1500.00", "  Non-2xx or 3xx responses: 2\n"),
                ("8.00ms", "30.00ms", 24000, "2400.00", "")]]
    load = bench.median_load(runs)
    assert (load.rps, load.p50, load.p90, load.p99) == (2000.0, 8.0, 12.0, 40.0)
    assert (load.requests, load.failed, load.concurrency, load.rows) == (59000, 2, 32, 1)


def test_latencies_in_seconds_as_wrk_pads_them_are_read():
    """wrk writes a latency of a second or more as `1.11s ` (padded to its column): a slow peer's p99."""
    bench = _bench()
    load = bench.parse_wrk(WRK_OUTPUT.format(p50="1.06ms", p90="309.78ms", p99="1.11s ", requests=6172,
                                             rps="616.62", failures=""), bench.Load("KServe, 1 row", 1, 1))
    assert (load.p50, load.p90, load.p99, load.rps) == (1.06, 309.78, 1110.0, 616.62)


def test_the_request_logs_counters_and_rows_are_read_from_the_servers_metrics_and_files(tmp_path):
    """The benchmark checks that every request was logged: the counters from the metrics text the server's own
    Metrics write, the rows from the Parquet files a RequestLog writes."""
    from prometheus_client import generate_latest

    from flywheel.server.request_log import RequestLog
    from flywheel.server.server import Metrics

    bench = _bench()
    metrics = Metrics()
    metrics.request_log.labels("logged_rows").set(1200)
    metrics.request_log.labels("dropped_rows").set(3)
    assert bench.log_counters(generate_latest(metrics.registry).decode()) == {"logged_rows": 1200.0,
                                                                             "dropped_rows": 3.0}
    for i, requests in enumerate((3, 5)):
        log = RequestLog(str(tmp_path / f"log-{i}"), clock=lambda: 0.0)
        for r in range(requests):
            log.log(f"r{r}", "m", 1, "s", [{"x": 1.0}] * 2, [0.5] * 2, 1.0)
        log.close()
    assert bench.logged_rows([str(tmp_path / "log-0"), str(tmp_path / "log-1")]) == 16
