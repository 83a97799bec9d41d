"""Publishing a SavedModel into a TF Serving layout: checked first, then atomically renamed into place."""

from __future__ import annotations

import datetime
import gzip
import hashlib
import json
import os
import shutil
import time
import uuid
from typing import Any, Optional

from flywheel.components.common import serving

TMP_PREFIX = ".push-"
BASELINE_PROFILE = "baseline_profile.json"


class PushError(RuntimeError):
    """The model cannot be published (it fails its own serving signature, or the destination is unusable)."""


def tree_digest(path: str) -> str:
    """sha256 over every file's relative path and bytes: identical models have identical digests."""
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(root, name)
            digest.update(os.path.relpath(full, path).encode("utf-8") + b"\0")
            with open(full, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()


def sample_examples(examples_uri: str, split: str, n: int) -> list[bytes]:
    """The first n serialized tf.Examples of a split (gzip TFRecords)."""
    from tfx.dsl.io import fileio

    out: list[bytes] = []
    for path in sorted(fileio.glob(os.path.join(examples_uri, f"Split-{split}", "*.gz"))):
        with fileio.open(path, "rb") as raw, gzip.GzipFile(fileobj=raw) as f:
            while len(out) < n:
                header = f.read(12)
                if len(header) < 12:
                    break
                length = int.from_bytes(header[:8], "little")
                out.append(f.read(length))
                f.read(4)
        if len(out) >= n:
            break
    return out


def check_serving_signature(model_dir: str, examples: list[bytes]) -> list[float]:
    """Loads the SavedModel and runs `serving_default` on real examples; returns the predictions."""
    import tensorflow as tf

    if not examples:
        raise PushError(f"push: no examples to check the model with (model {model_dir})")
    loaded = tf.saved_model.load(model_dir)
    if "serving_default" not in loaded.signatures:
        raise PushError(f"push: model {model_dir} has no 'serving_default' signature; "
                        f"has {list(loaded.signatures.keys())}")
    outputs = loaded.signatures["serving_default"](examples=tf.constant(examples))
    values = next(iter(outputs.values())).numpy().reshape(-1).tolist()
    if len(values) != len(examples) or not all(0.0 <= v <= 1.0 for v in values):
        raise PushError(f"push: serving_default of {model_dir} answered {values[:8]} for {len(examples)} "
                        "examples; expected one probability in [0, 1] per example")
    return values


def next_version(serving_dir: str, model_name: str, now: Optional[float] = None) -> int:
    existing = serving.versions(serving_dir, model_name)
    candidate = int(now if now is not None else time.time())
    return max(candidate, existing[-1] + 1) if existing else candidate


def clean_stale(model_root: str) -> None:
    """Removes temporary folders left by a push that crashed before its rename."""
    if os.path.isdir(model_root):
        for name in os.listdir(model_root):
            if name.startswith(TMP_PREFIX):
                shutil.rmtree(os.path.join(model_root, name), ignore_errors=True)


def publish(model_dir: str, serving_dir: str, model_name: str, manifest: dict[str, Any],
            extra_files: Optional[dict[str, str]] = None) -> tuple[int, str]:
    """Copies model_dir to `<serving_dir>/<model_name>/<version>/` atomically; returns (version, path).

    extra_files: {name: content} written beside the model (the training baseline profile).
    """
    model_root = os.path.join(serving_dir, model_name)
    os.makedirs(model_root, exist_ok=True)
    clean_stale(model_root)
    version = next_version(serving_dir, model_name)
    tmp = os.path.join(model_root, f"{TMP_PREFIX}{version}-{uuid.uuid4().hex[:8]}")
    shutil.copytree(model_dir, tmp)
    for name, content in (extra_files or {}).items():
        with open(os.path.join(tmp, name), "w", encoding="utf-8") as f:
            f.write(content)
        manifest = dict(manifest, baseline_profile=name)
    manifest = dict(manifest, version=version,
                    pushed_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
    with open(os.path.join(tmp, serving.MANIFEST_FILE), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2, sort_keys=True)
    final = os.path.join(model_root, str(version))
    os.rename(tmp, final)  # atomic on one filesystem: the version appears whole or not at all
    return version, final


def decide(blessed: bool, digest: str, serving_dir: str, model_name: str) -> Optional[str]:
    """Why not to push (None: push)."""
    if not blessed:
        return "model not blessed by evaluation"
    current = serving.latest(serving_dir, model_name)
    if current is not None and current.manifest.get("model_sha256") == digest:
        return f"identical to serving version {current.version}"
    return None
