"""Hostile requests against a real pushed taxi model: every one gets a 4xx naming what was wrong with it, no
answer names the server's internals (exception classes, tracebacks, TensorFlow nodes, absolute paths), the
metrics do not grow with what clients send, and versions that fail to load are retried as TF Serving does."""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
import socket
import string
import subprocess
import time

import pytest
from starlette.testclient import TestClient

from flywheel.server import connections, models, server
from tests.conftest import FLYWHEEL, REPO
from tests.server.conftest import ISSUE_ROW, MODEL, add_version

ROW = json.dumps({"instances": [ISSUE_ROW]}).encode()
PYTHON_NAMES = re.compile(r"\b[A-Z]\w+(?:Error|Exception|Warning)\b|Traceback|\bsys\.\w+|File \"")
TENSORFLOW_NAMES = re.compile(r"serving_default_\w+:\d|StatefulPartitionedCall|\{\{(function_)?node|__inference_")
ABSOLUTE_PATH = re.compile(r"(?<![\w.:/])/(?:tmp|home|work|usr|opt|var|root)/")


def _internals(text: str) -> list[str]:
    """The internal names a response body shows (none is allowed)."""
    return PYTHON_NAMES.findall(text) + TENSORFLOW_NAMES.findall(text) + ABSOLUTE_PATH.findall(text)


@pytest.fixture(scope="module")
def client(tmp_path_factory, pushed_version):
    folder = str(tmp_path_factory.mktemp("hostile") / "serving")
    add_version(folder, pushed_version, 1)
    registry = models.ModelRegistry(folder, MODEL, poll_seconds=3600.0, labels={"stable": 1})
    with TestClient(server.create_app(registry)) as running:
        yield running


def _row_with(**values) -> bytes:
    return json.dumps({"instances": [{**ISSUE_ROW, **values}]}).encode()


PREDICT = f"/v1/models/{MODEL}:predict"
HOSTILE = [  # (method, path, body, status, message or None: any 4xx)
    ("POST", PREDICT, b'{"instances":' + b"[" * 1025 + b"]" * 1025 + b"}", 400,
     "JSON Parse error: arrays and objects nest deeper than 128 levels"),
    ("POST", PREDICT, b"[" * 100_000 + b"]" * 100_000, 400, "nest deeper than 128 levels"),
    ("POST", PREDICT, b'{"inputs":' + b'{"a":' * 3000 + b"1" + b"}" * 3001, 400, "nest deeper than 128 levels"),
    ("POST", PREDICT, ROW.replace(b"8.5", b"[" * 2000 + b"]" * 2000), 400, "nest deeper"),
    ("POST", PREDICT, ROW.replace(b"8.5", b"[" * 1000 + b"1" + b"]" * 1000), 400, "nest deeper"),
    ("POST", PREDICT, ROW.replace(b"8.5", b"[" * 126 + b"NaN" + b"]" * 126), 400, "nest deeper than 128"),
    ("POST", PREDICT, ROW.replace(b"8.5", b"[" * 125 + b"1" + b"]" * 125), 400, "key: fare"),
    ("POST", PREDICT, ROW.replace(b"8.5", b"[" * 125 + b"NaN" + b"]" * 125), 400, "key: fare"),
    ("POST", PREDICT, ROW.replace(b"Cash", b"Ca\xffsh"), 400, r"Invalid encoding in string\. at offset: \d+"),
    ("POST", PREDICT, ROW.replace(b"Cash", b"Ca\xed\xa0\x80sh"), 400, "Invalid encoding in string"),
    ("POST", PREDICT, b"\xff\xfe" + ROW, 400, "Invalid encoding in string. at offset: 0"),
    ("POST", PREDICT, ROW.replace(b"Cash", b"Ca\\ud800sh"), 400, "The surrogate pair in string is invalid"),
    ("POST", PREDICT, ROW.replace(b"Cash", b"Ca\\udc00sh"), 400, "The surrogate pair in string is invalid"),
    ("POST", PREDICT, ROW.replace(b'"fare"', b'"\\ud800"'), 400, "The surrogate pair in string is invalid"),
    ("POST", PREDICT, json.dumps({"signature_name": "\ud800", "instances": [ISSUE_ROW]}).encode(), 400,
     "The surrogate pair in string is invalid"),
    ("POST", PREDICT, ROW.replace(b"600", b"9" * 5000), 400, "Number too big to be stored in double"),
    ("POST", PREDICT, ROW.replace(b"600", b"9" * 100), 400, "key: trip_seconds .*not of expected type: int64"),
    ("POST", PREDICT, ROW.replace(b"8.5", b"1" + b"0" * 5000 + b".5"), 400,
     f"JSON Parse error: Number too big to be stored in double. at offset: {ROW.index(b'8.5')}"),
    ("POST", PREDICT, ROW.replace(b"8.5", b"1e400"), 400,
     f"Number too big to be stored in double. at offset: {ROW.index(b'8.5')}"),
    ("POST", PREDICT, ROW.replace(b"8.5", b"-1e309"), 400, "Number too big to be stored in double"),
    ("POST", PREDICT, ROW.replace(b"8.5", b"1e-400"), 200, None),
    ("POST", PREDICT, ROW.replace(b"8.5", b"1" + b"0" * 400), 400,
     f"Number too big to be stored in double. at offset: {ROW.index(b'8.5')}"),
    ("POST", PREDICT, ROW.replace(b"8.5", b"-" + b"9" * 309) + b" ", 400, "Number too big to be stored in double"),
    ("POST", PREDICT, ROW.replace(b"8.5", b"1" + b"0" * 300), 200, None),
    ("POST", PREDICT, b"", 400, "JSON Parse error: The document is empty"),
    ("POST", PREDICT, b"   \n", 400, "JSON Parse error: The document is empty"),
    ("POST", PREDICT, b"null", 400, None),
    ("POST", PREDICT, b"[1, 2]", 400, None),
    ("POST", PREDICT, b'"instances"', 400, None),
    ("POST", PREDICT, b"NaN", 400, None),
    ("POST", PREDICT, b"{}", 400, "Missing 'inputs' or 'instances' key"),
    ("POST", PREDICT, b'{"instances": {}}', 400, "Expecting 'instances' to be an list/array"),
    ("POST", PREDICT, b'{"instances": [null]}', 400, None),
    ("POST", PREDICT, b'{"instances": [[]]}', 400, None),
    ("POST", PREDICT, b'{"instances": [{}]}', 400, None),
    ("POST", PREDICT, b'{"instances": ["x"]}', 400, None),
    ("POST", PREDICT, b'{"inputs": null}', 400, None),
    ("POST", PREDICT, b'{"inputs": []}', 400, None),
    ("POST", PREDICT, b'{"inputs": {"fare": {"b64": "AA=="}}}', 400, None),
    ("POST", PREDICT, json.dumps({"inputs": {k: v for k, v in ISSUE_ROW.items()}}).encode(), 400, None),
    ("POST", PREDICT, _row_with(fare=None), 400, "Type: Null is not of expected type: float"),
    ("POST", PREDICT, _row_with(fare={"b64": "AA=="}), 400, None),
    ("POST", PREDICT, _row_with(trip_seconds=1.5), 400, "is not of expected type: int64"),
    ("POST", PREDICT, _row_with(trip_seconds=-(2**64)), 400, "key: trip_seconds"),
    ("POST", PREDICT, _row_with(payment_type={"b64": "%%%"}), 400, "Unable to base64 decode"),
    ("POST", PREDICT, _row_with(payment_type={"b64": 5}), 400, None),
    ("POST", PREDICT, _row_with(payment_type=["a", "b"]), 400, None),
    ("POST", PREDICT, json.dumps({"signature_name": "serving_examples", "instances": ["not an example"]}).encode(),
     400, "Could not parse example input"),
    ("POST", PREDICT, json.dumps({"signature_name": "serving_examples", "instances": [{"b64": "////"}]}).encode(),
     400, "Could not parse example input, value: '\ufffd\ufffd\ufffd'"),
    ("POST", PREDICT, json.dumps({"signature_name": "serving_examples", "instances": [{"b64": "AAAA="}]}).encode(),
     400, None),
    ("POST", PREDICT, json.dumps({"signature_name": ["x"], "instances": [ISSUE_ROW]}).encode(), 400, None),
    ("POST", PREDICT, json.dumps({"signature_name": "x" * 100_000, "instances": [ISSUE_ROW]}).encode(), 400, None),
    ("POST", PREDICT, json.dumps({"signature_name": "__saved_model_init_op", "instances": [ISSUE_ROW]}).encode(),
     400, None),
    ("POST", PREDICT, b'{"instances": [' + b'{"fare": 1.0, "fare": 2.0},' * 3 + b"{}]}", 400, None),
    ("POST", PREDICT, b'{"instances": [1e400]}', 400, None),
    # :classify and :regress read their bodies with the same parser
    ("POST", f"/v1/models/{MODEL}:classify", b'{"examples":' + b"[" * 1025 + b"]" * 1025 + b"}", 400, "nest deeper"),
    ("POST", f"/v1/models/{MODEL}:regress", b'{"examples": ["\xff"]}', 400, "Invalid encoding in string"),
    ("POST", f"/v1/models/{MODEL}:classify", b'{"examples": [{"fare": 1e400}]}', 400, "Number too big"),
    ("POST", f"/v1/models/{MODEL}:regress", b'{"examples": ["\\ud800"]}', 400, "The surrogate pair"),
    ("POST", f"/v1/models/{MODEL}:classify", b"", 400, None),
    # URLs: versions beyond int64 and uint64, 5,000 digits, percent-encoded junk, unknown methods and paths
    ("POST", f"/v1/models/{MODEL}/versions/{'9' * 5000}:predict", ROW, 400, r"Failed to convert version: 9{20}\.\.\."),
    ("GET", f"/v1/models/{MODEL}/versions/{'9' * 5000}", b"", 400, "Failed to convert version"),
    ("GET", f"/v1/models/{MODEL}/versions/{'9' * 5000}/metadata", b"", 400, "Failed to convert version"),
    ("POST", f"/v1/models/{MODEL}/versions/9223372036854775808:predict", ROW, 400,
     "Failed to convert version: 9223372036854775808 to numeric."),
    ("POST", f"/v1/models/{MODEL}/versions/18446744073709551616:regress", ROW, 400,
     "Failed to convert version: 18446744073709551616 to numeric."),
    ("GET", f"/v1/models/{MODEL}/versions/99999999999999999999999", b"", 400, "Failed to convert version"),
    ("POST", f"/v1/models/{MODEL}/versions/9223372036854775807:predict", ROW, 404,
     re.escape(f"Servable not found for request: Specific({MODEL}, 9223372036854775807)")),
    ("GET", f"/v1/models/{MODEL}/versions/{'0' * 30}1", b"", 200, None),
    ("GET", f"/v1/models/{MODEL}/versions/{'0' * 5000}1", b"", 200, None),
    ("GET", f"/v1/models/{MODEL}/versions/{'0' * 5000}9223372036854775808", b"", 400, "Failed to convert version"),
    ("POST", f"/v1/models/{MODEL}/versions/%31:predict", ROW, 400, "Malformed request"),
    ("POST", "/v1/models/%ff%fe%00:predict", ROW, 404, None),
    ("POST", "/v1/models/%ed%a0%80:predict", ROW, 404, None),
    ("GET", "/v1/models/ta%2Fxi", b"", 404, "Could not find any versions of model ta/xi"),
    ("GET", "/v1/models/%74axi", b"", 200, None),
    ("POST", f"/v1/models/{MODEL}/labels/%ff%00:predict", ROW, 400, "Unrecognized servable version label"),
    ("GET", f"/v1/models/{MODEL}/labels/{'x' * 10_000}", b"", 400, "Unrecognized servable version label"),
    ("POST", f"/v1/models/{MODEL}/labels/stable/versions/1:predict", ROW, 400, "Malformed request"),
    ("POST", f"/v1/models/{MODEL}:predict:predict", ROW, 400, "Malformed request"),
    ("POST", "/v1/models/:predict", ROW, 400, "Malformed request"),
    ("GET", "/v1/models", b"", 400, "Missing model name in request."),
    ("GET", "/v1/models/", b"", 400, "Malformed request"),
    ("PUT", PREDICT, ROW, 400, f"Malformed request: PUT {PREDICT}"),
    ("DELETE", f"/v1/models/{MODEL}", b"", 400, "Malformed request"),
    ("PATCH", f"/v1/models/{MODEL}", b"", 400, "Malformed request"),
    ("OPTIONS", PREDICT, b"", 400, "Malformed request"),
    ("GET", PREDICT, b"", 400, "Malformed request"),
    ("POST", f"/v1/models/{MODEL}", ROW, 400, "Malformed request"),
    ("POST", "/monitoring/prometheus/metrics", b"", 405, None),
    ("GET", "/v2/models/taxi", b"", 404, None),
    ("GET", "/", b"", 404, None),
    ("GET", "/%ff", b"", 404, None),
]


@pytest.mark.parametrize("method,path,body,status,message", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_requests_get_a_4xx_naming_what_was_wrong_and_no_internals(client, method, path, body, status,
                                                                          message):
    response = client.request(method, path, content=body)
    assert response.status_code == status, response.text[:500]
    assert not _internals(response.text), response.text[:500]
    if message is not None:
        assert re.search(message, response.json()["error"]), response.text[:500]


CONTENT_TYPES = [None, "application/json", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
                 "application/json; charset=latin-1", "application/octet-stream", "", "x" * 5000, "\u00e9"]


@pytest.mark.parametrize("content_type", CONTENT_TYPES)
def test_the_content_type_is_ignored_as_tf_serving_ignores_it(client, content_type):
    headers = {} if content_type is None else {"Content-Type": content_type.encode("utf-8")}
    response = client.post(PREDICT, content=ROW, headers=headers)
    assert response.status_code == 200, response.text
    assert len(response.json()["predictions"]) == 1


def test_a_huge_batch_is_answered_row_for_row(client):
    rows = [{**ISSUE_ROW, "fare": float(i % 50)} for i in range(20_000)]
    response = client.post(PREDICT, json={"instances": rows})
    assert response.status_code == 200
    assert len(response.json()["predictions"]) == 20_000


def _random_value(rng: random.Random, depth: int = 0):
    kinds = ["int", "float", "str", "null", "bool", "big", "nan"] + (["list", "dict"] if depth < 4 else [])
    kind = rng.choice(kinds)
    if kind == "int":
        return rng.randint(-(2**70), 2**70)
    if kind == "float":
        return rng.uniform(-1e300, 1e300)
    if kind == "str":
        return "".join(rng.choice(string.printable + "\u00e9\u4e2d\U0001f600") for _ in range(rng.randint(0, 12)))
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "big":
        return 10 ** rng.randint(20, 400)
    if kind == "nan":
        return rng.choice([float("nan"), float("inf"), float("-inf")])
    if kind == "list":
        return [_random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    if kind == "dict":
        keys = list(ISSUE_ROW) + ["b64", "instances", "inputs", "signature_name", ""]
        return {rng.choice(keys): _random_value(rng, depth + 1) for _ in range(rng.randint(0, 5))}
    return None


def _random_bodies(seed: int, count: int) -> list[bytes]:
    """Documents with random values where a predict request has its keys, rows with one value made random, and
    byte-level mutations of a valid body (bytes flipped, cut, repeated): the same every run."""
    rng = random.Random(seed)
    bodies = []
    for i in range(count):
        choice = i % 4
        if choice == 0:
            doc = {rng.choice(["instances", "inputs", "signature_name"]): _random_value(rng) for _ in range(2)}
            bodies.append(json.dumps(doc).encode())
        elif choice == 1:
            row = dict(ISSUE_ROW)
            row[rng.choice(list(ISSUE_ROW))] = _random_value(rng)
            bodies.append(json.dumps({"instances": [ISSUE_ROW, row]}).encode())
        elif choice == 2:
            row = {k: [v] for k, v in ISSUE_ROW.items()}
            row[rng.choice(list(ISSUE_ROW))] = _random_value(rng)
            bodies.append(json.dumps({"inputs": row}).encode())
        else:
            body = bytearray(ROW)
            for _ in range(rng.randint(1, 4)):
                at = rng.randrange(len(body))
                action = rng.choice(["flip", "cut", "insert", "repeat"])
                if action == "flip":
                    body[at] = rng.randrange(256)
                elif action == "cut":
                    del body[at:at + rng.randint(1, 10)]
                elif action == "insert":
                    body[at:at] = bytes(rng.choice(b'[]{}",:\\u0\xff\xc3') for _ in range(rng.randint(1, 5)))
                else:
                    body[at:at] = body[at:at + 5] * rng.randint(1, 300)
            bodies.append(bytes(body))
    return bodies


def test_random_bodies_never_get_a_5xx_or_an_answer_naming_internals(client):
    statuses = {}
    for body in _random_bodies(seed=19, count=800):
        response = client.post(PREDICT, content=body)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        assert response.status_code in (200, 400), (body[:300], response.text[:300])
        assert not _internals(response.text), (body[:300], response.text[:300])
    assert statuses.get(400, 0) > 300 and statuses.get(200, 0) > 20, statuses


def test_a_tensorflow_error_names_the_value_not_the_graphs_nodes(client, caplog):
    body = {"signature_name": "serving_examples", "instances": [{"b64": "bm90IGFuIGV4YW1wbGU="}]}
    with caplog.at_level(logging.WARNING, logger="flywheel.server.errors"):
        response = client.post(PREDICT, json=body)
    assert response.status_code == 400
    assert response.json() == {"error": "Could not parse example input, value: 'not an example'"}
    assert any("ParseExample" in r.getMessage() for r in caplog.records), "the server's log keeps TensorFlow's detail"


def test_an_unexpected_failure_is_a_500_that_names_the_request_and_logs_the_detail(serving_dir, caplog):
    def broken(signature, inputs):
        raise KeyError(f"/secret/{signature.name}:0")

    registry = models.ModelRegistry(serving_dir, MODEL, poll_seconds=3600.0)
    app = server.create_app(registry)
    with TestClient(app) as client:
        app.state.batcher._run = broken
        with caplog.at_level(logging.WARNING, logger="flywheel.server.errors"):
            response = client.post(PREDICT, content=ROW, headers={"X-Request-Id": "r-500"})
    assert response.status_code == 500
    assert response.json() == {"error": "Internal error: the server failed to answer request r-500; its log has "
                                        "the detail"}
    logged = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    assert "r-500" in logged and "/secret/serving_default:0" in logged


@pytest.mark.parametrize("error,status,message", [
    ("OutOfRangeError", 400, "indices[0] = 7 is not in [0, 3)"),
    ("FailedPreconditionError", 400, "indices[0] = 7 is not in [0, 3)"),
    ("ResourceExhaustedError", 429, "indices[0] = 7 is not in [0, 3)"),
    ("InternalError", 500, "Internal error: the server failed to answer request r-tf; its log has the detail"),
    ("UnknownError", 500, "Internal error: the server failed to answer request r-tf; its log has the detail"),
])
def test_tensorflow_errors_get_tf_servings_status_and_lose_the_graphs_names(serving_dir, error, status, message):
    import tensorflow as tf

    def failing(signature, inputs):
        raise getattr(tf.errors, error)(None, None, "indices[0] = 7 is not in [0, 3)\n\t [[{{node "
                                        "StatefulPartitionedCall/model/Gather}}]]")

    registry = models.ModelRegistry(serving_dir, MODEL, poll_seconds=3600.0)
    app = server.create_app(registry)
    with TestClient(app) as client:
        app.state.batcher._run = failing
        response = client.post(PREDICT, content=ROW, headers={"X-Request-Id": "r-tf"})
    assert response.status_code == status
    assert response.json() == {"error": message}


def _metrics_size(client) -> int:
    return len(client.get("/monitoring/prometheus/metrics").content)


@pytest.mark.slow  # seconds of load or waiting (the unit lane keeps to 2 minutes)
def test_the_metrics_page_does_not_grow_with_names_clients_make_up(serving_dir):
    rng = random.Random(7)
    registry = models.ModelRegistry(serving_dir, MODEL, poll_seconds=3600.0)
    with TestClient(server.create_app(registry)) as client:
        def made_up() -> str:
            return "".join(rng.choice(string.ascii_letters) for _ in range(16))

        def hostile_round() -> None:
            name, number = made_up(), rng.randint(2, 10**18)
            assert client.get(f"/v1/models/{name}").status_code == 404
            assert client.post(f"/v1/models/{name}:predict", content=ROW).status_code == 404
            assert client.get(f"/v1/models/{name}/versions/{number}/metadata").status_code == 404
            assert client.post(f"/v1/models/{MODEL}/versions/{number}:predict", content=ROW).status_code == 404
            assert client.post(f"/v1/models/{MODEL}/labels/{name}:predict", content=ROW).status_code == 400
            assert client.get(f"/v1/models/{MODEL}/labels/{name}").status_code == 400
            body = json.dumps({"signature_name": name, "instances": [ISSUE_ROW]})
            assert client.post(PREDICT, content=body).status_code == 400
            assert client.post(f"/v1/models/{name}:{made_up()}", content=ROW).status_code == 400

        assert client.post(PREDICT, content=ROW).status_code == 200
        hostile_round()
        before = _metrics_size(client)
        for _ in range(1000):
            hostile_round()
        after = client.get("/monitoring/prometheus/metrics").text
    assert len(after) - before < 200, f"the metrics page grew from {before} to {len(after)} bytes"
    assert 'flywheel_serving_request_errors_total{api="status",code="404",model="_unknown",signature="",' \
           'version=""} 1001.0' in after
    assert f'model="{MODEL}"' in after


# ---- versions that fail to load -------------------------------------------------------------------------------


class _Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _flaky_loader(failures: int, calls: list):
    """A loader that fails its first `failures` calls, then loads the real version."""
    def load(model, version, path):
        calls.append(version)
        if len(calls) <= failures:
            raise OSError(f"SavedModel file does not exist at: {path}/saved_model.pb")
        return models.load_servable(model, version, path)

    return load


def test_a_version_that_failed_to_load_is_retried_at_the_interval_then_given_up(serving_dir):
    calls, clock = [], _Clock()
    retries = models.LoadRetries(max_retries=2, interval_seconds=60.0)
    registry = models.ModelRegistry(serving_dir, MODEL, loader=_flaky_loader(99, calls), load_retries=retries,
                                    clock=clock)
    registry.poll()
    assert calls == [1]
    status = registry.status(MODEL)[0]
    assert status["state"] == "END"
    assert status["status"]["error_message"] == ("Loading version 1 failed: SavedModel file does not exist at: "
                                                 f"{MODEL}/1/saved_model.pb (retry 1 of 2 in 60 s)")
    registry.poll()
    clock.now += 59.0
    registry.poll()
    assert calls == [1], "no retry before the interval"
    clock.now += 1.0
    registry.poll()
    assert calls == [1, 1]
    for _ in range(5):
        clock.now += 60.0
        registry.poll()
    assert calls == [1, 1, 1], "two retries after the first failure, then none"
    assert "gave up after 3 attempts; tried again when the version's folder changes" in \
        registry.status(MODEL)[0]["status"]["error_message"]


def test_a_version_retried_after_a_failure_serves_once_it_loads(serving_dir):
    calls, clock = [], _Clock()
    registry = models.ModelRegistry(serving_dir, MODEL, loader=_flaky_loader(1, calls), clock=clock,
                                    load_retries=models.LoadRetries(max_retries=5, interval_seconds=60.0))
    registry.poll()
    assert registry.loaded_versions() == []
    clock.now += 60.0
    registry.poll()
    assert calls == [1, 1] and registry.loaded_versions() == [1]
    assert registry.status(MODEL)[0] == {"version": "1", "state": "AVAILABLE",
                                         "status": {"error_code": "OK", "error_message": ""}}


@pytest.mark.slow  # seconds of load or waiting (the unit lane keeps to 2 minutes)
def test_a_broken_version_given_up_loads_when_its_folder_is_repaired(tmp_path, pushed_version):
    folder = str(tmp_path / "serving")
    add_version(folder, pushed_version, 1)
    broken = add_version(folder, pushed_version, 2)
    with open(os.path.join(broken, "saved_model.pb"), "wb") as f:
        f.write(b"not a SavedModel")
    clock = _Clock()
    registry = models.ModelRegistry(folder, MODEL, clock=clock,
                                    load_retries=models.LoadRetries(max_retries=0, interval_seconds=60.0))
    with TestClient(server.create_app(registry)) as client:
        assert registry.loaded_versions() == [1], "the older version serves while the newer one is broken"
        status = client.get(f"/v1/models/{MODEL}/versions/2")
        assert status.status_code == 200
        message = status.json()["model_version_status"][0]["status"]["error_message"]
        assert message.startswith("Loading version 2 failed: ") and "gave up after 1 attempts" in message
        assert not _internals(status.text), status.text
        clock.now += 3600.0
        registry.poll()
        assert registry.loaded_versions() == [1], "given up: not tried again while the folder is unchanged"
        shutil.copy(os.path.join(pushed_version, "saved_model.pb"), os.path.join(broken, "saved_model.pb"))
        registry.poll()
        assert registry.loaded_versions() == [2]
        assert client.post(f"/v1/models/{MODEL}/versions/2:predict", content=ROW).status_code == 200


@pytest.mark.slow  # seconds of load or waiting (the unit lane keeps to 2 minutes)
def test_a_rollout_candidate_that_failed_to_load_is_retried_and_then_takes_its_traffic(serving_dir, pushed_version):
    from flywheel.rollout import state, store
    from flywheel.server import routing
    from flywheel.store import warmup

    store.pin(serving_dir, MODEL)
    candidate = add_version(serving_dir, pushed_version, 2)
    with open(os.path.join(candidate, warmup.WARMUP_PATH), "wb") as f:
        f.write(b"\x00" * 40)
    clock = _Clock()
    registry = models.ModelRegistry(serving_dir, MODEL, poll_seconds=3600.0, clock=clock,
                                    load_retries=models.LoadRetries(max_retries=1, interval_seconds=60.0))
    with TestClient(server.create_app(registry)) as client:
        store.start(serving_dir, MODEL, 2, state.BLUE_GREEN)
        registry.poll()
        clock.now += 60.0
        registry.poll()
        assert registry.loaded_versions() == [1] and registry.router.candidate is None
        message = registry.status(MODEL, 2)[0]["status"]["error_message"]
        assert "warmup" in message and "gave up after 2 attempts" in message, message
        shutil.copy(os.path.join(pushed_version, warmup.WARMUP_PATH), os.path.join(candidate, warmup.WARMUP_PATH))
        registry.poll()
        answer = client.post(PREDICT, content=ROW)
        assert answer.status_code == 200 and answer.headers[routing.VERSION_HEADER] == "2"


# ---- connections, against a real `flywheel serve` process -----------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _request(port: int, raw: bytes, timeout: float = 30.0) -> bytes:
    """Sends raw bytes and reads until the server closes the connection (within `timeout`)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(raw)
        return _read_to_close(s)


def _read_to_close(s: socket.socket) -> bytes:
    chunks = []
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _closed_within(s: socket.socket, seconds: float) -> float:
    """Seconds until the server closes `s` (which must happen within `seconds`: recv's deadline)."""
    started = time.monotonic()
    s.settimeout(seconds)
    _read_to_close(s)
    return time.monotonic() - started


GET_STATUS = f"GET /v1/models/{MODEL} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()


@pytest.fixture
def limited_server(serving_dir):
    port = _free_port()
    proc = subprocess.Popen([FLYWHEEL, "serve", "--serving-dir", serving_dir, "--port", str(port),
                             "--max-connections", "4", "--read-timeout", "3", "--keep-alive-timeout", "1",
                             "--max-header-bytes", "4096"], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if b"200 OK" in _request(port, GET_STATUS, timeout=5):
                    break
            except OSError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() else ""
            time.sleep(0.5)
        yield port, proc
    finally:
        proc.terminate()
        proc.wait(timeout=60)


@pytest.mark.slow  # a flywheel process
def test_idle_slow_and_oversized_connections_are_closed_and_past_the_limit_requests_get_503(limited_server):
    port, proc = limited_server
    connect = lambda: socket.create_connection(("127.0.0.1", port), timeout=10)  # noqa: E731
    idle, slow_head, slow_body = connect(), connect(), connect()
    slow_head.sendall(f"GET /v1/models/{MODEL} HTTP/1.1\r\nHost: x\r\nX-Slow: ".encode())
    slow_body.sendall(f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(ROW)}\r\n\r\n".encode() + ROW[:5])
    # three connections open with no whole request: a fourth request is past --max-connections 4
    busy = _request(port, GET_STATUS)
    assert busy.startswith(b"HTTP/1.1 503 "), busy
    for s in (idle, slow_head, slow_body):
        assert _closed_within(s, 15.0) < 15.0  # --read-timeout 3: closed, where uvicorn alone never closes them
        s.close()
    kept = connect()
    kept.sendall(f"GET /v1/models/{MODEL} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert kept.recv(65536).startswith(b"HTTP/1.1 200 ")
    assert _closed_within(kept, 10.0) < 10.0, "idle after its answer: closed by --keep-alive-timeout"
    kept.close()
    big_head = _request(port, f"GET /v1/models/{MODEL} HTTP/1.1\r\nHost: x\r\nX-Big: {'a' * 5000}\r\n\r\n".encode())
    assert big_head.startswith(b"HTTP/1.1 431 ") and b"exceed the limit of 4096 bytes" in big_head
    rows = json.dumps({"instances": [ISSUE_ROW] * 200}).encode()  # a body far above the head limit, in one send
    big_body = _request(port, f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                              f"Content-Length: {len(rows)}\r\n\r\n".encode() + rows)
    assert big_body.startswith(b"HTTP/1.1 200 ") and big_body.count(b"],[") == 199
    for raw in (b"POST /v1/models/taxi:predict HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{}",
                b"POST /v1/models/taxi:predict HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n{}",
                b"GARBAGE\r\n\r\n", b"GET /v1/models/\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n"):
        answer = _request(port, raw)
        assert re.match(rb"HTTP/1.1 4\d\d ", answer), (raw, answer[:200])
        assert not _internals(answer.decode("latin-1")), answer
    flood = [connect() for _ in range(12)]  # past twice --max-connections (8 open): closed as they open
    for s in flood[8:]:
        assert _closed_within(s, 2.0) < 2.0  # before the 3 s read timeout closes the first eight
    assert all(_closed_within(s, 15.0) < 15.0 for s in flood[:8])
    for s in flood:
        s.close()
    assert b"200 OK" in _request(port, GET_STATUS), "the server still answers"
    assert proc.poll() is None


class _Transport:
    def __init__(self):
        self.written, self.closed = b"", False

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True


@pytest.mark.parametrize("first_read", [b"\r", b"\r\n", b"\r\n\r"])
def test_a_head_whose_blank_line_straddles_two_reads_is_not_refused(first_read):
    """The head's end split across two reads, the second carrying a body far above --max-header-bytes: the head
    is within the limit, so the request goes on (no 431)."""
    head = f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nContent-Length: 100000".encode()  # its blank line: \r\n\r\n
    protocol = connections.LimitedHttpToolsProtocol.__new__(connections.protocol(connections.ConnectionLimits(
        max_header_bytes=len(head) + 4)))
    protocol.transport = _Transport()
    protocol._head_bytes, protocol._head_tail = len(head + first_read), (head + first_read)[-3:]
    second_read = b"\r\n\r\n"[len(first_read):] + b"x" * 100_000
    assert not protocol._head_too_large(second_read) and not protocol.transport.closed
    protocol._head_bytes += 1  # the same head one byte longer is beyond the limit: refused
    assert protocol._head_too_large(second_read) and protocol.transport.written.startswith(b"HTTP/1.1 431 ")


@pytest.mark.slow  # a flywheel process
@pytest.mark.parametrize("flag,value,message", [
    ("--read-timeout", "0", "--read-timeout must be a number above 0, got 0.0"),
    ("--read-timeout", "nan", "--read-timeout must be a number above 0, got nan"),
    ("--keep-alive-timeout", "inf", "--keep-alive-timeout must be a number above 0, got inf"),
    ("--max-connections", "-3", "--max-connections must be a number above 0, got -3"),
    ("--max-load-retries", "-1", "--max-load-retries must be 0 or more, got -1"),
    ("--load-retry-interval", "0", "--load-retry-interval must be a number above 0, got 0.0"),
    ("--load-retry-interval", "inf", "--load-retry-interval must be a number above 0, got inf"),
])
def test_flywheel_serve_refuses_a_limit_out_of_range(tmp_path, flag, value, message):
    proc = subprocess.run([FLYWHEEL, "serve", "--serving-dir", str(tmp_path), flag, value],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 2
    assert message in proc.stderr


def test_the_served_app_takes_the_load_retries_given(serving_dir):
    from flywheel.api.serving import serving_app

    assert serving_app(serving_dir).state.registry.load_retries == models.LoadRetries(5, 60.0)
    retries = models.LoadRetries(max_retries=0, interval_seconds=2.5)
    assert serving_app(serving_dir, load_retries=retries).state.registry.load_retries == retries
