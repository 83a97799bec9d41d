"""The version registry: TF Serving's file-system source and its "latest" version policy, in-process.

`<serving_dir>/<model>/<version>/` folders count once complete (saved_model.pb, the rule
`flywheel/store/layout.py` states; `00000123` is version 123, push.json is optional). A poll (every
`poll_seconds` in a background thread, and once at start) loads the newest complete version that has not
failed, replays its warmup file, and only then makes it the one that answers; versions beyond the newest
`num_versions` loaded ones, and versions whose folder is gone, are unloaded. A version that fails to load
or warm up is not served: it is reported in the model status (state END, what went wrong without the server's
paths, and when it is tried again: `LoadRetries`, TF Serving's 5 retries a minute apart, then again when its
folder changes) and the older version keeps serving. Requests hold a reference to the `Servable` they resolved,
so a switch or an unload never fails one in flight.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import re
import threading
import time
from typing import Any, Callable, Optional

from flywheel import storage
from flywheel.server import routing, signatures
from flywheel.server.errors import InvalidArgument, NotFound
from flywheel.server.signatures import Signature
from flywheel.store import layout, warmup

logger = logging.getLogger(__name__)

START, LOADING, AVAILABLE, UNLOADING, END = "START", "LOADING", "AVAILABLE", "UNLOADING", "END"


@dataclasses.dataclass
class Servable:
    """One loaded version: its signatures (callable) and its SignatureDefs (for the metadata API).

    The version's graph runs in its own `tf.compat.v1.Session`, as TF Serving runs a SavedModel; the
    session closes when the last reference to the servable (the registry's, or a request in flight) goes.
    """

    model: str
    version: int
    path: str
    signatures: dict[str, Signature]
    signature_defs: dict[str, Any] = dataclasses.field(repr=False)
    session: Any = dataclasses.field(repr=False, default=None)

    def signature(self, name: str) -> Signature:
        key = name or warmup.DEFAULT_SIGNATURE
        if key not in self.signatures:
            raise InvalidArgument(f'Serving signature name: "{key}" not found in signature def')
        return self.signatures[key]


@dataclasses.dataclass
class VersionState:
    version: int
    state: str
    error_code: str = "OK"
    error_message: str = ""

    def to_json(self) -> dict:
        return {"version": str(self.version), "state": self.state,
                "status": {"error_code": self.error_code, "error_message": self.error_message}}


def load_servable(model: str, version: int, path: str) -> Servable:
    """Loads a SavedModel version into its own graph and session (TensorFlow's v1 loader, as TF Serving loads
    one: variables restored, tables initialized) and its SignatureDefs (as TF Serving reports them)."""
    # TensorFlow: seconds to import; only loading a version needs it
    import tensorflow as tf

    defs = signatures.signature_defs(path)
    graph = tf.Graph()
    # One intra-op thread: each call runs wholly on its caller's thread. Handing a small graph's ops to a pool
    # whose threads fell asleep between requests cost more than the ops (512 rows: 0.9 -> 0.5 ms a call).
    session = tf.compat.v1.Session(graph=graph, config=tf.compat.v1.ConfigProto(intra_op_parallelism_threads=1))
    try:
        with graph.as_default():
            tf.compat.v1.saved_model.load(session, ["serve"], path)
        callables = signatures.read(session, defs)
    except BaseException:
        session.close()
        raise
    return Servable(model, version, path, callables, defs, session)


def run_signature(signature: Signature, inputs: dict[str, Any]) -> dict[str, Any]:
    """One TensorFlow call: {input: array or list} -> {output: numpy array}.

    Inputs are converted to the SignatureDef's dtypes (no copy when they already have it); a value with more
    dimensions than the input's rank is refused (400 naming the input: a list where a [-1] input takes one value
    per row). Any other is fed as it is, as TF Serving feeds it, which checks no shape (`[2, 3, 4]` to a [-1, 1]
    input, `[[1, 2], [3, 4]]` too: the graph decides); so is any value of an input whose rank is unknown.
    """
    # numpy: imported with the server's codec already; the registry alone (a CLI's option types) does without
    import numpy as np

    args = []
    for name, spec in signature.inputs.items():
        value = np.asarray(inputs[name], dtype=spec.numpy_dtype)
        shape = value.shape
        if spec.shape is not None and len(shape) > len(spec.shape):
            raise InvalidArgument(f"input {name} of signature {signature.name}: shape {list(shape)} is not compatible "
                                  f"with {[-1 if d is None else d for d in spec.shape]}")
        args.append(value)
    try:
        return dict(zip(signature.outputs, signature.call(*args), strict=True))
    except UnicodeDecodeError as e:  # TensorFlow's error message quotes a request's bytes that are not UTF-8
        import tensorflow as tf  # TensorFlow: loaded already (the signature ran in it); seconds for a first import

        raise tf.errors.InvalidArgumentError(None, None, bytes(e.object).decode("utf-8", "replace")) from None


def warm_up(servable: Servable) -> int:
    """Replays the version's warmup requests (TF Serving's file); returns how many ran."""
    path = os.path.join(servable.path, warmup.WARMUP_PATH)
    count = 0
    for log in warmup.read(servable.path):
        name, inputs = warmup.request_inputs(log, path)
        if name not in servable.signatures:
            raise warmup.WarmupError(f"warmup: record {count + 1} of {path} names signature {name!r}; the model has "
                                     f"{sorted(servable.signatures)}")
        run_signature(servable.signatures[name], inputs)
        count += 1
    return count


@dataclasses.dataclass(frozen=True)
class LoadRetries:
    """TF Serving's `--max_num_load_retries` (5) and `--load_retry_interval_micros` (1 minute): a version that
    failed to load is tried again `max_retries` times, `interval_seconds` apart, then not again until its folder
    changes (a file added, removed or rewritten), which starts a new round."""

    max_retries: int = 5
    interval_seconds: float = 60.0

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError(f"serve: --max-load-retries must be 0 or more, got {self.max_retries}")
        if not (math.isfinite(self.interval_seconds) and self.interval_seconds > 0):
            raise ValueError(f"serve: --load-retry-interval must be a number above 0, got {self.interval_seconds}")


@dataclasses.dataclass(frozen=True)
class _LoadFailure:
    attempts: int  # failed loads in this round
    retry_at: float  # the registry's clock
    fingerprint: tuple  # the version folder's files when it last failed


_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/])/[\w.@+-]+(?:/[\w.@+{}|-]*)+")


def _public_reason(error: Exception, serving_dir: str) -> str:
    """What went wrong loading a version, for the model status: the error's first line, with paths relative to
    the serving folder and any other absolute path left out (the server's log has the whole error)."""
    text = (str(error).strip().splitlines() or [""])[0] or "no detail given"
    for root in {serving_dir.rstrip("/"), os.path.abspath(serving_dir)}:
        text = text.replace(root + "/", "")
    return _ABSOLUTE_PATH.sub("<path>", text)


def _fingerprint(path: str) -> tuple:
    """(relative path, size, modification time) of every file under a version folder; () when it is gone."""
    fs = storage.filesystem(path)
    if not fs.isdir(path):
        return ()
    files = []
    for folder, _, names in fs.walk(path):
        for name in names:
            full = os.path.join(folder, name)
            stat = fs.stat(full)
            files.append((os.path.relpath(full, path), getattr(stat, "st_size", getattr(stat, "length", None)),
                          getattr(stat, "st_mtime_ns", getattr(stat, "mtime_nsec", None))))
    return tuple(sorted(files))


class ModelRegistry:
    """The loaded versions of one model, kept in step with its serving folder."""

    def __init__(self, serving_dir: str, model: str, num_versions: int = 1, poll_seconds: float = 1.0,
                 labels: Optional[dict[str, int]] = None,
                 loader: Callable[[str, int, str], Servable] = load_servable,
                 on_change: Optional[Callable[[], None]] = None,
                 load_retries: LoadRetries = LoadRetries(), clock: Callable[[], float] = time.monotonic):
        if num_versions < 1:
            raise ValueError(f"serve: num_versions must be at least 1, got {num_versions}")
        self.serving_dir, self.model, self.num_versions = serving_dir, model, num_versions
        self.poll_seconds, self.labels = poll_seconds, dict(labels or {})
        self._loader, self._on_change = loader, on_change
        self._lock = threading.Lock()
        self._loaded: dict[int, Servable] = {}
        self._states: dict[int, VersionState] = {}
        self._failed: set[int] = set()
        self._failures: dict[int, _LoadFailure] = {}
        self.load_retries, self._clock = load_retries, clock
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        # Rollout hook (flywheel/server/routing.py): the routing of the model's rollout.json, None without one.
        self.router: Optional[routing.Router] = None
        self.own_labels = dict(self.labels)

    # ---- polling ---------------------------------------------------------------------------------------------

    def _set(self, version: int, state: str, code: str = "OK", message: str = "") -> None:
        with self._lock:
            self._states[version] = VersionState(version, state, code, message)

    def _load(self, version: int) -> bool:
        path = layout.version_path(self.serving_dir, self.model, version)
        self._set(version, LOADING)
        try:
            servable = self._loader(self.model, version, path)
            warmed = warm_up(servable)
        except Exception as e:  # any load or warmup failure keeps the version out of service, named in status
            self._failed_load(version, path, e)
            return False
        with self._lock:
            self._loaded[version] = servable
            self._states[version] = VersionState(version, AVAILABLE)
        logger.info("serve: %s version %d available (%d warmup requests replayed)", self.model, version, warmed)
        return True

    def _failed_load(self, version: int, path: str, error: Exception) -> None:
        """Records a failed load: the version is out of service until its retry is due (`_release_retries`)."""
        fingerprint = _fingerprint(path)
        with self._lock:
            previous = self._failures.get(version)
        same = previous is not None and previous.fingerprint == fingerprint
        attempts = previous.attempts + 1 if same else 1
        retries = self.load_retries
        if attempts <= retries.max_retries:
            then = (f"retry {attempts} of {retries.max_retries} in {retries.interval_seconds:g} s")
        else:
            then = f"gave up after {attempts} attempts; tried again when the version's folder changes"
        logger.warning("serve: %s version %d not loaded (%s): %s: %s", self.model, version, then,
                       type(error).__name__, error)
        with self._lock:
            self._failed.add(version)
            self._failures[version] = _LoadFailure(attempts, self._clock() + retries.interval_seconds, fingerprint)
        self._set(version, END, "UNKNOWN",
                  f"Loading version {version} failed: {_public_reason(error, self.serving_dir)} ({then})")

    def _release_retries(self) -> None:
        """Failed versions whose retry is due (or whose folder changed) may load again at this poll."""
        now = self._clock()
        with self._lock:
            failures = {v: f for v, f in self._failures.items() if v in self._failed}
        for version, failure in failures.items():
            due = failure.attempts <= self.load_retries.max_retries and now >= failure.retry_at
            if due or _fingerprint(layout.version_path(self.serving_dir, self.model, version)) != failure.fingerprint:
                with self._lock:
                    self._failed.discard(version)

    def poll(self) -> None:
        """One pass of the file-system source: load what should serve, then unload what should not."""
        self._release_retries()
        if routing.follow(self):  # rollout hook: with a rollout.json, its versions load and route (routing.py)
            return
        present = layout.versions(self.serving_dir, self.model)
        with self._lock:
            self._failed &= set(present)
            loaded = set(self._loaded)
        aspired: list[int] = []
        for version in sorted(present, reverse=True):
            if len(aspired) >= self.num_versions:
                break
            if version in self._failed:
                continue
            if version in loaded or self._load(version):
                aspired.append(version)
        changed = False
        for version in sorted(loaded - set(aspired)):
            self.unload(version)
            changed = True
        if changed or set(aspired) - loaded:
            self.changed()

    # ---- what a rollout's routing (routing.follow) asks of the registry ----------------------------------------

    def load_versions(self, wanted: list[int]) -> set[int]:
        """Loads (and warms up) each wanted version whose folder is complete and that is neither loaded nor
        failed; returns the versions loaded before."""
        present = set(layout.versions(self.serving_dir, self.model))
        with self._lock:
            self._failed &= present
            failed = set(self._failed)
            before = set(self._loaded)
        for version in wanted:
            if version in present and version not in failed and version not in before:
                self._load(version)
        return before

    def follow(self, router: Optional[routing.Router]) -> None:
        """Default requests and labels follow `router`; with None, the newest version and the server's own labels."""
        if router is None:
            self.router, self.labels = None, dict(self.own_labels)
        else:  # the labels first: a label of the new routing answers as soon as a default request takes it
            self.labels, self.router = dict(router.labels), router

    def unload(self, version: int, why: str = "") -> None:
        """Takes a version out of service (a request holding it finishes on its reference). why: ` (reason)`."""
        self._set(version, UNLOADING)
        with self._lock:
            self._loaded.pop(version, None)
            self._states[version] = VersionState(version, END)
        logger.info("serve: %s version %d unloaded%s", self.model, version, why)

    def changed(self) -> None:
        """Tells the `on_change` callback (when given) that the loaded versions changed."""
        if self._on_change is not None:
            self._on_change()

    def _run(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.poll()
            except Exception:  # a failing scan (storage unreachable) must not stop serving the loaded versions
                logger.exception("serve: scanning %s failed; serving the versions already loaded",
                                 os.path.join(self.serving_dir, self.model))

    def start(self) -> None:
        """Polls once (the server answers once the first version is loaded), then keeps polling in a thread."""
        self.poll()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"serve-{self.model}-versions", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    # ---- lookups ---------------------------------------------------------------------------------------------

    def loaded_versions(self) -> list[int]:
        with self._lock:
            return sorted(self._loaded)

    def _label_version(self, label: str) -> int:
        if label not in self.labels:
            raise InvalidArgument(f"Unrecognized servable version label: {label}")
        return self.labels[label]

    def get(self, model: str, version: Optional[int] = None, label: Optional[str] = None) -> Servable:
        """The servable a request names (latest when neither version nor label); TF Serving's errors."""
        if label is not None:
            version = self._label_version(label)
        elif version is None and self.router is not None and model == self.model:  # rollout hook: stable by default
            version = self.router.stable
        with self._lock:
            if model == self.model:
                if version is None and self._loaded:
                    return self._loaded[max(self._loaded)]
                if version in self._loaded:
                    return self._loaded[version]
        request = f"Latest({model})" if version is None else f"Specific({model}, {version})"
        raise NotFound(f"Servable not found for request: {request}")

    def status(self, model: str, version: Optional[int] = None, label: Optional[str] = None) -> list[dict]:
        """GetModelStatus: every known version (newest first), or the one named."""
        if label is not None:
            version = self._label_version(label)
        with self._lock:
            states = dict(self._states) if model == self.model else {}
        if version is not None:
            if version not in states:
                raise NotFound(f"Could not find version {version} of model {model}")
            return [states[version].to_json()]
        if not states:
            raise NotFound(f"Could not find any versions of model {model}")
        return [states[v].to_json() for v in sorted(states, reverse=True)]
