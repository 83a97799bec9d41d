"""The fast path for scheduled jobs: a rerun with unchanged inputs answers "nothing to do" without TensorFlow.

A stamp is sha256 over everything that decides what a run produces: the data fingerprint, the config,
the engine, flywheel's own source, the installed versions of the stack (read from package metadata,
nothing imported) and the latest version in serving (a push or a removal by anyone changes it). It is
saved, while the output directory's lock is held, after a run that passed, and checked before the
next one; the files it lists in must_exist must still be there for it to count.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from importlib import metadata
from typing import Any, Optional

STAMP_FILE = os.path.join(".flywheel", "last_run.json")
STACK = ("tfx", "tensorflow", "tensorflow-model-analysis", "tensorflow-data-validation", "tensorflow-transform",
         "apache-beam", "ml-metadata")
_PACKAGES = ("flywheel", "flywheel.components", "flywheel.pipelines", "flywheel.schemas")


def stack_versions() -> dict[str, str]:
    """The installed version of each stack package ('absent' when not installed), without importing any."""
    found = {}
    for name in STACK:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "absent"
    return found


def _package_dirs() -> list[str]:
    dirs = []
    for name in _PACKAGES:
        spec = importlib.util.find_spec(name)
        dirs += list(spec.submodule_search_locations or []) if spec else []
    return dirs


def code_digest() -> str:
    """sha256 of flywheel's source, schemas and JSON files (tests' data folders excluded)."""
    digest = hashlib.sha256()
    roots = [os.path.realpath(d) for d in _package_dirs()]
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if d not in ("__pycache__", "testdata")
                                 and os.path.realpath(os.path.join(dirpath, d)) not in roots)
            for name in sorted(filenames):
                if name.endswith((".py", ".pbtxt", ".json")):
                    path = os.path.join(dirpath, name)
                    digest.update(os.path.relpath(path, os.path.dirname(root)).encode() + b"\0")
                    with open(path, "rb") as f:
                        digest.update(f.read())
    return digest.hexdigest()


def compute(config: dict[str, Any], data_fingerprint: str, engine: str, serving_version: Optional[int]) -> str:
    """The stamp of a run with these inputs, given the latest version now in serving (None: nothing)."""
    payload = json.dumps({"config": config, "data": data_fingerprint, "engine": engine, "code": code_digest(),
                          "stack": stack_versions(), "serving_version": serving_version},
                         sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def load(output_dir: str) -> Optional[dict[str, Any]]:
    path = os.path.join(output_dir, STAMP_FILE)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError:  # a stamp cut short is no stamp: the run goes ahead
            return None


def still_valid(previous: Optional[dict[str, Any]], stamp: str) -> bool:
    if not previous or previous.get("stamp") != stamp:
        return False
    return all(os.path.exists(p) for p in previous.get("must_exist", []))


def save(output_dir: str, stamp: str, summary: dict[str, Any], must_exist: list[str]) -> None:
    """Writes the stamp atomically. Call it while holding the output directory's lock."""
    path = os.path.join(output_dir, STAMP_FILE)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"stamp": stamp, "summary": summary, "must_exist": must_exist}, f, indent=2)
    os.replace(tmp, path)


def clear(output_dir: str) -> None:
    path = os.path.join(output_dir, STAMP_FILE)
    if os.path.exists(path):
        os.remove(path)
