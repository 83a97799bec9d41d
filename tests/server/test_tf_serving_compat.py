"""TF Serving's own REST cases, run against `flywheel serve` with TF Serving's own test models.

The models are rebuilt by `tests/server/tf_serving_models.py` (the graphs and SignatureDefs of tensorflow/serving's
`servables/tensorflow/testdata/saved_model_half_plus_two.py`). Each case below is transcribed from tensorflow/serving
(the file named beside it): the request, and the status and body TF Serving answers — the whole JSON where its test
compares the whole JSON, the part of the error message where its test looks for a part (`HasSubstr`). Served as
TF Serving's tests serve them:
- `http_rest_api_handler_test.cc`: saved_model_half_plus_two_2_versions, version 123 only, label Version_Label -> 123;
- `tensorflow_model_server_test.py`: saved_model_half_plus_two_cpu as `default`;
- `g3doc/api_rest.md`: saved_model_half_plus_three;
- `util/json_tensor.cc` (the JSON rules api_rest.md states, with the messages that file writes) on those models.
"""

from __future__ import annotations

import base64
import concurrent.futures
import dataclasses
import json
import math
import os
import shutil
import socket
import subprocess
import time
from typing import Any, Optional

import httpx
import pytest
from starlette.testclient import TestClient

from flywheel.server import models, server
from flywheel.store import layout
from tests.conftest import FLYWHEEL, REPO
from tests.server import tf_serving_models

HANDLER = "http_rest_api_handler_test.cc"
SERVER_TEST = "tensorflow_model_server_test.py"
API_REST = "g3doc/api_rest.md"
JSON_TENSOR = "util/json_tensor.cc"
TWO = tf_serving_models.TWO_VERSIONS
THREE = tf_serving_models.HALF_PLUS_THREE
DEFAULT = "default"
UINT64_MAX = 2**64 - 1


@dataclasses.dataclass(frozen=True)
class Case:
    source: str  # the tensorflow/serving file the case comes from
    model: str  # the model the server serves (each server serves one)
    method: str
    path: str
    body: Any  # a JSON value, or raw text (a str) sent as it is
    status: int
    expect: Any = None  # the whole JSON answer, or (a str) part of the error message
    raw: Optional[str] = None  # text the answer's body must hold as it is written

    @property
    def id(self) -> str:
        return f"{self.source}:{self.method} {self.path} {str(self.body)[:60]}"


def _example(x: float) -> str:
    """A serialized tf.Example with one float feature x, as base64."""
    from tensorflow.core.example import example_pb2

    example = example_pb2.Example()
    example.features.feature["x"].float_list.value.append(x)
    return base64.b64encode(example.SerializeToString()).decode("ascii")


def _status(version: str = "123") -> dict:
    return {"model_version_status": [{"version": version, "state": "AVAILABLE",
                                      "status": {"error_code": "OK", "error_message": ""}}]}


M2 = f"/v1/models/{TWO}"
CASES = [
    # http_rest_api_handler_test.cc, UnsupportedApiCalls
    Case(HANDLER, TWO, "GET", "/v1/foo", None, 400, "Malformed request"),
    Case(HANDLER, TWO, "POST", "/v1/foo", "", 400, "Malformed request"),
    Case(HANDLER, TWO, "GET", "/v1/models", None, 400, "Missing model name"),
    Case(HANDLER, TWO, "GET", "/v1/models/debug/model_name", None, 400, "Malformed request"),
    Case(HANDLER, TWO, "POST", "/v1/models", "", 400, "Malformed request"),
    Case(HANDLER, TWO, "GET", "/v1/models/foo:predict", None, 400, "Malformed request"),
    Case(HANDLER, TWO, "GET", "/v1/models/foo/version/50:predict", None, 400, "Malformed request"),
    Case(HANDLER, TWO, "POST", "/v1/models/foo/version/50:regress", "", 400, "Malformed request"),
    Case(HANDLER, TWO, "POST", "/v1/models/foo/versions/HELLO:regress", "", 400, "Malformed request"),
    Case(HANDLER, TWO, "POST", f"/v1/models/foo/versions/{UINT64_MAX}:regress", "", 400, "Failed to convert version"),
    Case(HANDLER, TWO, "POST", "/v1/models/foo/metadata", "", 400, "Malformed request"),
    Case(HANDLER, TWO, "POST", "/v1/models/foo/label/some_label:regress", "", 400, "Malformed request"),
    Case(HANDLER, TWO, "POST", "/v1/models/foo/versions/50/labels/some_label:regress", "", 400, "Malformed request"),
    Case(HANDLER, TWO, "POST", "/v1/models/foo/versions/some_label:regress", "", 400, "Malformed request"),
    # PredictModelNameVersionErrors
    Case(HANDLER, TWO, "POST", "/v1/models/foo:predict", {"instances": [1]}, 404),
    Case(HANDLER, TWO, "POST", "/v1/models/foo/versions/50:predict", {"instances": [1]}, 404),
    Case(HANDLER, TWO, "POST", f"{M2}99:predict", {"instances": [1]}, 404),
    # PredictRequestErrors
    Case(HANDLER, TWO, "POST", f"{M2}:predict", "", 400, "JSON Parse error: The document is empty"),
    Case(HANDLER, TWO, "POST", f"{M2}:predict", "instances = [1, 2]", 400, "JSON Parse error: Invalid value"),
    Case(HANDLER, TWO, "POST", f"{M2}:predict", {"instances": ["x", "y"]}, 400, "not of expected type: float"),
    Case(HANDLER, TWO, "POST", f"{M2}/labels/Version_Nonexistent:predict", {"instances": ["x", "y"]}, 400,
         "Unrecognized servable version label"),
    Case(HANDLER, TWO, "POST", f"{M2}:predict", {"signature_name": 100}, 400,
         "'signature_name' key must be a string value."),
    # Predict
    Case(HANDLER, TWO, "POST", f"{M2}:predict", {"instances": [[1.0, 2.0], [3.0, 4.0]]}, 200,
         {"predictions": [[2.5, 3.0], [3.5, 4.0]]}),
    Case(HANDLER, TWO, "POST", f"{M2}/versions/123:predict", {"instances": [1.0, 2.0]}, 200,
         {"predictions": [2.5, 3.0]}),
    Case(HANDLER, TWO, "POST", f"{M2}/labels/Version_Label:predict", {"instances": [1.0, 2.0]}, 200,
         {"predictions": [2.5, 3.0]}),
    Case(HANDLER, TWO, "POST", f"{M2}/versions/123:predict",
         {"signature_name": "serving_default", "instances": [3.0, 4.0]}, 200, {"predictions": [3.5, 4.0]}),
    Case(HANDLER, TWO, "POST", f"{M2}/versions/123:predict",
         {"signature_name": "serving_default", "inputs": [3.0, 4.0]}, 200, {"outputs": [3.5, 4.0]}),
    # Regress
    Case(HANDLER, TWO, "POST", f"{M2}:regress", {"signature_name": "regress_x_to_y", "examples": [{"x": 80.0}]},
         200, {"results": [42]}),
    Case(HANDLER, TWO, "POST", f"{M2}/versions/123:regress",
         {"signature_name": "regress_x_to_y", "examples": [{"x": 80.0}]}, 200, {"results": [42]}),
    Case(HANDLER, TWO, "POST", f"{M2}/labels/Version_Label:regress",
         {"signature_name": "regress_x_to_y", "examples": [{"x": 80.0}]}, 200, {"results": [42]}),
    # Classify
    Case(HANDLER, TWO, "POST", f"{M2}:classify", {"signature_name": "classify_x_to_y", "examples": [{"x": 20.0}]},
         200, {"results": [[["", 12]]]}),
    Case(HANDLER, TWO, "POST", f"{M2}/labels/Version_Label:classify",
         {"signature_name": "classify_x_to_y", "examples": [{"x": 10.0}]}, 200, {"results": [[["", 7]]]}),
    # GetStatus
    Case(HANDLER, TWO, "GET", M2, None, 200, _status()),
    Case(HANDLER, TWO, "GET", f"{M2}/versions/123", None, 200, _status()),
    Case(HANDLER, TWO, "GET", f"{M2}/labels/Version_Label", None, 200, _status()),
    # GetModelMetadata: compared with saved_model_half_plus_two_2_versions_metadata.json (`METADATA` below)
    Case(HANDLER, TWO, "GET", f"{M2}/metadata", None, 200, "metadata"),

    # tensorflow_model_server_test.py: testClassifyREST, testRegressREST, testPredictREST, testPredictColumnarREST,
    # testGetStatusREST, testGetModelMetadataREST (half_plus_two_model_metadata.json), testPrometheusEndpoint
    Case(SERVER_TEST, DEFAULT, "POST", "/v1/models/default:classify",
         {"signature_name": "classify_x_to_y", "examples": [{"x": 2.0}]}, 200, {"results": [[["", 3.0]]]}),
    Case(SERVER_TEST, DEFAULT, "POST", "/v1/models/default:regress",
         {"signature_name": "regress_x_to_y", "examples": [{"x": 2.0}]}, 200, {"results": [3.0]}),
    Case(SERVER_TEST, DEFAULT, "POST", "/v1/models/default:predict", {"instances": [2.0, 3.0, 4.0]}, 200,
         {"predictions": [3.0, 3.5, 4.0]}),
    Case(SERVER_TEST, DEFAULT, "POST", "/v1/models/default:predict", {"inputs": [2.0, 3.0, 4.0]}, 200,
         {"outputs": [3.0, 3.5, 4.0]}),
    Case(SERVER_TEST, DEFAULT, "GET", "/v1/models/default", None, 200, _status()),
    Case(SERVER_TEST, DEFAULT, "GET", "/v1/models/default/metadata", None, 200, "metadata"),
    Case(SERVER_TEST, DEFAULT, "GET", "/monitoring/prometheus/metrics", None, 200, raw="# TYPE"),

    # g3doc/api_rest.md, "Example" (saved_model_half_plus_three)
    Case(API_REST, THREE, "GET", f"/v1/models/{THREE}", None, 200, _status()),
    Case(API_REST, THREE, "POST", f"/v1/models/{THREE}:predict", {"instances": [1.0, 2.0, 5.0]}, 200,
         {"predictions": [3.5, 4.0, 5.5]}),
    Case(API_REST, THREE, "POST", f"/v1/models/{THREE}:regress",
         {"signature_name": "tensorflow/serving/regress", "examples": [{"x": 1.0}, {"x": 2.0}]}, 200,
         {"results": [3.5, 4.0]}),
    Case(API_REST, THREE, "POST", "/v1/models/half:predict", {"instances": [1.0, 5.0]}, 404,
         {"error": "Servable not found for request: Latest(half)"}),
    # api_rest.md's row format, "List of 2 tensors each of [1, 2] shape", on an input with no static shape
    Case(API_REST, THREE, "POST", f"/v1/models/{THREE}:predict", {"instances": [[[1, 2]], [[3, 4]]]}, 200,
         {"predictions": [[[3.5, 4.0]], [[4.5, 5.0]]]}),
    Case(API_REST, THREE, "POST", f"/v1/models/{THREE}:predict", {"inputs": [[[1, 2]], [[3, 4]]]}, 200,
         {"outputs": [[[3.5, 4.0]], [[4.5, 5.0]]]}),
    Case(API_REST, THREE, "POST", f"/v1/models/{THREE}:predict", {"inputs": 2.0}, 200, {"outputs": 4.0}),
    Case(API_REST, DEFAULT, "POST", "/v1/models/default:predict", "{\"instances\": [NaN, Infinity, -Infinity]}",
         200, raw='[NaN,Infinity,-Infinity]'),
    Case(API_REST, DEFAULT, "POST", "/v1/models/default:predict",
         {"signature_name": "regress_x_to_y", "instances": [{"b64": _example(80.0)}]}, 200,
         {"predictions": [[42.0]]}),
    Case(API_REST, DEFAULT, "POST", "/v1/models/default:regress",
         {"signature_name": "regress_x_to_y", "context": {"x": 20.0}, "examples": [{}, {}]}, 200,
         {"results": [12.0, 12.0]}),

    # util/json_tensor.cc: the rules, and the messages it writes
    Case(JSON_TENSOR, DEFAULT, "POST", "/v1/models/default:predict", {"instances": [[1.0], [2.0]]}, 200,
         {"predictions": [[2.5], [3.0]]}),
    Case(JSON_TENSOR, DEFAULT, "POST", "/v1/models/default:predict", {"inputs": [[1.0], [2.0]]}, 200,
         {"outputs": [[2.5], [3.0]]}),
    Case(JSON_TENSOR, DEFAULT, "POST", "/v1/models/default:predict", {"instances": [0.2]}, 200,
         {"predictions": [2.1]}, raw="[2.1]"),  # WriteDecimal: float32 as its short text, not 2.0999999046325684
    Case(JSON_TENSOR, DEFAULT, "POST", "/v1/models/default:predict", {"instances": [[1.0], [2.0, 3.0]]}, 400,
         "Expecting tensor size: 1 but got: 2"),
    Case(JSON_TENSOR, DEFAULT, "POST", "/v1/models/default:predict", {"instances": [[1.0], [[2.0]]]}, 400,
         "Failed to process element: 1 of 'instances' list. Error: Expecting shape [1] but got: [1,1]"),
    Case(JSON_TENSOR, DEFAULT, "POST", "/v1/models/default:predict", {"instances": [[1.0, [2.0]]]}, 400,
         "Encountered list at unexpected level: 1 expected < 1"),
    Case(JSON_TENSOR, DEFAULT, "POST", "/v1/models/default:predict", {"instances": [[[1.0], 2.0]]}, 400,
         "JSON Value: 2.0 found at incorrect level: 2 in the JSON DOM. Expected at level: 2"),
    Case(JSON_TENSOR, DEFAULT, "POST", "/v1/models/default:predict", {"instances": [[[1.0], [2.0, 3.0]]]}, 400,
         "Encountered list at unexpected size: 2 at level: 1 expected size: 1"),
    Case(JSON_TENSOR, DEFAULT, "POST", "/v1/models/default:predict", {"instances": [[1.0], [2.0]], "inputs": []},
         400, "Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist"),
    Case(JSON_TENSOR, DEFAULT, "POST", "/v1/models/default:predict", {"instances": [True]}, 400,
         "JSON Value: true Type: True is not of expected type: float"),
    Case(JSON_TENSOR, DEFAULT, "POST", "/v1/models/default:predict", [1], 400, "JSON Value: [1] Is not object"),
    Case(JSON_TENSOR, DEFAULT, "POST", "/v1/models/default:predict", {"instances": {"x": [1.0]}}, 400,
         "Expecting 'instances' to be an list/array"),
    Case(JSON_TENSOR, DEFAULT, "POST", "/v1/models/default:predict", {"inputs": []}, 200, {"outputs": []}),
    Case(JSON_TENSOR, DEFAULT, "POST", "/v1/models/default:predict", {"instances": []}, 400,
         "No values in 'instances' array"),
    Case(JSON_TENSOR, DEFAULT, "POST", "/v1/models/default:predict", {"inputs": {"y": [1.0]}}, 400,
         "Missing named input: x in 'inputs' object."),
    Case(JSON_TENSOR, DEFAULT, "POST", "/v1/models/default:regress", {"signature_name": "regress_x_to_y"}, 400,
         "When method is classify, key 'examples' is expected and was not found"),
    Case(JSON_TENSOR, DEFAULT, "POST", "/v1/models/default:regress",
         {"signature_name": "regress_x_to_y", "examples": []}, 400, "'examples' value is an empty array"),
    Case(JSON_TENSOR, DEFAULT, "POST", "/v1/models/default:regress",
         {"signature_name": "regress_x_to_y", "examples": [[1.0]]}, 400,
         "Example must be JSON object but got JSON Array"),
    Case(JSON_TENSOR, DEFAULT, "POST", "/v1/models/default:regress",
         {"signature_name": "regress_x_to_y", "examples": [{"x": [1.0, "a"]}]}, 400,
         "Unexpected element type in feature: x expecting type: float"),
    Case(JSON_TENSOR, DEFAULT, "POST", "/v1/models/default:regress",
         {"signature_name": "regress_x_to_y", "examples": [{"x": UINT64_MAX}]}, 400,
         "Feature: x has uint64_t element. Only int64_t is supported."),
    Case(JSON_TENSOR, DEFAULT, "POST", "/v1/models/default:regress",
         {"signature_name": "regress_x_to_y", "examples": [{"x": None}]}, 400,
         "Feature: x has element with unexpected JSON type: Null"),
    Case(JSON_TENSOR, DEFAULT, "POST", "/v1/models/default:classify", {"examples": [{"x": 1.0}]}, 400,
         "Expected classification signature method_name to be tensorflow/serving/classify. Was: "
         "tensorflow/serving/predict"),
    Case(JSON_TENSOR, DEFAULT, "POST", "/v1/models/default:regress", {"signature_name": "nope", "examples": [{}]},
         400, "No signature was found with the name: nope"),
]

_FLOAT, _STRING = "DT_FLOAT", "DT_STRING"
_COLUMN = [-1, 1]
# saved_model_half_plus_two_2_versions_metadata.json and half_plus_two_model_metadata.json, transcribed:
# {signature: (method, {input: (tensor, dtype, dims or None for an unknown rank)}, {output: (...)})}
_SIGNATURES = {
    "regress_x2_to_y3": ("regress", {"inputs": ("x2:0", _FLOAT, _COLUMN)}, {"outputs": ("y3:0", _FLOAT, _COLUMN)}),
    "serving_default": ("predict", {"x": ("x:0", _FLOAT, _COLUMN)}, {"y": ("y:0", _FLOAT, _COLUMN)}),
    "classify_x_to_y": ("classify", {"inputs": ("tf_example:0", _STRING, None)}, {"scores": ("y:0", _FLOAT, _COLUMN)}),
    "regress_x_to_y2": ("regress", {"inputs": ("tf_example:0", _STRING, None)}, {"outputs": ("y2:0", _FLOAT, _COLUMN)}),
    "regress_x_to_y": ("regress", {"inputs": ("tf_example:0", _STRING, None)}, {"outputs": ("y:0", _FLOAT, _COLUMN)}),
}
METADATA = {
    TWO: {**_SIGNATURES, "classify_x2_to_y3": ("classify", {"inputs": ("x2:0", _FLOAT, _COLUMN)},
                                               {"scores": ("y3:0", _FLOAT, _COLUMN)})},
    DEFAULT: _SIGNATURES,
}


def _tensor_info(tensor: str, dtype: str, dims: Optional[list]) -> dict:
    shape = {"dim": [], "unknown_rank": True} if dims is None else {
        "dim": [{"size": str(d), "name": ""} for d in dims], "unknown_rank": False}
    return {"dtype": dtype, "tensor_shape": shape, "name": tensor}


def _metadata(model: str) -> dict:
    defs = {name: {"inputs": {k: _tensor_info(*v) for k, v in inputs.items()},
                   "outputs": {k: _tensor_info(*v) for k, v in outputs.items()},
                   "method_name": f"tensorflow/serving/{method}", "defaults": {}}
            for name, (method, inputs, outputs) in METADATA[model].items()}
    return {"model_spec": {"name": model, "signature_name": "", "version": "123"},
            "metadata": {"signature_def": {"signature_def": defs}}}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, str]:
    return tf_serving_models.build(str(tmp_path_factory.mktemp("tf_serving_models")))


@pytest.fixture(scope="module")
def clients(built, tmp_path_factory) -> dict[str, TestClient]:
    """One server per model, as TF Serving's tests serve them."""
    base = tmp_path_factory.mktemp("served")
    shutil.copytree(os.path.join(built[TWO], "00000123"), base / TWO / "00000123")  # version 123 only
    shutil.copytree(os.path.join(built[tf_serving_models.HALF_PLUS_TWO], "00000123"), base / DEFAULT / "00000123")
    registries = {TWO: models.ModelRegistry(str(base), TWO, poll_seconds=3600.0, labels={"Version_Label": 123}),
                  DEFAULT: models.ModelRegistry(str(base), DEFAULT, poll_seconds=3600.0),
                  THREE: models.ModelRegistry(os.path.dirname(built[THREE]), THREE, poll_seconds=3600.0)}
    opened = {name: TestClient(server.create_app(registry)) for name, registry in registries.items()}
    for client in opened.values():
        client.__enter__()
    yield opened
    for client in opened.values():
        client.__exit__(None, None, None)


def _send(client: Any, case: Case) -> Any:
    content = case.body if isinstance(case.body, str) else None if case.body is None else json.dumps(case.body)
    return client.request(case.method, case.path, content=content)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_tf_serving_rest_case(clients, case):
    response = _send(clients[case.model], case)
    assert response.status_code == case.status, response.text
    if case.raw is not None:
        text = response.text if case.expect is None else response.text.replace(" ", "").replace("\n", "")
        assert case.raw in text, response.text
    if case.path.startswith("/v1/"):
        assert response.headers["content-type"] == "application/json"
        answer = json.loads(response.text)
        if case.status >= 400:
            assert set(answer) == {"error"}, answer
        if case.expect == "metadata":
            assert answer == _metadata(case.model)
        elif isinstance(case.expect, str):
            assert case.expect in answer["error"], answer
        elif case.expect is not None:
            assert answer == case.expect


def test_nan_and_infinity_come_back_as_tf_serving_writes_them(clients):
    response = clients[DEFAULT].post("/v1/models/default:predict", content=b'{"instances": [NaN, -Infinity]}')
    values = json.loads(response.text)["predictions"]
    assert math.isnan(values[0]) and values[1] == -math.inf


# ---- TF Serving's layout ------------------------------------------------------------------------------------------

def _registry(serving_dir: str, model: str) -> models.ModelRegistry:
    return models.ModelRegistry(serving_dir, model, poll_seconds=3600.0)


def test_zero_padded_versions_without_push_json_are_served_as_their_numbers(built):
    serving_dir = os.path.dirname(built[TWO])
    assert layout.versions(serving_dir, TWO) == [123, 124]
    assert layout.latest(serving_dir, TWO).manifest == {}
    with TestClient(server.create_app(_registry(serving_dir, TWO))) as client:
        assert client.get(f"/v1/models/{TWO}").json() == _status("124")
        answer = client.post(f"/v1/models/{TWO}/versions/124:predict", json={"instances": [1.0]})
        assert answer.json() == {"predictions": [2.5]} and answer.headers["X-Model-Version"] == "124"


@pytest.mark.parametrize("names,served", [
    (["00000123", "99999999999999999999"], 123),  # beyond int64: TF Serving's safe_strto64 refuses it, so no version
    (["00000123", "9223372036854775807"], 9223372036854775807),  # int64's largest is a version
    (["123", "00000123"], 123),  # two names of one version: one is served (the plain one here)
    (["+7", "-8", " 9", "0x10", "٣"], 7),  # '+' read as TF Serving reads it; signs, spaces, hex, non-ASCII digits not
])
def test_version_folder_names_are_read_as_tf_serving_reads_them(built, tmp_path, names, served):
    root = tmp_path / "m"
    for name in names:
        shutil.copytree(os.path.join(built[tf_serving_models.HALF_PLUS_TWO], "00000123"),
                        root / name)
    assert max(layout.versions(str(tmp_path), "m")) == served
    with TestClient(server.create_app(_registry(str(tmp_path), "m"))) as client:
        status = client.get("/v1/models/m").json()["model_version_status"]
        assert [s["version"] for s in status if s["state"] == "AVAILABLE"] == [str(served)]
        answer = client.post(f"/v1/models/m/versions/{served}:predict", json={"instances": [4.0]})
        assert answer.json() == {"predictions": [4.0]}


def test_a_version_beyond_int64_in_the_url_is_400_as_tf_serving(clients):
    for path in (f"/v1/models/{DEFAULT}/versions/9223372036854775808", f"/v1/models/{DEFAULT}/versions/{'9' * 5000}"):
        answer = clients[DEFAULT].get(path)
        assert answer.status_code == 400 and "Failed to convert version" in answer.json()["error"]


def test_rollouts_and_batch_inference_take_versions_without_push_json(built, tmp_path):
    from flywheel.batch import model_version
    from flywheel.rollout import store

    serving_dir = str(tmp_path)
    for name in ("00000123", "00000124"):
        shutil.copytree(os.path.join(built[TWO], name), tmp_path / TWO / name)
    started = store.start(serving_dir, TWO, 123, mode="canary", percent=10.0)
    assert (started.stable, started.candidate) == (124, 123)
    assert layout.current(serving_dir, TWO).path == os.path.join(serving_dir, TWO, "00000124")
    with pytest.raises(model_version.PredictError, match="examples"):  # found, read; it has no tf.Example signature
        model_version.resolve(serving_dir, TWO, 124)


# ---- a real `flywheel serve` process -------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # a flywheel process
def test_flywheel_serve_answers_tf_serving_cases_over_http(built):
    port = _free_port()
    proc = subprocess.Popen([FLYWHEEL, "serve", "--serving-dir", os.path.dirname(built[THREE]), "--model", THREE,
                             "--port", str(port)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                status = httpx.get(f"{base}/v1/models/{THREE}", timeout=5)
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() else ""
                time.sleep(0.2)
        assert status.json() == _status()
        for case in [c for c in CASES if c.model == THREE]:
            answer = httpx.request(case.method, base + case.path, timeout=30, content=(
                case.body if isinstance(case.body, str) else None if case.body is None else json.dumps(case.body)))
            assert answer.status_code == case.status, (case, answer.text)
            if isinstance(case.expect, dict):
                assert answer.json() == case.expect, case
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    assert proc.returncode == 0, proc.stderr.read()


def test_nested_and_scalar_requests_are_answered_and_logged(built, tmp_path):
    from flywheel.server.request_log import RequestLog

    log = RequestLog(str(tmp_path / "logs"))
    registry = _registry(os.path.dirname(built[THREE]), THREE)
    bodies = [({"inputs": 2.0}, {"outputs": 4.0}), ({"instances": [[[1, 2]], [[3, 4]]]}, None),
              ({"instances": [1.0, 2.0]}, {"predictions": [3.5, 4.0]})]
    with TestClient(server.create_app(registry, request_log=log)) as client:
        for body, expected in bodies:
            answer = client.post(f"/v1/models/{THREE}:predict", json=body)
            assert answer.status_code == 200, answer.text
            assert expected is None or answer.json() == expected
    counters = log.counters()
    assert counters["logged_rows"] == 5 and counters["write_errors"] == 0, counters


def test_requests_of_other_shapes_are_batched_only_with_their_like(built, tmp_path):
    shutil.copytree(os.path.join(built[tf_serving_models.HALF_PLUS_TWO], "00000123"), tmp_path / DEFAULT / "00000123")
    app = server.create_app(_registry(str(tmp_path), DEFAULT), max_batch_size=64, batch_timeout_ms=300.0,
                            num_batch_threads=1)
    bodies = [({"instances": [1.0, 2.0]}, {"predictions": [2.5, 3.0]}),
              ({"instances": [[1.0], [2.0]]}, {"predictions": [[2.5], [3.0]]}),
              ({"instances": [4.0]}, {"predictions": [4.0]}),
              ({"instances": [[4.0]]}, {"predictions": [[4.0]]}),
              ({"inputs": [[1.0, 2.0, 3.0]]}, {"outputs": [[2.5, 3.0, 3.5]]}),
              ({"inputs": 6.0}, {"outputs": 5.0})]
    with TestClient(app) as client, concurrent.futures.ThreadPoolExecutor(len(bodies)) as pool:
        answers = list(pool.map(lambda body: client.post("/v1/models/default:predict", json=body[0]), bodies))
        calls = app.state.batcher.calls
    assert [a.json() for a in answers] == [expected for _, expected in bodies]
    assert calls < len(bodies), f"{len(bodies)} concurrent requests of 4 shapes took {calls} TensorFlow calls"


@pytest.fixture(scope="module")
def echo_client(tmp_path_factory):
    """A model answering each input as it got it: one input of each JSON type's dtypes (api_rest.md's JSON mapping)."""
    import tensorflow as tf

    path = tmp_path_factory.mktemp("echo") / "echo" / "00000001"
    dtypes = {"i32": tf.int32, "u8": tf.uint8, "i64": tf.int64, "flag": tf.bool, "f64": tf.float64,
              "text": tf.string, "blob_bytes": tf.string}
    builder = tf.compat.v1.saved_model.Builder(str(path))
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        inputs = {name: tf.compat.v1.placeholder(dtype, [None], name=name) for name, dtype in dtypes.items()}
        outputs = {name: tf.identity(tensor, name=f"{name}_out") for name, tensor in inputs.items()}
        info = tf.compat.v1.saved_model.utils.build_tensor_info
        signature = tf.compat.v1.saved_model.signature_def_utils.build_signature_def(
            {k: info(v) for k, v in inputs.items()}, {k: info(v) for k, v in outputs.items()},
            "tensorflow/serving/predict")
        builder.add_meta_graph_and_variables(session, ["serve"], signature_def_map={"serving_default": signature})
    builder.save()
    with TestClient(server.create_app(_registry(str(path.parent.parent), "echo"))) as client:
        yield client


ECHO_ROW = {"i32": -7, "u8": 255, "i64": 2**62, "flag": True, "f64": 0.1, "text": "héllo",
            "blob_bytes": {"b64": base64.b64encode(b"\x00\xff").decode("ascii")}}


def test_every_json_type_goes_to_its_dtypes_and_back(echo_client):
    answer = echo_client.post("/v1/models/echo:predict", json={"instances": [ECHO_ROW, ECHO_ROW]})
    assert answer.status_code == 200, answer.text
    # _bytes outputs come back base64-encoded (api_rest.md, "Output of binary values"); the others as they went
    assert answer.json() == {"predictions": [ECHO_ROW, ECHO_ROW]}
    columnar = echo_client.post("/v1/models/echo:predict", json={"inputs": {k: [v] for k, v in ECHO_ROW.items()}})
    assert columnar.json() == {"outputs": {k: [v] for k, v in ECHO_ROW.items()}}


@pytest.mark.parametrize("name,value,message", [
    ("i32", 2**31, "JSON Value: 2147483648 Type: Number is not of expected type: int32"),
    ("u8", -1, "JSON Value: -1 Type: Number is not of expected type: uint8"),
    ("i64", 1.5, "JSON Value: 1.5 Type: Number is not of expected type: int64"),
    ("flag", 1, "JSON Value: 1 Type: Number is not of expected type: bool"),
    ("f64", "0.1", 'JSON Value: "0.1" Type: String is not of expected type: double'),
    ("text", {"b64": "%%"}, "Unable to base64 decode"),
    ("text", {"b64": "aGk=", "x": 1}, "not formatted correctly for base64 data"),
])
def test_a_value_of_the_wrong_json_type_is_named(echo_client, name, value, message):
    answer = echo_client.post("/v1/models/echo:predict", json={"instances": [{**ECHO_ROW, name: value}]})
    assert answer.status_code == 400 and message in answer.json()["error"], answer.text
    assert f"Failed to process element: 0 key: {name} of 'instances' list" in answer.json()["error"]


# tensorflow_model_server_test.py's test_tf_saved_model_save and test_tf_saved_model_save_multiple_signatures send
# gRPC requests (x = [2.0]) to TF2 SavedModels whose input has no shape at all; here the same requests over REST.
GRPC_AS_REST = [
    ("tf2", {"instances": [2.0]}, 200, {"predictions": [12.0]}),
    ("tf2", {"inputs": [2.0]}, 200, {"outputs": [12.0]}),
    ("tf2_multi", {"signature_name": "custom_signature_key", "inputs": [2.0]}, 200, {"outputs": 2.0}),
    ("tf2_multi", {"inputs": [2.0]}, 200, {"outputs": 1.0}),
    # a scalar output has no row to put in "predictions": json_tensor.cc's MakeRowFormatJsonFromTensors refuses it
    ("tf2_multi", {"instances": [2.0]}, 400, {"error": "Tensor name: y has no shape information "}),
]


@pytest.fixture(scope="module")
def tf2_clients(tmp_path_factory):
    import tensorflow as tf

    base = tmp_path_factory.mktemp("tf2")
    root = tf.train.Checkpoint()
    root.v1, root.v2 = tf.Variable(3.0), tf.Variable(2.0)
    root.f = tf.function(lambda x: {"y": root.v1 * root.v2 * x})
    tf.saved_model.save(root, str(base / "tf2" / "00000123"), root.f.get_concrete_function(
        tf.TensorSpec(None, tf.float32)))
    multi = tf.train.Checkpoint()
    multi.f = tf.function(lambda x: {"y": 1.0}, input_signature=[tf.TensorSpec(None, tf.float32)])
    multi.g = tf.function(lambda x: {"y": 2.0}, input_signature=[tf.TensorSpec(None, tf.float32)])
    tf.saved_model.save(multi, str(base / "tf2_multi" / "00000123"),
                        signatures={"serving_default": multi.f, "custom_signature_key": multi.g})
    clients = {name: TestClient(server.create_app(_registry(str(base), name))) for name in ("tf2", "tf2_multi")}
    for client in clients.values():
        client.__enter__()
    yield clients
    for client in clients.values():
        client.__exit__(None, None, None)


@pytest.mark.parametrize("model,body,status,expected", GRPC_AS_REST)
def test_tf2_saved_models_without_input_shapes_answer_as_tf_serving(tf2_clients, model, body, status, expected):
    answer = tf2_clients[model].post(f"/v1/models/{model}:predict", json=body)
    assert (answer.status_code, answer.json()) == (status, expected)


def test_a_savedmodel_written_as_text_is_served_as_tf_serving_serves_it(built, tmp_path):
    from google.protobuf import text_format

    version = tmp_path / DEFAULT / "00000007"
    shutil.copytree(os.path.join(built[tf_serving_models.HALF_PLUS_TWO], "00000123"), version)
    proto = layout.read_saved_model(str(version))
    (version / layout.SAVED_MODEL_TEXT_FILE).write_text(text_format.MessageToString(proto))
    (version / layout.SAVED_MODEL_FILE).unlink()
    assert layout.versions(str(tmp_path), DEFAULT) == [7]
    with TestClient(server.create_app(_registry(str(tmp_path), DEFAULT))) as client:
        assert client.post("/v1/models/default:predict", json={"instances": [2.0]}).json() == {"predictions": [3.0]}
        assert client.get("/v1/models/default/metadata").json()["metadata"] == _metadata(DEFAULT)["metadata"]


def test_a_version_folder_beyond_int64_costs_the_request_log_nothing(built, tmp_path):
    """It used to be served, and then every flush of the request log failed on its version number."""
    import pyarrow.parquet as pq

    from flywheel.server.request_log import RequestLog

    for name in ("1", "99999999999999999999"):
        shutil.copytree(os.path.join(built[tf_serving_models.HALF_PLUS_TWO], "00000123"), tmp_path / "m" / name)
    log = RequestLog(str(tmp_path / "logs"))
    with TestClient(server.create_app(_registry(str(tmp_path), "m"), request_log=log)) as client:
        for x in (1.0, 2.0):
            assert client.post("/v1/models/m:predict", json={"instances": [x]}).json() == {"predictions": [x / 2 + 2]}
    assert log.counters()["write_errors"] == 0 and log.counters()["logged_rows"] == 2, log.counters()
    table = pq.read_table(str(tmp_path / "logs"))
    assert table.column("model_version").to_pylist() == [1, 1]


@pytest.fixture(scope="module")
def labelled_client(tmp_path_factory):
    """classify with class labels and scores (two classes), classify with labels only, regress to a [batch] output:
    the shapes classifier.cc and regressor.cc take beyond half_plus_two's."""
    import tensorflow as tf

    path = tmp_path_factory.mktemp("labelled") / "labelled" / "00000001"
    sc = tf.compat.v1.saved_model.signature_constants
    builder = tf.compat.v1.saved_model.Builder(str(path))
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        serialized = tf.compat.v1.placeholder(tf.string, [None], name="tf_example")
        x = tf.compat.v1.parse_example(serialized, {"x": tf.io.FixedLenFeature([1], tf.float32)})["x"]
        scores = tf.concat([x, 1.0 - x], axis=1)
        classes = tf.tile(tf.constant([["yes", "no"]]), [tf.shape(x)[0], 1])
        signatures = {
            "both": _signature_def({sc.CLASSIFY_INPUTS: serialized},
                                   {sc.CLASSIFY_OUTPUT_CLASSES: classes, sc.CLASSIFY_OUTPUT_SCORES: scores},
                                   sc.CLASSIFY_METHOD_NAME),
            "labels": _signature_def({sc.CLASSIFY_INPUTS: serialized}, {sc.CLASSIFY_OUTPUT_CLASSES: classes},
                                     sc.CLASSIFY_METHOD_NAME),
            "flat": _signature_def({sc.REGRESS_INPUTS: serialized}, {sc.REGRESS_OUTPUTS: tf.reshape(x, [-1]) * 2.0},
                                   sc.REGRESS_METHOD_NAME),
            "wide": _signature_def({sc.REGRESS_INPUTS: serialized}, {sc.REGRESS_OUTPUTS: scores},
                                   sc.REGRESS_METHOD_NAME),
        }
        builder.add_meta_graph_and_variables(session, ["serve"], signature_def_map=signatures)
    builder.save()
    with TestClient(server.create_app(_registry(str(path.parent.parent), "labelled"))) as client:
        yield client


def _signature_def(inputs: dict, outputs: dict, method: str) -> Any:
    import tensorflow as tf

    info = tf.compat.v1.saved_model.utils.build_tensor_info
    return tf.compat.v1.saved_model.signature_def_utils.build_signature_def(
        {k: info(v) for k, v in inputs.items()}, {k: info(v) for k, v in outputs.items()}, method)


@pytest.mark.parametrize("method,signature,status,expected", [
    ("classify", "both", 200, {"results": [[["yes", 0.25], ["no", 0.75]], [["yes", 0.5], ["no", 0.5]]]}),
    ("classify", "labels", 200, {"results": [[["yes", 0.0], ["no", 0.0]], [["yes", 0.0], ["no", 0.0]]]}),
    ("regress", "flat", 200, {"results": [0.5, 1.0]}),
    # regressor.cc: "Expected output Tensor shape to be either [batch_size] or [batch_size, 1] but got [2,2]"
    ("regress", "wide", 400, {"error": "Expected output Tensor shape to be either [batch_size] or [batch_size, 1] "
                                       "but got [2,2]"}),
    ("regress", "both", 400, {"error": "Expected regression signature method_name to be tensorflow/serving/regress. "
                                       "Was: tensorflow/serving/classify"}),
])
def test_classify_and_regress_results_as_tf_serving_writes_them(labelled_client, method, signature, status,
                                                                 expected):
    body = {"signature_name": signature, "examples": [{"x": 0.25}, {"x": [0.5]}]}
    answer = labelled_client.post(f"/v1/models/labelled:{method}", json=body)
    assert (answer.status_code, answer.json()) == (status, expected)
