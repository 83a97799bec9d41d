"""Serving folders for rollout tests: a small real SavedModel published as versions the way Push lays them out,
and the checked-in taxi runs (tests/fixtures: real pushed versions and their ML-Metadata store) where lineage
matters."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from flywheel.store import layout
from tests import fixtures, tiny_runs

MODEL = "taxi"


@pytest.fixture(scope="session")
def saved_model(tmp_path_factory) -> str:
    """A real SavedModel (one dense unit behind a serving_default signature), saved once per session."""
    import tensorflow as tf

    class Tiny(tf.Module):
        def __init__(self):
            super().__init__()
            self.w = tf.Variable([[0.5], [-0.25]])

        @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32)])
        def serve(self, x):
            return {"prediction": tf.sigmoid(tf.matmul(x, self.w))}

    path = str(tmp_path_factory.mktemp("saved_model") / "model")
    tiny = Tiny()
    tf.saved_model.save(tiny, path, signatures={"serving_default": tiny.serve})
    return path


def add_version(serving_dir: str, source: str, version: int, manifest: dict | None = None) -> str:
    """Publishes a copy of `source` as <serving_dir>/taxi/<version> the way Push does: renamed into place whole,
    push.json beside saved_model.pb (a manifest is written unless the source has one)."""
    root = os.path.join(serving_dir, MODEL)
    os.makedirs(root, exist_ok=True)
    staging = os.path.join(root, f".push-{version}-test")
    shutil.copytree(source, staging)
    if manifest is not None or not os.path.exists(os.path.join(staging, layout.MANIFEST_FILE)):
        with open(os.path.join(staging, layout.MANIFEST_FILE), "w") as f:
            json.dump({"model_name": MODEL, "version": version, **(manifest or {})}, f)
    final = os.path.join(root, str(version))
    os.rename(staging, final)
    return final


@pytest.fixture
def serving_dir(tmp_path, saved_model) -> str:
    """A serving folder with versions 1 and 2 of the small SavedModel."""
    folder = str(tmp_path / "serving")
    for version in (1, 2):
        add_version(folder, saved_model, version)
    return folder


@pytest.fixture(scope="session")
def trained_out(tmp_path_factory) -> str:
    """The session's two tiny taxi runs, trained here (both pushed): every artifact of both runs, for the tests
    marked slow that read more than the checked-in runs keep."""
    return tiny_runs.two_runs(str(tmp_path_factory.mktemp("tiny")))


@pytest.fixture
def run_copy(tmp_path) -> str:
    """A copy of the checked-in taxi runs (rollouts write to their metadata store and serving folder), as an output
    dir."""
    return fixtures.copy_run(str(tmp_path / "out"))


_CONSTANT_MODEL = """
import sys
import tensorflow as tf

ints = ("trip_seconds", "trip_start_hour", "trip_start_day", "trip_start_month")
FAIL_ABOVE_FARE = float(sys.argv[3]) if sys.argv[2] != "-" else None
specs = {name: tf.TensorSpec([None], tf.string if name == "payment_type" else tf.int64 if name in ints else tf.float32,
                             name=name) for name in sys.argv[4:]}


class Constant(tf.Module):
    @tf.function(input_signature=[specs])
    def serve(self, features):
        value = tf.constant(0.3, tf.float32)
        if FAIL_ABOVE_FARE is not None:  # inflates text that is not zlib: a DataLossError, the server's 500
            not_zlib = tf.strings.as_string(tf.reduce_max(features["fare"]))
            value = tf.cond(tf.reduce_any(features["fare"] > FAIL_ABOVE_FARE),
                            lambda: tf.strings.to_number(tf.io.decode_compressed(not_zlib, "ZLIB")), lambda: value)
        return {"outputs": tf.fill([tf.shape(features["fare"])[0], 1], value)}


module = Constant()
tf.saved_model.save(module, sys.argv[1], signatures={"serving_default": module.serve})
"""


def constant_model(path: str, features: list[str], fail_above_fare: float | None = None) -> str:
    """A SavedModel taking the taxi model's nine raw features and answering 0.3 for every row; with
    `fail_above_fare`, a request holding a fare above it fails inside the model (a runtime DataLossError, which TF
    Serving answers with a 500: not bad input). Saved by a child process: tracing and saving a tf.function here,
    after the session's pipeline runs, crashed the interpreter at exit."""
    fail = ["fail", str(fail_above_fare)] if fail_above_fare is not None else ["-", "-"]
    subprocess.run([sys.executable, "-c", _CONSTANT_MODEL, path, *fail, *features], check=True, capture_output=True,
                   timeout=300)
    return path
