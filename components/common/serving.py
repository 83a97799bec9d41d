"""The serving directory: `<serving_dir>/<model_name>/<version>/` with a push.json manifest.

TF Serving loads numeric version folders only; anything else (a push in progress under a temporary
name) is invisible to it and to these functions. A version counts once both its `push.json` and its
`saved_model.pb` exist: Push writes `saved_model.pb` last, which is TF Serving's completeness rule on
object storage where a folder cannot be renamed into place. `rollout.json` beside the versions (the rollout
state) is not numeric either: once it exists, `current` (what serves by default) is its stable version.

Every file is reached through TFX's filesystem layer: its local plugin for local paths (no TensorFlow
import, so the CLI's up-to-date check stays fast) and `tfx.dsl.io.fileio` (TensorFlow's gfile:
gs://, s3://, hdfs://, ram://) for the rest.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from typing import Any, Optional

MANIFEST_FILE = "push.json"
SAVED_MODEL_FILE = "saved_model.pb"
ROLLOUT_FILE = "rollout.json"  # <serving_dir>/<model>/rollout.json: the rollout state (flywheel.rollout.state)

logger = logging.getLogger(__name__)


class ManifestError(ValueError):
    """A push.json that is not a readable JSON object (truncated by a crash, or edited by hand)."""


@dataclasses.dataclass(frozen=True)
class ServedVersion:
    version: int
    path: str
    manifest: dict


def is_local(path: str) -> bool:
    return "://" not in path


def filesystem(*paths: str) -> Any:
    """TFX's filesystem for these paths: `tfx.dsl.io.fileio` when any has a scheme (gs://, s3://, ram://...);
    for local paths only, the local plugin fileio itself uses without TensorFlow (no TensorFlow import)."""
    if all(is_local(path) for path in paths):
        from tfx.dsl.io.plugins.local import LocalFilesystem

        return LocalFilesystem
    from tfx.dsl.io import fileio

    return fileio


def listdir(path: str) -> list[str]:
    """Entry names of a folder ([] when it does not exist), without the trailing '/' gfile adds."""
    fs = filesystem(path)
    if not fs.isdir(path):
        return []
    return [name.rstrip("/") for name in fs.listdir(path)]


def numeric_folders(serving_dir: str, model_name: str) -> list[int]:
    """Every numeric folder, complete or not: no new version may take one of these numbers."""
    return sorted(int(name) for name in listdir(os.path.join(serving_dir, model_name)) if name.isdigit())


def is_complete(version_path: str) -> bool:
    fs = filesystem(version_path)
    return fs.exists(os.path.join(version_path, MANIFEST_FILE)) and fs.exists(
        os.path.join(version_path, SAVED_MODEL_FILE))


def versions(serving_dir: str, model_name: str) -> list[int]:
    """The complete versions, oldest first."""
    root = os.path.join(serving_dir, model_name)
    return [v for v in numeric_folders(serving_dir, model_name) if is_complete(os.path.join(root, str(v)))]


def read_saved_model(version_path: str) -> Any:
    """The SavedModel proto of `<version_path>/saved_model.pb`, read through the filesystem layer (gs:// too)
    without loading the model: its signatures' names, inputs and outputs."""
    from tensorflow.core.protobuf import saved_model_pb2

    path = os.path.join(version_path, SAVED_MODEL_FILE)
    with filesystem(path).open(path, "rb") as f:
        data = f.read()
    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString(data)
    return proto


def read_manifest(path: str) -> dict:
    """A push.json as a dict; ManifestError naming the file when it is missing, truncated or not an object."""
    fs = filesystem(path)
    try:
        with fs.open(path, "r") as f:
            text = f.read()
    except Exception as e:  # each filesystem raises its own not-found and I/O errors; re-raised, named
        raise ManifestError(f"serving: cannot read {path}: {type(e).__name__}: {e}") from e
    try:
        manifest = json.loads(text)
    except ValueError as e:
        raise ManifestError(f"serving: {path} is not valid JSON ({e}; {len(text)} characters, "
                            "truncated by a crash?)") from e
    if not isinstance(manifest, dict):
        raise ManifestError(f"serving: {path}: expected a JSON object, got {type(manifest).__name__}")
    return manifest


def latest(serving_dir: str, model_name: str) -> Optional[ServedVersion]:
    """The newest complete version with a readable manifest, or None when there is none.

    A version whose push.json cannot be read is reported (a warning naming the file) and skipped.
    """
    root = os.path.join(serving_dir, model_name)
    for version in reversed(versions(serving_dir, model_name)):
        path = os.path.join(root, str(version))
        try:
            return ServedVersion(version, path, read_manifest(os.path.join(path, MANIFEST_FILE)))
        except ManifestError as e:
            logger.warning("%s; version %d skipped", e, version)
    return None


def current(serving_dir: str, model_name: str) -> Optional[ServedVersion]:
    """The version that serves by default: the stable version of the model's rollout state (`rollout.json`)
    when it has one, else the newest complete version (`latest`); None when nothing is in serving.

    A version pushed while a rollout state exists is not served by default until a rollout promotes it.
    ManifestError when rollout.json is unreadable or its stable version is not a complete version.
    """
    state_path = os.path.join(serving_dir, model_name, ROLLOUT_FILE)
    if not filesystem(state_path).exists(state_path):
        return latest(serving_dir, model_name)
    stable = read_manifest(state_path).get("stable")
    path = os.path.join(serving_dir, model_name, str(stable))
    if not isinstance(stable, int) or not is_complete(path):
        raise ManifestError(f"serving: {state_path} pins stable version {stable!r}, expected a complete version "
                            f"in {serving_dir}/{model_name}; complete versions: {versions(serving_dir, model_name)}")
    return ServedVersion(stable, path, read_manifest(os.path.join(path, MANIFEST_FILE)))
