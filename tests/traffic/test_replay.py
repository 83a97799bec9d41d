"""`flywheel replay`: a span's rows, typed by Ingest's parser and without the label, as TF Serving :predict requests
to a real HTTP server that records them."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pytest

import flywheel
from tests.conftest import call_cli, run_cli, shipped_data

FEATURES = ["fare", "payment_type", "pickup_latitude", "pickup_longitude", "trip_miles", "trip_seconds",
            "trip_start_day", "trip_start_hour", "trip_start_month"]


class _Recorder(BaseHTTPRequestHandler):
    requests: list = []

    def log_message(self, *args):
        pass

    def _answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/v1/models/taxi/metadata":
            inputs = {name: {"dtype": "DT_FLOAT"} for name in FEATURES}
            self._answer(200, {"model_spec": {"name": "taxi", "version": "1"},
                               "metadata": {"signature_def": {"signature_def": {"serving_default": {
                                   "inputs": inputs, "outputs": {}, "method_name": "tensorflow/serving/predict"}}}}})
        else:
            self._answer(404, {"error": "not found"})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        request_id = self.headers.get("X-Request-Id")
        type(self).requests.append({"path": self.path, "id": request_id, "body": body})
        if request_id == "trip-3":
            self._answer(500, {"error": "boom"})
        else:
            self._answer(200, {"predictions": [0.5] * len(body["instances"])})


@pytest.fixture()
def server():
    _Recorder.requests = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1/models/taxi", _Recorder.requests
    httpd.shutdown()


@pytest.fixture()
def span(tmp_path):
    table = pcsv.read_csv(shipped_data())
    table = table.filter(pc.is_valid(table.column("pickup_latitude"))).slice(0, 40)
    table = table.append_column("trip_id", pa.array([f"trip-{i}" for i in range(40)]))
    fares = table.column("fare").to_pylist()
    fares[5] = None  # fare is required: Ingest quarantines this row, replay skips it
    table = table.set_column(table.column_names.index("fare"), "fare", pa.array(fares))
    folder = tmp_path / "spans" / "span-7"
    folder.mkdir(parents=True)
    pcsv.write_csv(table, str(folder / "data.csv"))
    return str(tmp_path / "spans"), table


def test_replay_sends_rows_with_ids_without_the_label(server, span):
    url, requests = server
    data, table = span
    result = flywheel.replay("taxi", data, url, id_column="trip_id", concurrency=4)
    assert result.rows_read == 40 and result.rows_skipped == 1
    assert result.first_skipped == [f"{data}/span-7/data.csv row 6: column 'fare': missing required value for FLOAT"]
    assert result.requests_sent == result.rows_sent == len(requests) == 40 - result.rows_skipped
    assert result.by_status == {"200": result.requests_sent - 1, "500": 1} and result.failed == 1
    assert result.features == sorted(FEATURES), "the model's inputs, from the server's metadata"
    first = next(r for r in requests if r["id"] == "trip-0")
    assert first["path"] == "/v1/models/taxi:predict"
    instance = first["body"]["instances"][0]
    assert set(instance) == set(FEATURES), "no label, no id, no column the model does not take"
    row = table.slice(0, 1).to_pylist()[0]
    assert instance["fare"] == row["fare"] and instance["payment_type"] == row["payment_type"]
    assert "trip-5" not in {r["id"] for r in requests}
    assert set(result.latency_ms) == {"p50", "p90", "p99", "max"}


def test_replay_runs_from_inside_a_running_event_loop_as_in_a_notebook(server, span):
    import asyncio

    url, requests = server
    data, _ = span

    async def cell():
        return flywheel.replay("taxi", data, url, id_column="trip_id", concurrency=2)

    result = asyncio.run(cell())
    assert result.requests_sent == result.rows_sent == 39 and result.ok == 38


def test_replay_batches_and_holds_the_rate(server, span):
    url, requests = server
    data, _ = span
    result = flywheel.replay("taxi", data, url, batch=2, rate=40.0, concurrency=2, features=("fare", "trip_miles"))
    assert result.requests_sent == 20 and result.rows_sent == 39
    assert sorted(len(r["body"]["instances"]) for r in requests) == [1] + [2] * 19
    assert set(requests[0]["body"]["instances"][0]) == {"fare", "trip_miles"}
    assert result.elapsed_s >= 19 / 40.0, "the 20th request waits for its slot at the target rate"
    assert 30.0 <= result.achieved_rate <= 40.0 * 1.15


@pytest.mark.slow  # the flywheel command as a process
def test_replay_cli_json_and_exit_codes(server, span, capfd):
    url, _ = server
    data, _ = span
    result = run_cli("replay", "taxi", "--data", data, "--url", url, "--id-column", "trip_id", "--json")
    assert result.returncode == 1, "one request failed"
    out = json.loads(result.stdout)
    assert out["failed"] == 1 and out["by_status"]["500"] == 1
    bad = call_cli(capfd, "replay", "taxi", "--data", data, "--url", url, "--id-column", "trip_id", "--batch", "4")
    assert bad.returncode == 2 and "--id-column sends one row per request" in bad.stderr


@pytest.mark.parametrize("kwargs, message", [
    ({"rate": 0}, "rate: expected requests per second > 0"),
    ({"features": ("tips",)}, r"features \['tips'\] are not serving features"),
    ({"features": ("fare",), "id_column": "no_such_column"}, r"missing required column\(s\) \['no_such_column'\]"),
    ({"wait_s": -1}, r"--wait: expected seconds >= 0, got -1"),
])
def test_replay_bad_input(server, span, kwargs, message):
    url, requests = server
    with pytest.raises(flywheel.UsageError, match=message):
        flywheel.replay("taxi", span[0], url, **kwargs)
    assert not requests


def test_replay_without_metadata_says_to_give_features(server, span):
    url, _ = server
    other = url.replace("/taxi", "/other")
    with pytest.raises(flywheel.UsageError, match=f"expected TF Serving's model metadata at {other}/metadata, but it "
                                                  "answered 404: check the model URL, or give the model's inputs "
                                                  "with --features"):
        flywheel.replay("taxi", span[0], other)


def test_replay_with_nothing_listening_names_the_url_and_waits_as_told(span, capfd):
    with socket.socket() as held:  # bound, never listening: connections to it are refused
        held.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{held.getsockname()[1]}/v1/models/taxi"
        started = time.monotonic()
        result = call_cli(capfd, "replay", "taxi", "--data", span[0], "--url", url, "--wait", "1")
        waited = time.monotonic() - started
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"flywheel: replay: nothing answers at {url} after waiting 1 s: "), result.stderr
    assert "the server may not be up yet" in result.stderr and "--features" not in result.stderr
    assert 1.0 <= waited < 10, waited
    missing = call_cli(capfd, "replay", "taxi", "--data", span[0] + "/nope", "--url", url)
    assert missing.returncode == 2 and "does not exist" in missing.stderr, "bad data fails before any wait"
