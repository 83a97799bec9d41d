"""Publishing: versions, the push decision, stale temporary folders, corrupt manifests, durability."""

from __future__ import annotations

import json
import logging
import os

import pytest
from tfx.dsl.io.plugins.local import LocalFilesystem

from flywheel.store import layout, publish


def _model(tmp_path, content: bytes, name: str = "model"):
    model = tmp_path / name
    (model / "variables").mkdir(parents=True, exist_ok=True)
    (model / "assets").mkdir(exist_ok=True)
    (model / "saved_model.pb").write_bytes(content)
    (model / "variables" / "variables.index").write_bytes(b"idx")
    return str(model)


def test_publish_is_versioned_and_manifest_complete(tmp_path):
    model = _model(tmp_path, b"model-1")
    serving_dir = str(tmp_path / "serving")
    v1, path1 = publish.publish(model, serving_dir, "taxi", {"model_sha256": publish.tree_digest(model)})
    v2, _ = publish.publish(model, serving_dir, "taxi", {"model_sha256": "other"})
    assert v2 > v1 and layout.versions(serving_dir, "taxi") == [v1, v2]
    manifest = json.load(open(os.path.join(path1, "push.json")))
    assert manifest["version"] == v1 and manifest["pushed_at"]
    assert os.path.exists(os.path.join(path1, "variables", "variables.index"))
    assert os.path.isdir(os.path.join(path1, "assets")), "empty folders of the SavedModel are copied too"
    assert publish.tree_digest(path1) != publish.tree_digest(model)  # push.json was added
    assert sorted(os.listdir(os.path.join(serving_dir, "taxi"))) == sorted([str(v1), str(v2)]), "no marker left"


def test_digest_is_over_relative_paths_and_bytes(tmp_path):
    a, b = _model(tmp_path, b"same", "a"), _model(tmp_path, b"same", "b")
    assert publish.tree_digest(a) == publish.tree_digest(b)
    (tmp_path / "b" / "variables" / "variables.index").write_bytes(b"changed")
    assert publish.tree_digest(a) != publish.tree_digest(b)


def _served(version: int, digest: str) -> layout.ServedVersion:
    return layout.ServedVersion(version, f"/serving/taxi/{version}", {"model_sha256": digest})


@pytest.mark.parametrize("blessed, baseline, current, reason", [
    (False, None, None, "model not blessed by evaluation"),
    (True, None, None, None),
    (True, 100, _served(100, "new"), "identical to serving version 100"),
    (True, 100, _served(100, "old"), None),
    (True, 100, _served(90, "old"), None),  # the model it was blessed against is gone: an older one remains
    (True, 100, _served(120, "old"),
     "blessed against serving version 100, but serving now has version 120 (pushed since the evaluation)"),
    (True, None, _served(120, "old"), "blessed against no model in serving, but serving now has version 120"),
])
def test_decide(blessed, baseline, current, reason):
    got = publish.decide(blessed, "new", baseline, current)
    assert got == reason if reason is None else got.startswith(reason), got


def test_numeric_folder_without_manifest_or_saved_model_is_not_a_version(tmp_path):
    root = tmp_path / "serving" / "taxi"
    (root / "77").mkdir(parents=True)  # no push.json
    (root / "78").mkdir()
    (root / "78" / "push.json").write_text("{}")  # no saved_model.pb: still being written on object storage
    assert layout.latest(str(tmp_path / "serving"), "taxi") is None
    version, _ = publish.publish(_model(tmp_path, b"m"), str(tmp_path / "serving"), "taxi", {"model_sha256": "x"})
    assert version > 78, "an incomplete folder's number is never reused"


@pytest.mark.parametrize("content", ['{"model_sha256": "abc", "vers', "", "[1, 2]", "\x00\x00\x00"])
def test_a_corrupt_manifest_is_reported_and_its_version_skipped(tmp_path, caplog, content):
    serving_dir = str(tmp_path / "serving")
    good, _ = publish.publish(_model(tmp_path, b"m1"), serving_dir, "taxi", {"model_sha256": "good"})
    bad, bad_path = publish.publish(_model(tmp_path, b"m2"), serving_dir, "taxi", {"model_sha256": "bad"})
    with open(os.path.join(bad_path, "push.json"), "w") as f:
        f.write(content)
    with caplog.at_level(logging.WARNING, logger=layout.logger.name):
        served = layout.latest(serving_dir, "taxi")
    assert served is not None and served.version == good and served.manifest["model_sha256"] == "good"
    assert os.path.join(bad_path, "push.json") in caplog.text and f"version {bad} skipped" in caplog.text
    with pytest.raises(layout.ManifestError, match="push.json"):
        layout.read_manifest(os.path.join(bad_path, "push.json"))
    newer, _ = publish.publish(_model(tmp_path, b"m3"), serving_dir, "taxi", {"model_sha256": "new"})
    assert newer > bad and layout.latest(serving_dir, "taxi").version == newer


def test_a_model_without_saved_model_pb_is_refused(tmp_path):
    model = tmp_path / "not_a_model"
    model.mkdir()
    (model / "weights.h5").write_bytes(b"x")
    with pytest.raises(publish.PushError, match="has no saved_model.pb; expected a SavedModel"):
        publish.publish(str(model), str(tmp_path / "serving"), "taxi", {})


def test_files_and_folders_are_fsynced_before_the_rename(tmp_path, monkeypatch):
    events: list[tuple[str, str]] = []
    real_fsync, real_rename = os.fsync, LocalFilesystem.rename

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def rename(src, dst, overwrite=False):
        events.append(("rename", src))
        return real_rename(src, dst, overwrite)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(LocalFilesystem, "rename", staticmethod(rename))
    _, path = publish.publish(_model(tmp_path, b"m"), str(tmp_path / "serving"), "taxi", {}, extra_files={"b": "1"})
    renamed = [i for i, (kind, src) in enumerate(events)
               if kind == "rename" and publish.marker_version(os.path.basename(src)) is not None]
    assert len(renamed) == 1, events  # the marker folder becomes the version folder
    tmp = events[renamed[0]][1]
    before = {p for kind, p in events[:renamed[0]] if kind == "fsync"}
    expected = {os.path.join(tmp, rel) for rel in ["saved_model.pb", "push.json", "b", "variables",
                                                   "variables/variables.index", "assets"]} | {tmp}
    assert expected <= before, expected - before
    assert ("fsync", os.path.dirname(path)) in events[renamed[0]:], "the rename itself is made durable"


def test_a_failed_copy_leaves_no_version_and_no_temporary_folder(tmp_path, monkeypatch):
    serving_dir = str(tmp_path / "serving")

    def broken_copy(src, dst, overwrite=False):
        raise OSError("disk full")

    monkeypatch.setattr(LocalFilesystem, "copy", staticmethod(broken_copy))
    with pytest.raises(OSError, match="disk full"):
        publish.publish(_model(tmp_path, b"m"), serving_dir, "taxi", {})
    left = os.listdir(os.path.join(serving_dir, "taxi"))
    assert not [n for n in left if n.isdigit() or n.startswith(publish.TMP_PREFIX)], left


def test_a_private_folder_of_a_writer_that_died_while_creating_its_marker_is_removed_once_old(tmp_path):
    root = tmp_path / "serving" / "taxi"
    private = f"{publish.TMP_PREFIX}{publish.PRIVATE}"
    old, young = root / f"{private}-old", root / f"{private}-young"
    old.mkdir(parents=True)
    young.mkdir()
    past = os.stat(old).st_mtime - 2 * publish.PRIVATE_STALE_AFTER_SECONDS
    os.utime(old, (past, past))
    assert publish.clean_stale(str(root)) == [old.name]
    assert young.exists(), "it may be a writer between creating its folder and locking it"
