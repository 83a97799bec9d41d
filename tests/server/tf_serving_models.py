"""TF Serving's own REST test models, rebuilt here: `python -m tests.server.tf_serving_models BASE_DIR`.

tensorflow/serving's `servables/tensorflow/testdata/saved_model_half_plus_two.py` (its TF1 path) exports them;
this builds the same graphs, with the same SignatureDefs (names, methods, tensor names, dtypes and shapes),
variables and asset, into TF Serving's layout, `<base>/<model>/<zero-padded version>/saved_model.pb`, with no
push.json (a SavedModel as TF Serving finds it):

- `saved_model_half_plus_two_cpu/00000123` (served as `default` by `tensorflow_model_server_test.py`):
  y = 0.5 x + 2, y2 = 0.5 x + 3, y3 = 0.5 x2 + 3, over `x` and `x2` parsed from serialized tf.Examples
  (`tf_example:0`, unknown shape); signatures `serving_default` (x:0 [-1, 1] -> y:0), `regress_x_to_y`,
  `regress_x_to_y2`, `regress_x2_to_y3`, `classify_x_to_y`.
- `saved_model_half_plus_two_2_versions/00000123` and `00000124` (`http_rest_api_handler_test.cc`): the same,
  plus `classify_x2_to_y3`, as its checked-in metadata (`saved_model_half_plus_two_2_versions_metadata.json`).
- `saved_model_half_plus_three/00000123` (`g3doc/api_rest.md`'s example): y = 0.5 x + 3; its inputs and outputs
  carry no shape at all, and its regression signature is named `tensorflow/serving/regress`.
"""

from __future__ import annotations

import os
import sys
from typing import Any

HALF_PLUS_TWO = "saved_model_half_plus_two_cpu"
TWO_VERSIONS = "saved_model_half_plus_two_2_versions"
HALF_PLUS_THREE = "saved_model_half_plus_three"
VERSION_FOLDERS = {HALF_PLUS_TWO: ["00000123"], TWO_VERSIONS: ["00000123", "00000124"],
                   HALF_PLUS_THREE: ["00000123"]}
ASSET_FILE = "foo.txt"


def _feature_spec(tf: Any) -> dict:
    return {"x": tf.io.FixedLenFeature([1], dtype=tf.float32),
            "x2": tf.io.FixedLenFeature([1], dtype=tf.float32, default_value=[0.0])}


def _signature(tf: Any, inputs: dict, outputs: dict, method: str) -> Any:
    info = tf.compat.v1.saved_model.utils.build_tensor_info
    return tf.compat.v1.saved_model.signature_def_utils.build_signature_def(
        {k: info(v) for k, v in inputs.items()}, {k: info(v) for k, v in outputs.items()}, method)


def _asset(tf: Any, staging: str) -> Any:
    """The model's asset (assets/foo.txt) and the op assigning its name, run when the model loads (main_op)."""
    path = os.path.join(staging, ASSET_FILE)
    with open(path, "w") as f:
        f.write("asset-file-contents")
    tf.compat.v1.add_to_collection(tf.compat.v1.GraphKeys.ASSET_FILEPATHS, tf.constant(path))
    filename = tf.compat.v1.Variable(ASSET_FILE, name="filename_tensor", trainable=False, collections=[])
    return filename.assign(ASSET_FILE)


def _half_plus_two_signatures(tf: Any, with_classify_x2: bool) -> dict:
    sc = tf.compat.v1.saved_model.signature_constants
    a, b, c = (tf.compat.v1.Variable(v, name=n) for n, v in (("a", 0.5), ("b", 2.0), ("c", 3.0)))
    serialized = tf.compat.v1.placeholder(tf.string, name="tf_example")  # unknown rank, as the checked-in models
    parsed = tf.compat.v1.parse_example(serialized, _feature_spec(tf))
    for feature in parsed.values():  # [-1, 1], as the checked-in models' SignatureDefs have it
        feature.set_shape([None, 1])
    x = tf.identity(parsed["x"], name="x")
    y = tf.identity(tf.add(tf.multiply(a, x), b), name="y")
    y2 = tf.identity(tf.add(tf.multiply(a, x), c), name="y2")
    x2 = tf.identity(parsed["x2"], name="x2")
    y3 = tf.identity(tf.add(tf.multiply(a, x2), c), name="y3")
    regress = [sc.REGRESS_INPUTS, sc.REGRESS_OUTPUTS, sc.REGRESS_METHOD_NAME]
    signatures = {
        "regress_x_to_y": _signature(tf, {regress[0]: serialized}, {regress[1]: y}, regress[2]),
        "regress_x_to_y2": _signature(tf, {regress[0]: serialized}, {regress[1]: y2}, regress[2]),
        "regress_x2_to_y3": _signature(tf, {regress[0]: x2}, {regress[1]: y3}, regress[2]),
        "classify_x_to_y": _signature(tf, {sc.CLASSIFY_INPUTS: serialized}, {sc.CLASSIFY_OUTPUT_SCORES: y},
                                      sc.CLASSIFY_METHOD_NAME),
        sc.DEFAULT_SERVING_SIGNATURE_DEF_KEY: _signature(tf, {"x": x}, {"y": y}, sc.PREDICT_METHOD_NAME),
    }
    if with_classify_x2:
        signatures["classify_x2_to_y3"] = _signature(tf, {sc.CLASSIFY_INPUTS: x2}, {sc.CLASSIFY_OUTPUT_SCORES: y3},
                                                     sc.CLASSIFY_METHOD_NAME)
    return signatures


def _half_plus_three_signatures(tf: Any) -> dict:
    sc = tf.compat.v1.saved_model.signature_constants
    a, b = tf.compat.v1.Variable(0.5, name="a"), tf.compat.v1.Variable(3.0, name="b")
    tf.compat.v1.Variable(4.0, name="c")
    serialized = tf.compat.v1.placeholder(tf.string, name="tf_example")
    x = tf.identity(tf.compat.v1.parse_example(serialized, _feature_spec(tf))["x"], name="x")
    y = tf.identity(tf.add(tf.multiply(a, x), b), name="y")
    signatures = {
        sc.DEFAULT_SERVING_SIGNATURE_DEF_KEY: _signature(tf, {"x": x}, {"y": y}, sc.PREDICT_METHOD_NAME),
        sc.REGRESS_METHOD_NAME: _signature(tf, {sc.REGRESS_INPUTS: serialized},
                                           {sc.REGRESS_OUTPUTS: tf.identity(y)}, sc.REGRESS_METHOD_NAME),
    }
    for signature in signatures.values():  # exported before SignatureDefs carried shapes: none at all
        for info in [*signature.inputs.values(), *signature.outputs.values()]:
            info.ClearField("tensor_shape")
    return signatures


def _export(tf: Any, model: str, path: str) -> None:
    builder = tf.compat.v1.saved_model.Builder(path)
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        if model == HALF_PLUS_THREE:
            signatures = _half_plus_three_signatures(tf)
        else:
            signatures = _half_plus_two_signatures(tf, with_classify_x2=model == TWO_VERSIONS)
        assign_filename = _asset(tf, os.path.dirname(path))
        session.run(tf.compat.v1.global_variables_initializer())
        builder.add_meta_graph_and_variables(
            session, [tf.compat.v1.saved_model.tag_constants.SERVING], signature_def_map=signatures,
            assets_collection=tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.ASSET_FILEPATHS),
            main_op=tf.group(assign_filename))
    builder.save()


def build(base_dir: str) -> dict[str, str]:
    """Writes the three models under base_dir; returns {model: its folder (holding the version folders)}."""
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    folders = {}
    for model, versions in VERSION_FOLDERS.items():
        folders[model] = os.path.join(base_dir, model)
        os.makedirs(folders[model])
        for version in versions:
            staging = os.path.join(base_dir, f".{model}-{version}")
            os.makedirs(staging)
            _export(tf, model, os.path.join(staging, "export"))
            os.rename(os.path.join(staging, "export"), os.path.join(folders[model], version))
            os.remove(os.path.join(staging, ASSET_FILE))
            os.rmdir(staging)
    return folders


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if len(sys.argv) != 2:
        sys.exit(f"usage: python -m tests.server.tf_serving_models BASE_DIR (got {sys.argv[1:]})")
    for name, folder in build(sys.argv[1]).items():
        print(f"{name}: {folder}")
