"""Publishing: versions, identical models, stale temporary folders, and what serving sees."""

from __future__ import annotations

import json
import os

from flywheel.components.common import serving
from flywheel.components.push import publish


def _model(tmp_path, content: bytes):
    model = tmp_path / "model"
    (model / "variables").mkdir(parents=True, exist_ok=True)
    (model / "saved_model.pb").write_bytes(content)
    (model / "variables" / "variables.index").write_bytes(b"idx")
    return str(model)


def test_publish_is_versioned_and_manifest_complete(tmp_path):
    model = _model(tmp_path, b"model-1")
    serving_dir = str(tmp_path / "serving")
    v1, path1 = publish.publish(model, serving_dir, "taxi", {"model_sha256": publish.tree_digest(model)})
    v2, _ = publish.publish(model, serving_dir, "taxi", {"model_sha256": "other"})
    assert v2 > v1 and serving.versions(serving_dir, "taxi") == [v1, v2]
    manifest = json.load(open(os.path.join(path1, "push.json")))
    assert manifest["version"] == v1 and manifest["pushed_at"]
    assert os.path.exists(os.path.join(path1, "variables", "variables.index"))


def test_identical_model_and_unblessed_model_are_not_pushed(tmp_path):
    model = _model(tmp_path, b"model-1")
    serving_dir = str(tmp_path / "serving")
    digest = publish.tree_digest(model)
    assert publish.decide(False, digest, serving_dir, "taxi") == "model not blessed by evaluation"
    assert publish.decide(True, digest, serving_dir, "taxi") is None
    version, _ = publish.publish(model, serving_dir, "taxi", {"model_sha256": digest})
    assert publish.decide(True, digest, serving_dir, "taxi") == f"identical to serving version {version}"
    assert publish.decide(True, publish.tree_digest(_model(tmp_path, b"model-2")), serving_dir, "taxi") is None


def test_half_written_push_is_invisible_and_cleaned(tmp_path):
    serving_dir = tmp_path / "serving"
    stale = serving_dir / "taxi" / ".push-123-deadbeef"
    stale.mkdir(parents=True)
    (stale / "saved_model.pb").write_bytes(b"partial")
    (serving_dir / "taxi" / "77").mkdir()  # a numeric folder without push.json is not a complete version
    assert serving.latest(str(serving_dir), "taxi") is None
    publish.publish(_model(tmp_path, b"m"), str(serving_dir), "taxi", {"model_sha256": "x"})
    assert not stale.exists()
    assert serving.latest(str(serving_dir), "taxi").version > 77
