"""The version registry on a real model: versions appear, disappear and fail while the server keeps answering."""

from __future__ import annotations

import os
import shutil

import pytest
from starlette.testclient import TestClient

from flywheel.server import models, server
from flywheel.store import warmup
from tests.server.conftest import ISSUE_ROW, MODEL, add_version


def _predict(client: TestClient, path: str = f"/v1/models/{MODEL}:predict"):
    return client.post(path, json={"instances": [ISSUE_ROW]})


def _states(client: TestClient) -> dict:
    return {s["version"]: s for s in client.get(f"/v1/models/{MODEL}").json()["model_version_status"]}


def test_push_writes_tf_serving_warmup_requests_for_the_raw_signature(pushed_version):
    path = os.path.join(pushed_version, warmup.WARMUP_PATH)
    logs = list(warmup.read(pushed_version))
    assert logs, f"no warmup records in {path}"
    signature, inputs = warmup.request_inputs(logs[0], path)
    assert signature == "serving_default"
    assert sorted(inputs) == sorted(ISSUE_ROW)
    assert all(column.shape == (1,) for column in inputs.values())
    servable = models.load_servable(MODEL, 1, pushed_version)
    assert models.warm_up(servable) == len(logs)


@pytest.mark.slow  # seconds of load or waiting (the unit lane keeps to 2 minutes)
def test_a_new_version_is_picked_up_and_a_removed_one_unloaded_while_serving(serving_dir, pushed_version):
    registry = models.ModelRegistry(serving_dir, MODEL, poll_seconds=3600.0)
    with TestClient(server.create_app(registry)) as client:
        assert _predict(client).status_code == 200
        held = registry.get(MODEL)
        add_version(serving_dir, pushed_version, 2)
        registry.poll()
        assert registry.loaded_versions() == [2]
        assert client.get(f"/v1/models/{MODEL}/metadata").json()["model_spec"]["version"] == "2"
        assert _states(client)["1"]["state"] == "END" and _states(client)["2"]["state"] == "AVAILABLE"
        assert _predict(client, f"/v1/models/{MODEL}/versions/1:predict").status_code == 404
        answer = models.run_signature(held.signature(""), {k: [v] for k, v in ISSUE_ROW.items()})
        assert answer["outputs"].shape == (1, 1), "a request holding the old version still completes after the switch"
        shutil.rmtree(os.path.join(serving_dir, MODEL, "2"))
        registry.poll()
        assert registry.loaded_versions() == [1]
        assert _predict(client).status_code == 200
        shutil.rmtree(os.path.join(serving_dir, MODEL, "1"))
        registry.poll()
        assert registry.loaded_versions() == []
        response = _predict(client)
        assert response.status_code == 404
        assert response.json() == {"error": f"Servable not found for request: Latest({MODEL})"}


@pytest.mark.slow  # seconds of load or waiting (the unit lane keeps to 2 minutes)
def test_the_background_scan_picks_up_a_new_version_without_a_call(serving_dir, pushed_version):
    import time

    registry = models.ModelRegistry(serving_dir, MODEL, poll_seconds=0.2)
    with TestClient(server.create_app(registry)) as client:
        add_version(serving_dir, pushed_version, 5)
        deadline = time.monotonic() + 60
        while registry.loaded_versions() != [5] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert registry.loaded_versions() == [5]
        assert _predict(client).status_code == 200


@pytest.mark.slow  # seconds of load or waiting (the unit lane keeps to 2 minutes)
@pytest.mark.parametrize("damage,error", [
    (lambda v: open(os.path.join(v, "saved_model.pb"), "wb").write(b"not a protobuf"), "DecodeError|ParseError|Error"),
    (lambda v: open(os.path.join(v, warmup.WARMUP_PATH), "wb").write(b"\x00" * 40), "warmup"),
])
def test_a_corrupt_new_version_is_not_loaded_and_the_old_keeps_serving(serving_dir, pushed_version, damage, error):
    import re

    registry = models.ModelRegistry(serving_dir, MODEL, poll_seconds=3600.0)
    with TestClient(server.create_app(registry)) as client:
        bad = add_version(serving_dir, pushed_version, 2)
        damage(bad)
        registry.poll()
        registry.poll()
        assert registry.loaded_versions() == [1]
        states = _states(client)
        assert states["2"]["state"] == "END" and states["2"]["status"]["error_code"] == "UNKNOWN"
        assert re.search(error, states["2"]["status"]["error_message"]), states["2"]
        assert states["1"]["state"] == "AVAILABLE"
        assert client.get(f"/v1/models/{MODEL}/metadata").json()["model_spec"]["version"] == "1"
        assert _predict(client).status_code == 200


@pytest.mark.slow  # seconds of load or waiting (the unit lane keeps to 2 minutes)
def test_a_warmup_record_for_an_unknown_signature_fails_the_load(serving_dir, pushed_version):
    from tensorflow_serving.apis import prediction_log_pb2

    log = next(iter(warmup.read(pushed_version)))
    log.predict_log.request.model_spec.signature_name = "nope"
    bad = add_version(serving_dir, pushed_version, 3)
    with open(os.path.join(bad, warmup.WARMUP_PATH), "wb") as f:
        f.write(warmup.to_tfrecord([log, prediction_log_pb2.PredictionLog()]))
    registry = models.ModelRegistry(serving_dir, MODEL)
    registry.poll()
    assert registry.loaded_versions() == [1]
    status = registry.status(MODEL, 3)[0]
    assert "names signature 'nope'" in status["status"]["error_message"]


def test_an_unloaded_version_answers_its_requests_in_flight_then_closes_its_session(serving_dir):
    import gc
    import weakref

    registry = models.ModelRegistry(serving_dir, MODEL, poll_seconds=3600.0)
    registry.poll()
    held = registry.get(MODEL)
    session = weakref.ref(held.session)
    shutil.rmtree(os.path.join(serving_dir, MODEL, "1"))
    registry.poll()
    assert registry.loaded_versions() == []
    answer = models.run_signature(held.signature(""), {k: [v] for k, v in ISSUE_ROW.items()})
    assert answer["outputs"].shape == (1, 1), "a request holding the unloaded version still completes"
    assert not session()._closed
    del held
    gc.collect()
    assert session() is None, "the unloaded version's session is released once no request holds it"
