"""The REST server against a real pushed taxi model: TF Serving's routes, formats, errors and status codes."""

from __future__ import annotations

import base64
import json
import re

import numpy as np
import pytest
from starlette.testclient import TestClient

from flywheel.server import models, server
from flywheel.server.errors import InvalidArgument
from tests.server.conftest import ISSUE_ROW, MODEL, add_version

RAW_INPUTS = sorted(ISSUE_ROW)


@pytest.fixture(scope="module")
def client(tmp_path_factory, pushed_version):
    """One running app over version 1, for the tests that only read."""
    folder = str(tmp_path_factory.mktemp("shared") / "serving")
    add_version(folder, pushed_version, 1)
    with _client(folder) as running:
        yield running


def _client(serving_dir: str, **kwargs) -> TestClient:
    registry = models.ModelRegistry(serving_dir, MODEL, poll_seconds=kwargs.pop("poll_seconds", 3600.0))
    return TestClient(server.create_app(registry, **kwargs))


def _example(row: dict) -> bytes:
    import tensorflow as tf

    feature = {}
    for key, value in row.items():
        if isinstance(value, str):
            feature[key] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode()]))
        elif key in ("trip_seconds", "trip_start_hour", "trip_start_day", "trip_start_month"):
            feature[key] = tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
        else:
            feature[key] = tf.train.Feature(float_list=tf.train.FloatList(value=[value]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def test_model_status_and_metadata_follow_tf_serving(client):
    status = client.get(f"/v1/models/{MODEL}")
    assert status.status_code == 200
    assert status.json() == {"model_version_status": [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}
    assert client.get(f"/v1/models/{MODEL}/versions/1").json() == status.json()
    meta = client.get(f"/v1/models/{MODEL}/metadata").json()
    assert meta["model_spec"] == {"name": MODEL, "signature_name": "", "version": "1"}
    defs = meta["metadata"]["signature_def"]["signature_def"]
    assert {"serving_default", "serving_examples", "transform_features"} <= set(defs)
    raw = defs["serving_default"]
    assert sorted(raw["inputs"]) == RAW_INPUTS
    assert raw["inputs"]["payment_type"]["dtype"] == "DT_STRING"
    assert raw["inputs"]["trip_seconds"]["dtype"] == "DT_INT64"
    assert raw["inputs"]["fare"]["dtype"] == "DT_FLOAT"
    assert raw["inputs"]["fare"]["tensor_shape"] == {"dim": [{"size": "-1", "name": ""}], "unknown_rank": False}
    assert raw["method_name"] == "tensorflow/serving/predict"
    assert list(defs["serving_examples"]["inputs"]) == ["examples"]
    assert client.get(f"/v1/models/{MODEL}/versions/1/metadata").json() == meta


def test_the_issue_row_is_answered_in_row_and_columnar_format_like_the_examples_signature(client):
    row = client.post(f"/v1/models/{MODEL}:predict", json={"instances": [ISSUE_ROW, ISSUE_ROW]})
    assert row.status_code == 200, row.text
    predictions = row.json()["predictions"]
    assert len(predictions) == 2 and len(predictions[0]) == 1 and 0.0 <= predictions[0][0] <= 1.0
    columnar = client.post(f"/v1/models/{MODEL}/versions/1:predict",
                           json={"inputs": {k: [v, v] for k, v in ISSUE_ROW.items()}})
    assert columnar.status_code == 200, columnar.text
    assert columnar.json() == {"outputs": predictions}
    serialized = base64.b64encode(_example(ISSUE_ROW)).decode()
    examples = client.post(f"/v1/models/{MODEL}:predict",
                           json={"signature_name": "serving_examples", "instances": [{"b64": serialized}]})
    assert examples.status_code == 200, examples.text
    assert examples.json()["predictions"][0][0] == pytest.approx(predictions[0][0], abs=1e-6)


BAD_REQUESTS = [
    ("{not json", "JSON Parse error"),
    ("", "JSON Parse error: The document is empty"),
    (json.dumps({"instances": [{k: v for k, v in ISSUE_ROW.items() if k != "trip_miles"}]}), r"missing: trip_miles"),
    (json.dumps({"instances": [{**ISSUE_ROW, "tolls": 1.0}]}), r"unknown: tolls"),
    (json.dumps({"instances": [{**ISSUE_ROW, "fare": "8.5"}]}),
     r"element: 0 key: fare of 'instances' list.*\"8.5\" Type: String is not of expected type: float"),
    (json.dumps({"instances": [{**ISSUE_ROW, "trip_seconds": 600.5}]}),
     r"key: trip_seconds .*is not of expected type: int64"),
    (json.dumps({"instances": [{**ISSUE_ROW, "payment_type": 3}]}), r"key: payment_type .*expected type: string"),
    (json.dumps({"instances": [ISSUE_ROW, {**ISSUE_ROW, "trip_seconds": 2**63}]}),
     r"element: 1 key: trip_seconds .*JSON Value: 9223372036854775808 Type: Number is not of expected type: int64"),
    (json.dumps({"instances": [{**ISSUE_ROW, "fare": [8.5, 9.0]}]}), r"key: fare .*is a list"),
    (json.dumps({"inputs": {k: [v] for k, v in ISSUE_ROW.items() if k != "fare"}}),
     r"Missing named input: fare in 'inputs' object."),
    (json.dumps({"inputs": {**{k: [v] for k, v in ISSUE_ROW.items()}, "fare": [1.0, 2.0]}}),
     r"Expecting tensor size: 1 but got: 2 \(input fare"),
    (json.dumps({"instances": [ISSUE_ROW], "inputs": {}}), "expecting only one of 'inputs' or 'instances'"),
    (json.dumps({"instances": []}), "No values in 'instances' array"),
    (json.dumps({"rows": [ISSUE_ROW]}), "Missing 'inputs' or 'instances' key"),
    (json.dumps({"signature_name": "nope", "instances": [ISSUE_ROW]}),
     'Serving signature name: "nope" not found in signature def'),
    (json.dumps({"signature_name": 3, "instances": [ISSUE_ROW]}), "'signature_name' key must be a string value"),
    (json.dumps({"signature_name": "serving_examples", "instances": [{"b64": "%%%"}]}), "Unable to base64 decode"),
]


@pytest.mark.parametrize("body,message", BAD_REQUESTS)
def test_bad_predict_requests_get_400_naming_the_problem(client, body, message):
    response = client.post(f"/v1/models/{MODEL}:predict", content=body, headers={"X-Request-Id": "bad-1"})
    assert response.status_code == 400, response.text
    assert set(response.json()) == {"error"}
    assert response.headers["X-Request-Id"] == "bad-1"
    assert re.search(message, response.json()["error"]), response.json()["error"]


@pytest.mark.parametrize("method,path,status,message", [
    ("POST", "/v1/models/other:predict", 404, "Servable not found for request: Latest(other)"),
    ("POST", f"/v1/models/{MODEL}/versions/7:predict", 404, f"Servable not found for request: Specific({MODEL}, 7)"),
    ("GET", f"/v1/models/{MODEL}/versions/7", 404, f"Could not find version 7 of model {MODEL}"),
    ("GET", "/v1/models/other", 404, "Could not find any versions of model other"),
    ("GET", "/v1/models/other/metadata", 404, "Servable not found for request: Latest(other)"),
    ("POST", f"/v1/models/{MODEL}/labels/canary:predict", 400, "Unrecognized servable version label: canary"),
    ("GET", f"/v1/models/{MODEL}/labels/canary", 400, "Unrecognized servable version label: canary"),
    ("POST", f"/v1/models/{MODEL}:explain", 400, f"Malformed request: POST /v1/models/{MODEL}:explain"),
    ("POST", f"/v1/models/{MODEL}:classify", 400, "Expected classification signature method_name to be "
                                                  "tensorflow/serving/classify. Was: tensorflow/serving/predict"),
    ("POST", f"/v1/models/{MODEL}:regress", 400, "Expected regression signature method_name to be "
                                                 "tensorflow/serving/regress. Was: tensorflow/serving/predict"),
])
def test_unknown_models_versions_labels_and_methods_answer_as_tf_serving(client, method, path, status, message):
    response = client.request(method, path, json={"examples": [ISSUE_ROW]} if method == "POST" else None)
    assert response.status_code == status, response.text
    assert response.json() == {"error": message}


def test_labels_name_versions(serving_dir):
    registry = models.ModelRegistry(serving_dir, MODEL, poll_seconds=3600.0, labels={"stable": 1})
    with TestClient(server.create_app(registry)) as client:
        assert client.get(f"/v1/models/{MODEL}/labels/stable").json()["model_version_status"][0]["version"] == "1"
        response = client.post(f"/v1/models/{MODEL}/labels/stable:predict", json={"instances": [ISSUE_ROW]})
        assert response.status_code == 200


def test_a_body_above_the_limit_is_refused_with_413(serving_dir):
    with _client(serving_dir, max_body_bytes=2000) as client:
        small = client.post(f"/v1/models/{MODEL}:predict", json={"instances": [ISSUE_ROW]})
        assert small.status_code == 200
        big = client.post(f"/v1/models/{MODEL}:predict", json={"instances": [ISSUE_ROW] * 20})
        assert big.status_code == 413
        assert "exceeds the limit of 2000 bytes" in big.json()["error"]


def test_metrics_count_requests_errors_and_latency_by_model_version_and_signature(serving_dir):
    with _client(serving_dir) as client:
        for _ in range(3):
            assert client.post(f"/v1/models/{MODEL}:predict", json={"instances": [ISSUE_ROW]}).status_code == 200
        assert client.post(f"/v1/models/{MODEL}:predict", json={"instances": [{"fare": 1.0}]}).status_code == 400
        text = client.get("/monitoring/prometheus/metrics").text
    labels = f'model="{MODEL}",signature="serving_default",version="1"'
    assert f'flywheel_serving_requests_total{{api="predict",{labels}}} 3.0' in text
    assert f'flywheel_serving_request_errors_total{{api="predict",code="400",{labels}}} 1.0' in text
    assert f'flywheel_serving_request_latency_seconds_count{{api="predict",{labels}}} 3.0' in text
    assert f'flywheel_serving_versions_loaded{{model="{MODEL}"}} 1.0' in text


class _Recorder:
    def __init__(self):
        self.calls = []

    def log(self, request_id, model, version, signature, rows, predictions, latency_ms):
        self.calls.append((request_id, model, version, signature, rows, predictions, latency_ms))

    def counters(self):
        return {"logged_rows": sum(len(call[4]) for call in self.calls)}

    def close(self):
        self.closed = True


def test_the_request_log_gets_each_answered_request_with_its_id(serving_dir):
    recorder = _Recorder()
    with _client(serving_dir, request_log=recorder) as client:
        given = client.post(f"/v1/models/{MODEL}:predict", json={"instances": [ISSUE_ROW]},
                            headers={"X-Request-Id": "abc-123"})
        generated = client.post(f"/v1/models/{MODEL}:predict", json={"inputs": {k: [v] for k, v in ISSUE_ROW.items()}})
        client.post(f"/v1/models/{MODEL}:predict", json={"instances": [{"fare": 1.0}]})
        text = client.get("/monitoring/prometheus/metrics").text
    assert recorder.closed, "the request log is closed when the server stops"
    assert 'flywheel_serving_request_log{counter="logged_rows"} 2.0' in text
    assert given.headers["X-Request-Id"] == "abc-123"
    assert re.fullmatch("[0-9a-f]{32}", generated.headers["X-Request-Id"])
    assert [c[0] for c in recorder.calls] == ["abc-123", generated.headers["X-Request-Id"]]
    request_id, model, version, signature, rows, predictions, latency_ms = recorder.calls[0]
    assert (model, version, signature, rows) == (MODEL, 1, "serving_default", [ISSUE_ROW])
    # the log keeps each float32 exactly (as its float64); the answer writes its shortest text: the same float32
    assert np.array_equal(np.float32(predictions), np.float32(given.json()["predictions"])) and latency_ms > 0
    assert recorder.calls[1][4] == [ISSUE_ROW]
    assert np.array_equal(np.float32(recorder.calls[1][5]), np.float32(generated.json()["outputs"]))


def test_generated_request_ids_differ_within_a_server_and_between_servers(serving_dir):
    ids = []
    for _ in range(2):
        with _client(serving_dir) as client:
            ids += [client.post(f"/v1/models/{MODEL}:predict", json={"instances": [ISSUE_ROW]}).headers["X-Request-Id"]
                    for _ in range(3)]
    assert len(set(ids)) == 6 and all(re.fullmatch("[0-9a-f]{32}", i) for i in ids), ids


@pytest.mark.slow  # seconds of load or waiting (the unit lane keeps to 2 minutes)
def test_the_servers_request_log_writes_typed_rows_and_output_arrays_as_it_writes_dicts_and_lists(serving_dir,
                                                                                                   tmp_path):
    import pyarrow.parquet as pq

    from flywheel.server.request_log import RequestLog

    class DictLog(RequestLog):
        typed_rows = False

    bodies = [{"instances": [ISSUE_ROW, {**ISSUE_ROW, "fare": 3.5}]},  # the fast path's typed rows
              {"inputs": {k: [v] for k, v in ISSUE_ROW.items()}},  # the general path's dicts
              {"instances": [{**ISSUE_ROW, "fare": "x"}]}]  # a failed request, logged with its rows
    tables = []
    for name, log_type in (("typed", RequestLog), ("dicts", DictLog)):
        log = log_type(str(tmp_path / name), clock=lambda: 5.0)
        with _client(serving_dir, request_log=log) as client:
            for i, body in enumerate(bodies):
                client.post(f"/v1/models/{MODEL}:predict", json=body, headers={"X-Request-Id": f"r{i}"})
        assert log.counters()["logged_rows"] == 4, name
        tables.append(pq.read_table(str(tmp_path / name)).drop(["latency_ms"]))
    assert tables[0].to_pydict() == tables[1].to_pydict()
    predictions = tables[0].column("prediction").to_pylist()
    assert all(isinstance(p, float) for p in predictions[:3]) and predictions[3] is None


def test_nan_and_infinity_are_read_and_written_as_tf_serving_does(client):
    body = json.dumps({"instances": [{**ISSUE_ROW, "fare": float("nan")}, {**ISSUE_ROW, "trip_miles": float("inf")}]})
    assert "NaN" in body and "Infinity" in body
    response = client.post(f"/v1/models/{MODEL}:predict", content=body)
    assert response.status_code == 200, response.text
    assert len(json.loads(response.text)["predictions"]) == 2
    import numpy as np

    from flywheel.server import codec

    outputs = {"outputs": np.array([[0.5], [np.nan], [np.inf]], dtype=np.float32)}
    assert codec.encode_response(codec.format_response(codec.ROW, outputs), outputs) == \
        b'{"predictions":[[0.5],[NaN],[Infinity]]}'
    finite = {"outputs": np.array([[0.25]], dtype=np.float32)}
    assert codec.encode_response(codec.format_response(codec.COLUMNAR, finite), finite) == b'{"outputs":[[0.25]]}'


def test_an_answer_written_from_the_output_array_is_the_answer_written_from_its_lists():
    import numpy as np

    from flywheel.server import codec

    rng = np.random.default_rng(7)
    floats = np.concatenate([rng.standard_normal(3000), rng.standard_normal(3000) * 1e30, rng.random(3000) * 1e-30,
                             [0.0, -0.0, 1.0, 0.1, 1e16, 1e-7, 3.4e38, 1e-45]])
    outputs = [{"outputs": floats.astype(np.float32).reshape(-1, 1)}, {"outputs": floats.astype(np.float32)},
               {"scores": floats[:9000].reshape(-1, 3)}, {"classes": np.array([[1], [-5], [2**40]], dtype=np.int64)},
               {"classes": np.array([3, 4], dtype=np.int32)},
               {"outputs": np.asfortranarray(floats[:9000].reshape(-1, 2))},
               {"outputs": np.array([[0.5], [np.nan]], dtype=np.float32)},
               {"outputs": np.array([[0.5]], dtype=np.float32), "classes": np.array([[1]], dtype=np.int64)},
               {"outputs": np.array([b"a"], dtype=object)}]
    for output in outputs:
        for fmt in (codec.ROW, codec.COLUMNAR):
            assert codec.encode_predict(fmt, output) == \
                codec.encode_response(codec.format_response(fmt, output), output), (fmt, list(output))


def test_the_session_callable_answers_exactly_as_the_tf2_keyword_call_of_each_signature(client):
    import tensorflow as tf

    servable = client.app.state.registry.get(MODEL)
    loaded = tf.saved_model.load(servable.path)
    raw = servable.signature("")
    columns = {k: [v, v] for k, v in ISSUE_ROW.items()}
    keyword = loaded.signatures["serving_default"](**{k: tf.constant(v, dtype=raw.inputs[k].dtype)
                                                      for k, v in columns.items()})
    assert models.run_signature(raw, columns)["outputs"].tolist() == keyword["outputs"].numpy().tolist()
    examples = servable.signature("serving_examples")
    flat = models.run_signature(examples, {"examples": [_example(ISSUE_ROW)]})["outputs"]
    expected = loaded.signatures["serving_examples"](examples=tf.constant([_example(ISSUE_ROW)]))["outputs"]
    assert flat.tolist() == expected.numpy().tolist()
    wrong_shape = r"input fare of signature serving_default: shape \[1, 2\] is not compatible with \[-1\]"
    with pytest.raises(InvalidArgument, match=wrong_shape):
        models.run_signature(raw, {**columns, "fare": [[1.0, 2.0]]})


def test_each_version_runs_its_graph_on_the_calling_thread_alone(client):
    servable = client.app.state.registry.get(MODEL)
    assert servable.session._config.intra_op_parallelism_threads == 1


@pytest.mark.slow  # seconds of load or waiting (the unit lane keeps to 2 minutes)
def test_startup_moves_the_loaded_libraries_and_model_out_of_the_collectors_full_passes(serving_dir):
    import gc

    gc.unfreeze()
    with _client(serving_dir) as client:
        frozen = gc.get_freeze_count()
        assert client.post(f"/v1/models/{MODEL}:predict", json={"instances": [ISSUE_ROW]}).status_code == 200
    assert frozen > 100_000, f"only {frozen} objects frozen: full collections walk TensorFlow's modules each time"


FAST_PATH_REFUSED = [  # bodies parse_rows leaves to the general path (which accepts or names what is wrong)
    {"instances": [{**ISSUE_ROW, "fare": float("nan")}]},
    {"instances": [{**ISSUE_ROW, "fare": True}]},
    {"instances": [{**ISSUE_ROW, "trip_seconds": 600.0}]},
    {"instances": [{**ISSUE_ROW, "trip_seconds": 2**63}]},
    {"instances": [{**ISSUE_ROW, "payment_type": {"b64": "Q2FzaA=="}}]},
    {"instances": [{**ISSUE_ROW, "tolls": 1.0}]},
    {"instances": [{k: v for k, v in ISSUE_ROW.items() if k != "fare"}]},
    {"instances": [ISSUE_ROW], "inputs": {}},
    {"instances": []},
    {"inputs": {k: [v] for k, v in ISSUE_ROW.items()}},
    {"signature_name": "serving_examples", "instances": [ISSUE_ROW]},
    {"signature_name": 3, "instances": [ISSUE_ROW]},
]


def test_the_fast_row_path_gives_the_general_paths_columns_and_leaves_every_other_body_to_it(client):
    from flywheel.server import codec

    signature = client.app.state.registry.get(MODEL).signature("")
    rows = [ISSUE_ROW, {**ISSUE_ROW, "fare": 3, "trip_seconds": -5, "payment_type": "Crédit"}]
    for doc in ({"instances": rows}, {"instances": rows, "signature_name": "serving_default", "other": [1]}):
        body = json.dumps(doc).encode()
        columns, parsed = codec.parse_rows(body, signature)
        fmt, expected, _ = codec.parse_predict(codec.parse_json(body), signature)
        assert fmt == codec.ROW and list(columns) == list(expected)
        for name, column in columns.items():
            assert column.dtype == expected[name].dtype and column.tolist() == expected[name].tolist(), name
        assert codec.row_dicts(parsed) == rows and len(parsed) == 2
    for doc in FAST_PATH_REFUSED:
        assert codec.parse_rows(json.dumps(doc).encode(), signature) is None, doc
    assert codec.parse_rows(b'{"instances": [{"fare": 1.0,', signature) is None
