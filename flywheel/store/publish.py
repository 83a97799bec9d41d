"""Publishing a SavedModel into a TF Serving layout, safe under concurrent pushes and crashes.

- `serving_lock`: one push at a time decides and publishes in a model's serving folder (an flock that
  dies with its process). Object storage has no flock: there, pushes are not serialized and the two
  guarantees below are what keep them apart.
- `claim_version`: a writer claims a number by creating its own marker `.push-<version>-<writer>`, then
  listing the folder; it keeps the number only if no other marker or version folder has it. Of two
  writers that pick one number, the one that lists second sees the other's marker, so they can never
  both keep it, lock or no lock (a writer that loses retries with a new number).
- `clean_stale`: removes the markers (and partial copies) of writers that are gone, never a live one's.
- `publish`: on a local filesystem the copy is built in the marker folder (invisible to TF Serving),
  fsynced file by file and folder by folder, and renamed into place: a crash or a power cut leaves no
  half-written version. On object storage (gs://, s3://), where a folder cannot be renamed atomically,
  the copy is written into the version folder with `saved_model.pb` last: TF Serving's rule there is
  that a version exists once its `saved_model.pb` does, and `layout.versions` follows the same rule.

Every file goes through TFX's filesystem layer (`storage.filesystem`): `tfx.dsl.io.fileio` for any URI
with a scheme, and for local paths the local plugin that fileio itself uses when TensorFlow is absent, so
a local push imports no TensorFlow. `os` serves only what that layer has no call for, on local paths
only: the flocks and fsync.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import fcntl
import gzip
import hashlib
import json
import logging
import os
import random
import socket
import time
import uuid
from typing import Any, Iterator, Optional

from tfx.dsl.io.filesystem import NotFoundError

from flywheel import storage
from flywheel.store import layout

TMP_PREFIX = ".push-"
LOCK_FILE = ".push.lock"
WRITER_FILE = "writer.json"
PRIVATE = "new"
PRIVATE_STALE_AFTER_SECONDS = 3600.0
BASELINE_PROFILE = "baseline_profile.json"
LOCK_TIMEOUT_SECONDS = 3600.0
STALE_AFTER_SECONDS = 24 * 3600.0
CLAIM_ATTEMPTS = 100
DEFAULT_SIGNATURE = "serving_default"
EXAMPLES_SIGNATURE = "serving_examples"

logger = logging.getLogger(__name__)


class PushError(RuntimeError):
    """The model cannot be published (it fails its own serving signature, or the destination is unusable)."""


def _names(path: str) -> list[str]:
    return storage.listdir(path)


def tree(root: str) -> tuple[list[str], list[str]]:
    """(folders, files) under root, relative, in a fixed order: a folder's files (sorted), then its sub-folders."""
    files, folders = [], []
    for name in sorted(_names(root)):
        (folders if storage.filesystem(root).isdir(os.path.join(root, name)) else files).append(name)
    all_folders, all_files = [], list(files)
    for folder in folders:
        sub_folders, sub_files = tree(os.path.join(root, folder))
        all_folders += [folder] + [f"{folder}/{rel}" for rel in sub_folders]
        all_files += [f"{folder}/{rel}" for rel in sub_files]
    return all_folders, all_files


def tree_digest(path: str) -> str:
    """sha256 over every file's relative path and bytes: identical models have identical digests."""
    digest = hashlib.sha256()
    for rel in tree(path)[1]:
        digest.update(rel.encode("utf-8") + b"\0")
        with storage.filesystem(path).open(os.path.join(path, rel), "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def sample_examples(examples_uri: str, split: str, n: int) -> list[bytes]:
    """The first n serialized tf.Examples of a split (gzip TFRecords)."""
    out: list[bytes] = []
    for path in sorted(storage.filesystem(examples_uri).glob(os.path.join(examples_uri, f"Split-{split}", "*.gz"))):
        with storage.filesystem(path).open(path, "rb") as raw, gzip.GzipFile(fileobj=raw) as f:
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


def check_serving_signature(model_dir: str, examples: list[bytes], batch_size: int = 1024) -> list[float]:
    """Loads the SavedModel and runs `serving_examples` on real examples (in batches); returns the predictions.

    The model must also have `serving_default` (what TF Serving answers when a request names no signature).
    """
    import tensorflow as tf  # TensorFlow: seconds to import; only Push, which loads the model, needs it

    if not examples:
        raise PushError(f"push: no examples to check the model with (model {model_dir})")
    loaded = tf.saved_model.load(model_dir)
    missing = [name for name in (DEFAULT_SIGNATURE, EXAMPLES_SIGNATURE) if name not in loaded.signatures]
    if missing:
        raise PushError(f"push: model {model_dir} has no {missing} signature; has {list(loaded.signatures.keys())}")
    values: list[float] = []
    for start in range(0, len(examples), batch_size):
        chunk = examples[start:start + batch_size]
        outputs = loaded.signatures[EXAMPLES_SIGNATURE](examples=tf.constant(chunk))
        answered = next(iter(outputs.values())).numpy().reshape(-1).tolist()
        if len(answered) != len(chunk) or not all(0.0 <= v <= 1.0 for v in answered):
            raise PushError(f"push: {EXAMPLES_SIGNATURE} of {model_dir} answered {answered[:8]} for {len(chunk)} "
                            "examples; expected one probability in [0, 1] per example")
        values.extend(answered)
    return values


def decide(blessed: bool, digest: str, baseline_version: Optional[int],
           current: Optional[layout.ServedVersion]) -> Optional[str]:
    """Why not to push (None: push). Call it while holding serving_lock, with serving as it is now.

    baseline_version: the serving version the model was evaluated against (None: there was none).
    """
    if not blessed:
        return "model not blessed by evaluation"
    if current is None:
        return None
    if current.manifest.get("model_sha256") == digest:
        return f"identical to serving version {current.version}"
    if baseline_version is None or current.version > baseline_version:
        against = f"serving version {baseline_version}" if baseline_version is not None else "no model in serving"
        return (f"blessed against {against}, but serving now has version {current.version} (pushed since the "
                "evaluation): not published over a newer model; run the pipeline again to evaluate against it")
    return None


@contextlib.contextmanager
def serving_lock(model_root: str, timeout: float = LOCK_TIMEOUT_SECONDS) -> Iterator[None]:
    """Holds `<model_root>/.push.lock` (waiting up to `timeout` seconds for another push to finish).

    The lock is an flock: the kernel releases it when the holder exits, killed or not. On object storage
    there is no such lock; the call only logs that pushes there are not serialized.
    """
    storage.filesystem(model_root).makedirs(model_root)
    if not storage.is_local(model_root):
        logger.info("push: %s is on object storage, which has no lock: concurrent pushes are kept apart by "
                    "exclusive version claims and the blessing's baseline check only", model_root)
        yield
        return
    path = os.path.join(model_root, LOCK_FILE)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
                    raise PushError(f"push: {model_root} is locked by {holder}; waited {timeout:.0f} s for its push "
                                    "to finish") from None
                time.sleep(0.1)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode(), 0)
        yield
    finally:
        os.close(fd)


@dataclasses.dataclass
class Claim:
    """A version number held by one writer: its marker folder exists until the version is published."""

    version: int
    marker: str
    final: str
    handle: Optional[int] = None

    def release(self) -> None:
        if self.handle is not None:
            os.close(self.handle)
            self.handle = None


def marker_version(name: str) -> Optional[int]:
    """The version a `.push-<version>-<writer>` folder claims (None for any other name)."""
    if not name.startswith(TMP_PREFIX):
        return None
    head = name[len(TMP_PREFIX):].split("-", 1)[0]
    return int(head) if head.isdigit() else None


def _lock_folder(path: str) -> Optional[int]:
    """Local: an flock on the folder itself, held while its writer lives. Object storage: nothing."""
    if not storage.is_local(path):
        return None
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


def _write(path: str, content: str) -> None:
    with storage.filesystem(path).open(path, "w") as f:
        f.write(content)


def _create_marker(claim: Claim, writer: str) -> None:
    """Creates the claim's marker with its writer.json; on a local filesystem, already locked when it appears.

    Locally the folder is made and locked under a private name (`.push-new-<writer>`, which claims nothing)
    and renamed to the marker's name: a cleaner can never see the marker before its writer holds it.
    """
    info = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "started_at": time.time()})
    if not storage.is_local(claim.marker):
        storage.filesystem(claim.marker).makedirs(claim.marker)
        _write(os.path.join(claim.marker, WRITER_FILE), info)
        return
    private = os.path.join(os.path.dirname(claim.marker), f"{TMP_PREFIX}{PRIVATE}-{writer}")
    storage.filesystem(private).makedirs(private)
    claim.handle = _lock_folder(private)
    _write(os.path.join(private, WRITER_FILE), info)
    storage.filesystem(private).rename(private, claim.marker)


def claim_version(model_root: str, now: Optional[float] = None) -> Claim:
    """Claims the next version number exclusively: Unix seconds, above every number already used."""
    writer = uuid.uuid4().hex[:12]
    for attempt in range(CLAIM_ATTEMPTS):
        names = _names(model_root)
        taken = [int(n) for n in names if n.isdigit()] + [v for v in map(marker_version, names) if v is not None]
        version = max(int(now if now is not None else time.time()), max(taken, default=0) + 1)
        claim = Claim(version, os.path.join(model_root, f"{TMP_PREFIX}{version}-{writer}"),
                      os.path.join(model_root, str(version)))
        _create_marker(claim, writer)
        mine = os.path.basename(claim.marker)
        rivals = [n for n in _names(model_root) if n != mine and (n == str(version) or marker_version(n) == version)]
        if not rivals:
            return claim
        claim.release()
        storage.filesystem(claim.marker).rmtree(claim.marker)
        time.sleep(random.uniform(0.0, 0.02 * (1 + attempt % 10)))
    raise PushError(f"push: could not claim a version in {model_root} in {CLAIM_ATTEMPTS} attempts: other "
                    "writers kept taking the same numbers")


def writer_alive(marker: str, stale_after: float = STALE_AFTER_SECONDS) -> bool:
    """Whether the writer of a marker folder may still be at work.

    Local: its flock on the folder is held (the kernel drops it when the writer dies). Object storage: its
    writer.json is younger than `stale_after` seconds; a marker without a readable writer.json is one
    being created, and is kept.
    """
    if storage.is_local(marker):
        try:
            fd = os.open(marker, os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return False
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
    try:
        started = layout.read_manifest(os.path.join(marker, WRITER_FILE)).get("started_at")
    except layout.ManifestError:
        return True
    if not isinstance(started, (int, float)):
        return True
    return time.time() - started < stale_after


def _remove(path: str) -> None:
    """rmtree that accepts a folder another cleaner removed first."""
    try:
        storage.filesystem(path).rmtree(path)
    except NotFoundError:
        logger.info("push: %s was already removed", path)


def _private_leftover(path: str) -> bool:
    """A `.push-new-<writer>` folder (local only) whose writer died before renaming it to its marker."""
    if not (storage.is_local(path) and os.path.basename(path).startswith(f"{TMP_PREFIX}{PRIVATE}-")):
        return False
    try:
        old = time.time() - storage.filesystem(path).stat(path).st_mtime > PRIVATE_STALE_AFTER_SECONDS
    except NotFoundError:
        return False
    return old and not writer_alive(path)


def clean_stale(model_root: str, stale_after: float = STALE_AFTER_SECONDS) -> list[str]:
    """Removes the markers of writers that are gone (and, on object storage, their partial versions).

    Returns the names removed. A partial version folder is removed only when no other marker claims it.
    """
    removed = []
    names = _names(model_root)
    for name in names:
        version = marker_version(name)
        marker = os.path.join(model_root, name)
        if _private_leftover(marker):
            _remove(marker)
            removed.append(name)
        if version is None or writer_alive(marker, stale_after):
            continue
        partial = os.path.join(model_root, str(version))
        others = [n for n in names if n != name and marker_version(n) == version]
        if not others and storage.filesystem(partial).exists(partial) and not layout.is_complete(partial):
            _remove(partial)
            removed.append(str(version))
        _remove(marker)
        removed.append(name)
    if removed:
        logger.warning("push: removed %s in %s, left by pushes whose writer is gone", removed, model_root)
    return removed


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: str) -> None:
    """fsyncs every file, then every folder bottom-up, so the data is on disk before the rename names it."""
    folders, files = tree(root)
    for rel in files:
        _fsync(os.path.join(root, rel))
    for rel in sorted(folders, key=lambda f: f.count("/"), reverse=True):
        _fsync(os.path.join(root, rel))
    _fsync(root)


def publish(model_dir: str, serving_dir: str, model_name: str, manifest: dict[str, Any],
            extra_files: Optional[dict[str, str]] = None, now: Optional[float] = None,
            binary_files: Optional[dict[str, bytes]] = None) -> tuple[int, str]:
    """Copies model_dir to `<serving_dir>/<model_name>/<version>/`; returns (version, path).

    Hold `serving_lock` around the decision and this call. extra_files: {name: content} written beside
    the model (the training baseline profile); binary_files: {relative path: bytes} written into it (TF
    Serving's `assets.extra/tf_serving_warmup_requests`); the manifest is written after them,
    `saved_model.pb` last.
    """
    folders, files = tree(model_dir)
    if layout.SAVED_MODEL_FILE not in files:
        raise PushError(f"push: {model_dir} has no {layout.SAVED_MODEL_FILE}; expected a SavedModel, "
                        f"found {files[:10]}")
    model_root = os.path.join(serving_dir, model_name)
    storage.filesystem(model_root).makedirs(model_root)
    clean_stale(model_root)
    claim = claim_version(model_root, now)
    local = storage.is_local(model_root)
    target = claim.marker if local else claim.final
    try:
        for rel in folders:
            storage.filesystem(target).makedirs(os.path.join(target, rel))
        for rel in files:
            if rel != layout.SAVED_MODEL_FILE:
                storage.filesystem(model_dir, target).copy(os.path.join(model_dir, rel), os.path.join(target, rel),
                                                           overwrite=True)
        for name, content in (extra_files or {}).items():
            _write(os.path.join(target, name), content)
            manifest = dict(manifest, baseline_profile=name)
        for rel, content in (binary_files or {}).items():
            storage.filesystem(target).makedirs(os.path.dirname(os.path.join(target, rel)))
            with storage.filesystem(target).open(os.path.join(target, rel), "wb") as f:
                f.write(content)
        manifest = dict(manifest, version=claim.version,
                        pushed_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
        _write(os.path.join(target, layout.MANIFEST_FILE), json.dumps(manifest, indent=2, sort_keys=True))
        storage.filesystem(model_dir, target).copy(os.path.join(model_dir, layout.SAVED_MODEL_FILE),
                    os.path.join(target, layout.SAVED_MODEL_FILE), overwrite=True)
        if local:
            storage.filesystem(target).remove(os.path.join(target, WRITER_FILE))
            _fsync_tree(target)
            storage.filesystem(target).rename(target, claim.final)
            _fsync(model_root)
        else:
            storage.filesystem(claim.marker).rmtree(claim.marker)
    except BaseException:
        if not local and storage.filesystem(claim.final).exists(claim.final) and not layout.is_complete(claim.final):
            storage.filesystem(claim.final).rmtree(claim.final)
        if storage.filesystem(claim.marker).exists(claim.marker):
            storage.filesystem(claim.marker).rmtree(claim.marker)
        raise
    finally:
        claim.release()
    return claim.version, claim.final
