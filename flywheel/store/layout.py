"""The serving directory: `<serving_dir>/<model_name>/<version>/`, TF Serving's layout, with Push's push.json.

TF Serving loads numeric version folders only, their names read as int64 (`safe_strto64`: `00000123` is
version 123; a name beyond int64, `99999999999999999999`, is no version); anything else (a push in progress
under a temporary name) is invisible to it and to these functions. A version counts once its `saved_model.pb`
(or, as TF Serving, a `saved_model.pbtxt`) exists: Push writes it last, which is TF Serving's completeness
rule on object storage where a folder cannot be renamed into place. Push's `push.json` beside it is optional:
a SavedModel exported by anything else serves as it does in TF Serving, with an empty manifest. `rollout.json`
beside the versions (the rollout state, read through its format's owner `flywheel.rollout.state`) is not
numeric either: once it exists, `current` (what serves by default) is its stable version.

Every file is reached through TFX's filesystem layer: its local plugin for local paths (no TensorFlow
import, so the CLI's up-to-date check stays fast) and `tfx.dsl.io.fileio` (TensorFlow's gfile:
gs://, s3://, hdfs://, ram://) for the rest.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any, Optional

from flywheel.rollout import state
from flywheel.storage import JSONObjectError, filesystem, json_object, listdir

MANIFEST_FILE = "push.json"
SAVED_MODEL_FILE = "saved_model.pb"
SAVED_MODEL_TEXT_FILE = "saved_model.pbtxt"  # a SavedModel written as text, which TF Serving loads too
INT64_MAX = 2**63 - 1

logger = logging.getLogger(__name__)


class ManifestError(ValueError):
    """A push.json that is not a readable JSON object (truncated by a crash, or edited by hand)."""


@dataclasses.dataclass(frozen=True)
class ServedVersion:
    version: int
    path: str
    manifest: dict


def parse_version(name: str) -> Optional[int]:
    """A version folder's number as TF Serving reads it (int64, leading zeros allowed, an optional '+'), or None
    when the name is not one. Negative numbers, which TF Serving's parser also reads, are not versions here: no
    URL can name them (`/versions/(\\d+)`)."""
    digits = name[1:] if name.startswith("+") else name
    if not digits.isascii() or not digits.isdigit() or len(digits.lstrip("0")) > 19:
        return None
    number = int(digits)
    return number if number <= INT64_MAX else None


def version_folders(serving_dir: str, model_name: str) -> dict[int, str]:
    """{version: folder name} of every numeric folder, complete or not. When two names read as one number
    (`123` and `00000123`), the plain one wins (TF Serving keeps whichever its listing gives last)."""
    folders: dict[int, str] = {}
    for name in sorted(listdir(os.path.join(serving_dir, model_name))):
        version = parse_version(name)
        if version is not None and folders.get(version) != str(version):
            folders[version] = name
    return folders


def numeric_folders(serving_dir: str, model_name: str) -> list[int]:
    """Every numeric folder, complete or not: no new version may take one of these numbers."""
    return sorted(version_folders(serving_dir, model_name))


def version_path(serving_dir: str, model_name: str, version: int) -> str:
    """The folder of a version (`00000123` for 123 when that is its name), `<model>/<version>` when none exists."""
    name = version_folders(serving_dir, model_name).get(version, str(version))
    return os.path.join(serving_dir, model_name, name)


def saved_model_file(version_path: str) -> Optional[str]:
    """The version's SavedModel: its saved_model.pb, else its saved_model.pbtxt (TF Serving loads either); None
    when it has neither (not complete)."""
    fs = filesystem(version_path)
    for name in (SAVED_MODEL_FILE, SAVED_MODEL_TEXT_FILE):
        path = os.path.join(version_path, name)
        if fs.exists(path):
            return path
    return None


def is_complete(version_path: str) -> bool:
    return saved_model_file(version_path) is not None


def versions(serving_dir: str, model_name: str) -> list[int]:
    """The complete versions, oldest first."""
    root = os.path.join(serving_dir, model_name)
    return sorted(v for v, name in version_folders(serving_dir, model_name).items()
                  if is_complete(os.path.join(root, name)))


def version_manifest(version_path: str) -> dict:
    """A version's push.json, or {} when it has none (a SavedModel exported by anything but Push)."""
    path = os.path.join(version_path, MANIFEST_FILE)
    if not filesystem(path).exists(path):
        return {}
    return read_manifest(path)


def read_saved_model(version_path: str) -> Any:
    """The SavedModel proto of `<version_path>/saved_model.pb` (or `.pbtxt`), read through the filesystem layer
    (gs:// too) without loading the model: its signatures' names, inputs and outputs."""
    from google.protobuf import text_format  # protobuf's text parser: only a .pbtxt model needs it
    from tensorflow.core.protobuf import saved_model_pb2  # its package imports TensorFlow: only readers of signatures

    path = saved_model_file(version_path) or os.path.join(version_path, SAVED_MODEL_FILE)
    with filesystem(path).open(path, "rb") as f:
        data = f.read()
    proto = saved_model_pb2.SavedModel()
    if path.endswith(SAVED_MODEL_TEXT_FILE):
        text_format.Parse(data.decode("utf-8"), proto)
    else:
        proto.ParseFromString(data)
    return proto


def _read_text(path: str) -> str:
    try:
        with filesystem(path).open(path, "r") as f:
            return f.read()
    except Exception as e:  # each filesystem raises its own not-found and I/O errors; re-raised, named
        raise ManifestError(f"serving: cannot read {path}: {type(e).__name__}: {e}") from e


def read_manifest(path: str) -> dict:
    """A push.json as a dict; ManifestError naming the file when it is missing, truncated or not an object."""
    try:
        return json_object(_read_text(path), path)
    except JSONObjectError as e:
        raise ManifestError(f"serving: {e}") from e


def latest(serving_dir: str, model_name: str) -> Optional[ServedVersion]:
    """The newest complete version whose manifest (if it has one) is readable, or None when there is none.

    A version whose push.json cannot be read is reported (a warning naming the file) and skipped.
    """
    for version in reversed(versions(serving_dir, model_name)):
        path = version_path(serving_dir, model_name, version)
        try:
            return ServedVersion(version, path, version_manifest(path))
        except ManifestError as e:
            logger.warning("%s; version %d skipped", e, version)
    return None


def current(serving_dir: str, model_name: str) -> Optional[ServedVersion]:
    """The version that serves by default: the stable version of the model's rollout state (`rollout.json`)
    when it has one, else the newest complete version (`latest`); None when nothing is in serving.

    A version pushed while a rollout state exists is not served by default until a rollout promotes it.
    ManifestError when rollout.json is unreadable or not a rollout state, or its stable version is not a complete
    version.
    """
    state_path = state.path(serving_dir, model_name)
    if not filesystem(state_path).exists(state_path):
        return latest(serving_dir, model_name)
    try:
        stable = state.parse(_read_text(state_path), state_path, model_name).stable
    except state.RolloutError as e:
        raise ManifestError(str(e)) from e
    path = version_path(serving_dir, model_name, stable)
    if not is_complete(path):
        raise ManifestError(f"serving: {state_path} pins stable version {stable!r}, expected a complete version "
                            f"in {serving_dir}/{model_name}; complete versions: {versions(serving_dir, model_name)}")
    return ServedVersion(stable, path, version_manifest(path))
