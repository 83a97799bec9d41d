"""Push on a filesystem that is not the local one: TensorFlow's in-process ram://, reached through fileio.

Every os/shutil/open call made with a ram:// path fails these tests, so a local-only call slipping into
Push or the serving lookups is caught (on gs:// it would create a local folder named "gs:").
"""

from __future__ import annotations

import builtins
import json
import logging
import os
import shutil
import time
import uuid

import pytest
from tfx.dsl.io import fileio

from flywheel import storage
from flywheel.components.push import executor
from flywheel.store import layout, publish

GUARDED = ([(os, name) for name in ("open", "stat", "lstat", "listdir", "scandir", "mkdir", "makedirs", "remove",
                                    "unlink", "rmdir", "rename", "replace", "walk", "symlink")]
           + [(os.path, name) for name in ("exists", "isdir", "isfile", "islink", "getsize")]
           + [(shutil, name) for name in ("copy", "copy2", "copyfile", "copytree", "rmtree", "move")]
           + [(builtins, "open")])


@pytest.fixture
def ram(monkeypatch, tmp_path):
    """A fresh ram:// root; os, shutil and open refuse ram:// paths while the test runs."""

    def guard(function, name):
        def guarded(*args, **kwargs):
            for arg in args:
                if isinstance(arg, (str, bytes, os.PathLike)) and "ram://" in os.fsdecode(arg):
                    raise AssertionError(f"{name}({arg!r}): a non-local path must go through fileio")
            return function(*args, **kwargs)

        return guarded

    for module, name in GUARDED:
        monkeypatch.setattr(module, name, guard(getattr(module, name), f"{module.__name__}.{name}"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(AssertionError, match="must go through fileio"):
        os.makedirs("ram://probe")
    yield f"ram://{uuid.uuid4().hex}"
    assert os.listdir(tmp_path) == [], "nothing local was created for a ram:// path"


def _write(path: str, content: bytes) -> None:
    fileio.makedirs(os.path.dirname(path))
    with fileio.open(path, "wb") as f:
        f.write(content)


def _model(root: str) -> str:
    model = f"{root}/trainer/Format-Serving"
    _write(f"{model}/saved_model.pb", b"graph")
    _write(f"{model}/variables/variables.index", b"index")
    _write(f"{model}/variables/variables.data-00000-of-00001", b"weights" * 100)
    return model


def test_publish_to_object_storage_writes_saved_model_pb_last(ram, monkeypatch):
    model, serving_dir = _model(ram), f"{ram}/serving"
    writes: list[str] = []
    real_open, real_copy = fileio.open, fileio.copy

    def recording_open(path, mode="r"):
        if "w" in mode:
            writes.append(path)
        return real_open(path, mode)

    def recording_copy(src, dst, overwrite=False):
        writes.append(dst)
        return real_copy(src, dst, overwrite)

    monkeypatch.setattr(fileio, "open", recording_open)
    monkeypatch.setattr(fileio, "copy", recording_copy)
    with publish.serving_lock(f"{serving_dir}/taxi"):
        assert layout.latest(serving_dir, "taxi") is None
        version, path = publish.publish(model, serving_dir, "taxi", {"model_sha256": publish.tree_digest(model)},
                                        extra_files={publish.BASELINE_PROFILE: "{}"})
    assert path == f"{serving_dir}/taxi/{version}"
    into_version = [w for w in writes if w.startswith(path + "/")]
    assert into_version[-1] == f"{path}/saved_model.pb", into_version
    assert into_version.index(f"{path}/push.json") < len(into_version) - 1
    served = layout.latest(serving_dir, "taxi")
    assert served.version == version and served.manifest["model_sha256"] == publish.tree_digest(model)
    assert sorted(publish.tree(path)[1]) == sorted(publish.tree(model)[1] + ["push.json", "baseline_profile.json"])
    assert [n for n in storage.listdir(f"{serving_dir}/taxi") if n.startswith(publish.TMP_PREFIX)] == []
    executor.link_or_copy_manifest(f"{ram}/pushed_model", path)
    with fileio.open(f"{ram}/pushed_model/push.json") as f:
        assert json.loads(f.read())["version"] == version
    second, _ = publish.publish(model, serving_dir, "taxi", {"model_sha256": "other"})
    assert layout.versions(serving_dir, "taxi") == [version, second] and second > version


def test_object_storage_cleans_dead_writers_only_and_skips_a_corrupt_manifest(ram, caplog):
    root = f"{ram}/serving/taxi"
    old = time.time() - 2 * publish.STALE_AFTER_SECONDS
    _write(f"{root}/.push-500-dead/writer.json", json.dumps({"started_at": old}).encode())
    _write(f"{root}/500/variables/variables.index", b"partial")  # its copy, cut short: no saved_model.pb
    _write(f"{root}/.push-600-live/writer.json", json.dumps({"started_at": time.time()}).encode())
    _write(f"{root}/600/variables/variables.index", b"in progress")
    fileio.makedirs(f"{root}/.push-700-new")  # a marker being created: no writer.json yet
    _write(f"{root}/400/saved_model.pb", b"graph")
    _write(f"{root}/400/push.json", b'{"model_sha256": "abc", "ver')  # truncated
    with caplog.at_level(logging.WARNING):
        assert layout.latest(f"{ram}/serving", "taxi") is None
        removed = publish.clean_stale(root)
    assert f"{root}/400/push.json" in caplog.text and "version 400 skipped" in caplog.text
    assert sorted(removed) == [".push-500-dead", "500"]
    assert sorted(storage.listdir(root)) == [".push-600-live", ".push-700-new", "400", "600"]
    version, _ = publish.publish(_model(ram), f"{ram}/serving", "taxi", {})
    assert version > 700 and layout.latest(f"{ram}/serving", "taxi").version == version


def test_a_push_that_fails_on_object_storage_leaves_no_partial_version(ram, monkeypatch):
    model, serving_dir = _model(ram), f"{ram}/serving"
    real_copy = fileio.copy

    def failing_copy(src, dst, overwrite=False):
        if dst.endswith("saved_model.pb"):
            raise OSError("connection reset")
        return real_copy(src, dst, overwrite)

    monkeypatch.setattr(fileio, "copy", failing_copy)
    with pytest.raises(OSError, match="connection reset"):
        publish.publish(model, serving_dir, "taxi", {})
    assert storage.listdir(f"{serving_dir}/taxi") == []
