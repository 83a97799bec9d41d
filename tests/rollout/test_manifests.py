"""The rollout state's production mirrors, checked with the consumers' own definitions: TF Serving's
ModelServerConfig proto (tensorflow-serving-api, already in TFX's stack) and KServe's InferenceService schema."""

from __future__ import annotations

import json
import os

import jsonschema
import pytest
import yaml
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from flywheel.api.errors import UsageError
from flywheel.api.rollout import rollout_manifests
from flywheel.rollout import manifests, models_config, state, store
from tests.rollout.conftest import MODEL

SCHEMA = os.path.join(os.path.dirname(__file__), "testdata", "kserve_inferenceservice_v1beta1.schema.json")


def _tf_serving_config(serving_dir: str) -> model_server_config_pb2.ModelServerConfig:
    with open(os.path.join(serving_dir, models_config.FILE_NAME)) as f:
        return text_format.Parse(f.read(), model_server_config_pb2.ModelServerConfig())


def _kserve(service: dict) -> None:
    with open(SCHEMA) as f:
        jsonschema.validate(service, json.load(f))
    assert 0 <= service["spec"]["predictor"].get("canaryTrafficPercent", 0) <= 100  # KServe's webhook range


def test_models_config_is_a_tf_serving_model_server_config_following_every_change(serving_dir, saved_model):
    other = os.path.join(serving_dir, "other")
    os.makedirs(os.path.join(other, "4"))
    store.start(serving_dir, MODEL, 1, state.CANARY, 10)
    config = _tf_serving_config(serving_dir)
    by_name = {c.name: c for c in config.model_config_list.config}
    assert sorted(by_name) == ["other", MODEL]
    taxi = by_name[MODEL]
    assert taxi.base_path == os.path.abspath(os.path.join(serving_dir, MODEL)) and taxi.model_platform == "tensorflow"
    assert list(taxi.model_version_policy.specific.versions) == [2, 1]
    assert dict(taxi.version_labels) == {"stable": 2, "canary": 1}
    assert by_name["other"].model_version_policy.WhichOneof("policy_choice") == "latest"
    store.promote(serving_dir, MODEL)
    promoted = {c.name: c for c in _tf_serving_config(serving_dir).model_config_list.config}[MODEL]
    assert list(promoted.model_version_policy.specific.versions) == [1]
    assert dict(promoted.version_labels) == {"stable": 1}


def test_kserve_canary_and_blue_green_manifests_match_kserves_schema(serving_dir):
    canary = manifests.kserve_manifests(store.start(serving_dir, MODEL, 1, state.CANARY, 10), "gs://bucket/{model}-v")
    assert sorted(canary) == ["taxi-candidate.yaml", "taxi-stable.yaml"]
    for service in canary.values():
        _kserve(service)
    stable, candidate = canary["taxi-stable.yaml"]["spec"]["predictor"], canary["taxi-candidate.yaml"]["spec"][
        "predictor"]
    assert stable == {"model": {"modelFormat": {"name": "tensorflow"}, "storageUri": "gs://bucket/taxi-v/2"}}
    assert candidate["canaryTrafficPercent"] == 10 and candidate["model"]["storageUri"] == "gs://bucket/taxi-v/1"
    store.rollback(serving_dir, MODEL)
    blue_green = manifests.kserve_manifests(store.start(serving_dir, MODEL, 1, state.BLUE_GREEN))
    _kserve(blue_green["taxi-candidate.yaml"])
    assert blue_green["taxi-candidate.yaml"]["spec"]["predictor"]["canaryTrafficPercent"] == 100
    assert blue_green["taxi-candidate.yaml"]["spec"]["predictor"]["model"]["storageUri"] == \
        "pvc://flywheel-serving/kserve/taxi-1"


def test_the_schema_catches_a_misspelled_field():
    service = manifests.kserve_manifests(state.RolloutState(MODEL, 2))["taxi-stable.yaml"]
    service["spec"]["predictor"]["canaryTrafficPercnt"] = 10
    with pytest.raises(jsonschema.ValidationError, match="canaryTrafficPercnt"):
        _kserve(service)


def test_shadow_has_no_kserve_candidate_and_fractional_canaries_and_bad_names_are_refused(serving_dir, saved_model):
    assert sorted(manifests.kserve_manifests(store.start(serving_dir, MODEL, 1, state.SHADOW))) == ["taxi-stable.yaml"]
    store.rollback(serving_dir, MODEL)
    with pytest.raises(state.RolloutError, match=r"canary percent 2\.5: KServe's canaryTrafficPercent is a whole"):
        manifests.kserve_manifests(store.start(serving_dir, MODEL, 1, state.CANARY, 2.5))
    with pytest.raises(state.RolloutError, match=r"model name 'Taxi_1': expected a Kubernetes name"):
        manifests.kserve_manifests(state.RolloutState("Taxi_1", 2))


def test_rollout_manifests_writes_the_files_a_user_applies(serving_dir, tmp_path):
    store.start(serving_dir, MODEL, 1, state.CANARY, 20)
    out = str(tmp_path / "manifests")
    result = rollout_manifests(serving_dir, out, MODEL, storage_uri="s3://models/{model}/{version}")
    assert [os.path.basename(f) for f in result.files] == ["models.config", "taxi-stable.yaml", "taxi-candidate.yaml"]
    with open(os.path.join(out, "taxi-candidate.yaml")) as f:
        candidate = yaml.safe_load(f)
    _kserve(candidate)
    assert candidate["spec"]["predictor"]["model"]["storageUri"] == "s3://models/taxi/1"
    assert _tf_serving_config(out).model_config_list.config[0].version_labels["canary"] == 1
    assert any("--allow_version_labels_for_unavailable_models" in n for n in result.notes)
    with pytest.raises(UsageError, match=r"other has no rollout state"):
        rollout_manifests(serving_dir, out, "other")
    with pytest.raises(UsageError, match=r"'bucket'"):
        rollout_manifests(serving_dir, out, MODEL, storage_uri="gs://{bucket}/{version}")
