"""The serving directory: `<serving_dir>/<model_name>/<version>/` with a push.json manifest.

TF Serving loads numeric version folders only; anything else (a push in progress
under a temporary name) is invisible to it and to these functions.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Optional

MANIFEST_FILE = "push.json"


@dataclasses.dataclass(frozen=True)
class ServedVersion:
    version: int
    path: str
    manifest: dict


def _fs():
    from tfx.dsl.io import fileio

    return fileio


def versions(serving_dir: str, model_name: str) -> list[int]:
    root = os.path.join(serving_dir, model_name)
    if "://" not in root and not os.path.isdir(root):
        return []
    fileio = _fs() if "://" in root else None
    names = fileio.listdir(root) if fileio else os.listdir(root)
    found = []
    for name in names:
        name = name.rstrip("/")
        if name.isdigit() and _exists(os.path.join(root, name, MANIFEST_FILE)):
            found.append(int(name))
    return sorted(found)


def _exists(path: str) -> bool:
    if "://" in path:
        return _fs().exists(path)
    return os.path.exists(path)


def read_manifest(path: str) -> dict:
    if "://" in path:
        with _fs().open(path, "r") as f:
            return json.loads(f.read())
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def latest(serving_dir: str, model_name: str) -> Optional[ServedVersion]:
    """The newest complete version in serving, or None when nothing has been pushed."""
    found = versions(serving_dir, model_name)
    if not found:
        return None
    path = os.path.join(serving_dir, model_name, str(found[-1]))
    return ServedVersion(found[-1], path, read_manifest(os.path.join(path, MANIFEST_FILE)))
