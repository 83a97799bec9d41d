"""`flywheel serve` as a real process: uvicorn on a free port, answering TF Serving's REST API."""

from __future__ import annotations

import socket
import subprocess
import time

import httpx
import pytest

from tests.conftest import FLYWHEEL, REPO
from tests.server.conftest import ISSUE_ROW, MODEL


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # a flywheel process
def test_flywheel_serve_answers_over_http_and_stops_on_sigterm(serving_dir, tmp_path):
    port = _free_port()
    log_dir = tmp_path / "logs"
    proc = subprocess.Popen([FLYWHEEL, "serve", "--serving-dir", serving_dir, "--port", str(port),
                             "--max-batch-size", "32", "--batch-timeout-ms", "1", "--log-dir", str(log_dir)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                status = httpx.get(f"{base}/v1/models/{MODEL}", timeout=5)
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() else ""
                time.sleep(0.5)
        assert status.json()["model_version_status"][0]["state"] == "AVAILABLE"
        answer = httpx.post(f"{base}/v1/models/{MODEL}:predict", json={"instances": [ISSUE_ROW]}, timeout=30)
        assert answer.status_code == 200 and 0.0 <= answer.json()["predictions"][0][0] <= 1.0
        assert "X-Request-Id" in answer.headers
        assert httpx.post(f"{base}/v1/models/{MODEL}:predict", content=b"{", timeout=30).status_code == 400
        assert "flywheel_serving_requests_total" in httpx.get(f"{base}/monitoring/prometheus/metrics").text
        many = httpx.post(f"{base}/v1/models/{MODEL}:predict", json={"instances": [ISSUE_ROW] * 3},
                          headers={"X-Request-Id": "req-7"}, timeout=30)
        assert many.status_code == 200 and many.headers["X-Request-Id"] == "req-7"
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    assert proc.returncode == 0, proc.stderr.read()
    # SIGTERM loses nothing: every answered (and failed) row is in the log, each raw feature a column typed as the
    # model takes it
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    files = sorted(log_dir.glob("span-*/*.parquet"))
    table = pq.read_table(files[0]) if len(files) == 1 else None
    assert table is not None and table.num_rows == 5, files
    assert table.column("status").to_pylist().count(400) == 1, "the malformed request is logged as failed"
    table = table.filter(pc.equal(table.column("status"), 200))
    assert sorted(table.column("request_id").to_pylist()).count("req-7") == 3
    assert str(table.schema.field("trip_start_hour").type) == "int64"
    assert str(table.schema.field("fare").type) in ("float", "double")
    assert table.column("payment_type").to_pylist() == ["Cash"] * 4


@pytest.mark.slow  # a flywheel process
def test_flywheel_serve_refuses_a_missing_serving_folder(tmp_path):
    proc = subprocess.run([FLYWHEEL, "serve", "--serving-dir", str(tmp_path / "none")], capture_output=True,
                          text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 2
    assert f"--serving-dir {tmp_path / 'none'} is not a folder" in proc.stderr
