"""Which model batch inference scores with: a version in the TF Serving layout and its tf.Example signature.

`<serving_dir>/<model>/<version>/` as Push writes it (`flywheel.store.layout`): the version in
serving (the latest complete one, or the stable one once a rollout state exists), or the one asked for.
The signature is found by inspecting the SavedModel, never by name: the one whose only input is a string
tensor called `examples` (serialized tf.Examples, what BulkInferrer and TFMA feed) and which has a single
output, the score. `saved_model.pb` is read as a proto through TFX's filesystem layer (gs:// too); the model
itself is loaded later, by RunInference. Reading it needs TensorFlow's proto classes, hence TensorFlow:
`resolve(..., apart=True)` reads it in a short-lived child process, so a launching process that does not
score (`--engine beam`) never holds TensorFlow.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from typing import Optional

from flywheel import storage
from flywheel.store import layout

EXAMPLES_INPUT = "examples"
SERVE_TAG = "serve"


class PredictError(ValueError):
    """Batch inference cannot go on: no such model or version, no examples signature, or rows unaccounted for."""


@dataclasses.dataclass(frozen=True)
class ServedModel:
    """A model version to score with: where it is, its examples signature and that signature's output."""

    name: str
    version: int
    path: str
    signature: str
    output: str


def _served_models(serving_dir: str) -> list[str]:
    return sorted(name for name in storage.listdir(serving_dir) if layout.versions(serving_dir, name))


def examples_signature(path: str) -> tuple[str, str]:
    """(signature name, output name) of the model's examples signature; PredictError naming every signature
    when there is no such signature or more than one."""
    from tensorflow.core.framework import types_pb2  # TensorFlow's protos import TensorFlow: `resolve(apart=True)`

    proto = layout.read_saved_model(path)
    graphs = [g for g in proto.meta_graphs if SERVE_TAG in g.meta_info_def.tags]
    if not graphs:
        raise PredictError(f"predict: {path}: no meta graph tagged {SERVE_TAG!r}; tags found: "
                           f"{[list(g.meta_info_def.tags) for g in proto.meta_graphs]}")
    signatures = graphs[0].signature_def
    found = []
    for name, signature in sorted(signatures.items()):
        inputs = signature.inputs
        if (len(inputs) == 1 and EXAMPLES_INPUT in inputs and inputs[EXAMPLES_INPUT].dtype == types_pb2.DT_STRING
                and len(signature.outputs) == 1):
            found.append((name, next(iter(signature.outputs))))
    if len(found) != 1:
        described = "; ".join(f"{name}({', '.join(sorted(s.inputs))}) -> {', '.join(sorted(s.outputs))}"
                              for name, s in sorted(signatures.items()) if not name.startswith("__"))
        problem = "no signature" if not found else f"{len(found)} signatures ({', '.join(n for n, _ in found)})"
        raise PredictError(f"predict: {path}: expected one signature taking a string tensor {EXAMPLES_INPUT!r} "
                           f"(serialized tf.Examples) with one output, found {problem}; signatures: {described}")
    return found[0]


_APART = ("import json, sys\n"
          "from flywheel.batch import model_version\n"
          "try:\n"
          "    print(json.dumps(model_version.examples_signature(sys.argv[1])))\n"
          "except model_version.PredictError as e:\n"
          "    sys.exit(str(e))\n")


def examples_signature_apart(path: str) -> tuple[str, str]:
    """`examples_signature` read in a child Python process, which ends with it (so this one need not import
    TensorFlow); the child's PredictError is raised here with its message."""
    done = subprocess.run([sys.executable, "-c", _APART, path], capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        raise PredictError(lines[-1] if lines else f"predict: {path}: reading the signatures failed "
                                                   f"(exit {done.returncode})")
    signature, output = json.loads(done.stdout.strip().splitlines()[-1])
    return signature, output


def resolve(serving_dir: str, model_name: str, version: Optional[int] = None, *, apart: bool = False) -> ServedModel:
    """The version to score with: `version`, or the one in serving (`layout.current`: the latest complete one, or
    the rollout's stable version). PredictError names the versions (or
    models) that exist when the one asked for does not. `apart`: the signature is read in a child process,
    so this one does not import TensorFlow."""
    versions = layout.versions(serving_dir, model_name)
    if not versions:
        models = _served_models(serving_dir)
        raise PredictError(f"predict: no model {model_name!r} in serving folder {serving_dir} (expected "
                           f"<serving_dir>/{model_name}/<version>/saved_model.pb); models there: "
                           f"{', '.join(models) if models else 'none'}")
    if version is None:
        latest = layout.current(serving_dir, model_name)
        if latest is None:
            raise PredictError(f"predict: model {model_name!r} in {serving_dir}: no version has a readable "
                               f"{layout.MANIFEST_FILE}; versions: {', '.join(map(str, versions))}")
        version, path = latest.version, latest.path
    elif version not in versions:
        raise PredictError(f"predict: model {model_name!r} has no version {version} in {serving_dir}; versions: "
                           f"{', '.join(map(str, versions))}")
    else:
        path = layout.version_path(serving_dir, model_name, version)
    signature, output = (examples_signature_apart if apart else examples_signature)(path)
    return ServedModel(name=model_name, version=version, path=path, signature=signature, output=output)
