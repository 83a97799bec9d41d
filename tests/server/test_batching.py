"""Server-side batching: concurrent requests share TensorFlow calls, and each gets its own rows back."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading

import pytest
from starlette.testclient import TestClient

from flywheel.server import batching, models, server
from tests.server.conftest import ISSUE_ROW, MODEL


def _rows(n: int, offset: float) -> list[dict]:
    return [{**ISSUE_ROW, "fare": offset + i, "trip_miles": 0.5 + i} for i in range(n)]


def _concurrent_predictions(client: TestClient, requests: list[list[dict]]) -> list:
    def send(rows):
        response = client.post(f"/v1/models/{MODEL}:predict", json={"instances": rows})
        assert response.status_code == 200, response.text
        return response.json()["predictions"]

    with concurrent.futures.ThreadPoolExecutor(len(requests)) as pool:
        return list(pool.map(send, requests))


def _recording(serving_dir: str):
    """(the served version, its default signature, the names of the threads TensorFlow ran on, a run function
    that records its thread before running the signature)."""
    registry = models.ModelRegistry(serving_dir, MODEL, poll_seconds=3600.0)
    registry.poll()
    servable = registry.get(MODEL)
    threads: list[str] = []

    def run(sig, columns):
        threads.append(threading.current_thread().name)
        return models.run_signature(sig, columns)

    return servable, servable.signature(""), threads, run


@pytest.mark.slow  # seconds of load or waiting (the unit lane keeps to 2 minutes)
def test_concurrent_requests_run_in_fewer_tensorflow_calls_with_their_own_answers(serving_dir):
    requests = [_rows(3, 5.0 * k) for k in range(16)]
    alone = models.ModelRegistry(serving_dir, MODEL, poll_seconds=3600.0)
    alone.poll()
    servable = alone.get(MODEL)
    expected = [models.run_signature(servable.signature(""), {k: [r[k] for r in rows] for k in ISSUE_ROW})["outputs"]
                .tolist() for rows in requests]
    registry = models.ModelRegistry(serving_dir, MODEL, poll_seconds=3600.0)
    app = server.create_app(registry, max_batch_size=64, batch_timeout_ms=200.0, num_batch_threads=1)
    with TestClient(app) as client:
        answers = _concurrent_predictions(client, requests)
        calls = app.state.batcher.calls
        text = client.get("/monitoring/prometheus/metrics").text
    assert calls <= 4, f"{len(requests)} concurrent requests took {calls} TensorFlow calls"
    for got, want in zip(answers, expected, strict=True):
        # a batch's float32 arithmetic may differ from a lone call's in the last bits: compared within 1e-5
        assert len(got) == len(want) and all(abs(g[0] - w[0]) < 1e-5 for g, w in zip(got, want, strict=True))
    assert 'flywheel_serving_batch_rows_sum{model="taxi",signature="serving_default",version="1"} 48.0' in text


def test_a_full_batch_runs_without_waiting_and_large_requests_run_alone(serving_dir):
    registry = models.ModelRegistry(serving_dir, MODEL, poll_seconds=3600.0)
    app = server.create_app(registry, max_batch_size=4, batch_timeout_ms=60_000.0, num_batch_threads=1)
    with TestClient(app) as client:
        answers = _concurrent_predictions(client, [_rows(4, 1.0), _rows(9, 2.0)])
    assert [len(a) for a in answers] == [4, 9]
    assert app.state.batcher.calls == 2


def test_with_no_timeout_a_lone_request_runs_on_the_loop_and_a_burst_runs_as_one_batch_thread_call(serving_dir):
    servable, signature, threads, run = _recording(serving_dir)

    def columns(rows):
        return {k: [r[k] for r in rows] for k in ISSUE_ROW}

    async def scenario():
        batcher = batching.Batcher(run, max_batch_size=64, batch_timeout_ms=0.0, num_batch_threads=2)
        try:
            lone = await batcher.submit(servable, signature, columns(_rows(2, 1.0)), 2)
            loop_thread = threading.current_thread().name
            burst = await asyncio.gather(*[batcher.submit(servable, signature, columns(_rows(1, 3.0 * k)), 1)
                                           for k in range(16)])
            return batcher, lone, loop_thread, burst
        finally:
            batcher.close()

    batcher, lone, loop_thread, burst = asyncio.run(scenario())
    assert threads[0] == loop_thread, "an idle batcher runs a lone request without a thread hop"
    assert batcher.inline_calls == 1 and batcher.calls == 2, (batcher.inline_calls, batcher.calls)
    assert threads[1].startswith("serve-batch"), "requests that arrive together run in a batch thread, as one call"
    assert lone["outputs"].shape == (2, 1)
    for k, answer in enumerate(burst):
        alone = models.run_signature(signature, columns(_rows(1, 3.0 * k)))["outputs"]
        assert answer["outputs"].shape == (1, 1) and abs(float(answer["outputs"][0, 0]) - float(alone[0, 0])) < 1e-5


def test_a_request_that_fills_a_batch_alone_in_the_server_runs_on_the_loop_else_in_a_batch_thread(serving_dir):
    servable, signature, threads, run = _recording(serving_dir)

    columns = {k: [r[k] for r in _rows(4, 1.0)] for k in ISSUE_ROW}

    async def scenario():
        batcher = batching.Batcher(run, max_batch_size=4, batch_timeout_ms=60_000.0, num_batch_threads=1)
        try:
            alone = await batcher.submit(servable, signature, columns, 4, alone=True)
            among_others = await batcher.submit(servable, signature, columns, 4, alone=False)
            return batcher, threading.current_thread().name, alone, among_others
        finally:
            batcher.close()

    batcher, loop_thread, alone, among_others = asyncio.run(scenario())
    assert threads[0] == loop_thread, "a full request alone in the server runs without a thread hop"
    assert threads[1].startswith("serve-batch"), "with other requests in the server it runs in a batch thread"
    assert batcher.inline_calls == 1 and batcher.calls == 2, (batcher.inline_calls, batcher.calls)
    assert alone["outputs"].tolist() == among_others["outputs"].tolist() and alone["outputs"].shape == (4, 1)
