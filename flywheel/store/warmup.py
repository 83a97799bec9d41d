"""TF Serving's warmup file: `assets.extra/tf_serving_warmup_requests`, a TFRecord of PredictionLog protos.

Push writes it from real eval examples (one PredictRequest per record for the raw-features signature);
the server replays it before a version takes traffic, as TF Serving does (saved_model_warmup_util.cc):
at most 1000 records, only `predict_log` entries here (TF Serving also replays classify/regress logs;
flywheel's models export predict signatures only, so any other log type fails the version's load).
"""

from __future__ import annotations

import os
import tempfile
from typing import Any, Iterator

ASSETS_EXTRA = "assets.extra"
WARMUP_FILE = "tf_serving_warmup_requests"
WARMUP_PATH = f"{ASSETS_EXTRA}/{WARMUP_FILE}"
MAX_RECORDS = 1000
DEFAULT_SIGNATURE = "serving_default"


class WarmupError(ValueError):
    """A warmup file that cannot be read or replayed; the message names the file and the record."""


def _example_value(example: Any, name: str) -> Any:
    """The single value of feature `name` in a tf.train.Example, or None when it is absent or not one value."""
    feature = example.features.feature.get(name)
    if feature is None:
        return None
    kind = feature.WhichOneof("kind")
    values = list(getattr(feature, kind).value) if kind else []
    return values[0] if len(values) == 1 else None


def predict_logs(model_dir: str, serialized_examples: list[bytes], model_name: str,
                 signature: str = DEFAULT_SIGNATURE, rows_per_request: int = 1) -> list[Any]:
    """PredictionLogs for `signature` of the SavedModel at model_dir, one request per `rows_per_request`
    examples, with each input taken by name from the examples (examples missing an input are skipped)."""
    import numpy as np  # numpy and TensorFlow: only Push, which writes the records, loads the model
    import tensorflow as tf  # (seconds to import and 0.4 GB; readers of the serving folder never need it)
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2  # TF Serving's protos import TensorFlow

    loaded = tf.saved_model.load(model_dir)
    if signature not in loaded.signatures:
        raise WarmupError(f"warmup: model {model_dir} has no {signature!r} signature; "
                          f"has {list(loaded.signatures.keys())}")
    specs = loaded.signatures[signature].structured_input_signature[1]
    rows = []
    for raw in serialized_examples:
        example = tf.train.Example.FromString(raw)
        row = {name: _example_value(example, name) for name, spec in specs.items()}
        if all(v is not None for v in row.values()):
            rows.append(row)
    logs = []
    for start in range(0, len(rows), rows_per_request):
        chunk = rows[start:start + rows_per_request]
        request = predict_pb2.PredictRequest()
        request.model_spec.name = model_name
        request.model_spec.signature_name = signature
        for name, spec in specs.items():
            column = np.array([row[name] for row in chunk], dtype=spec.dtype.as_numpy_dtype)
            request.inputs[name].CopyFrom(tf.make_tensor_proto(column, dtype=spec.dtype))
        logs.append(prediction_log_pb2.PredictionLog(
            predict_log=prediction_log_pb2.PredictLog(request=request)))
    return logs[:MAX_RECORDS]


def to_tfrecord(logs: list[Any]) -> bytes:
    """The logs serialized as one TFRecord file's bytes (written by TensorFlow's own record writer)."""
    import tensorflow as tf  # TensorFlow: see predict_logs

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, WARMUP_FILE)
        with tf.io.TFRecordWriter(path) as writer:
            for log in logs:
                writer.write(log.SerializeToString())
        with open(path, "rb") as f:
            return f.read()


def read(version_path: str) -> Iterator[Any]:
    """The PredictionLogs of a version's warmup file (none when it has no such file)."""
    import tensorflow as tf  # TensorFlow: see predict_logs
    from tensorflow_serving.apis import prediction_log_pb2  # TF Serving's protos import TensorFlow

    path = os.path.join(version_path, ASSETS_EXTRA, WARMUP_FILE)
    if not tf.io.gfile.exists(path):
        return
    try:
        for count, record in enumerate(tf.data.TFRecordDataset(path).as_numpy_iterator(), start=1):
            if count > MAX_RECORDS:
                raise WarmupError(f"warmup: number of warmup records exceeds the maximum ({MAX_RECORDS}) at {path}")
            try:
                yield prediction_log_pb2.PredictionLog.FromString(record)
            except Exception as e:  # protobuf's DecodeError, named with the file and record
                raise WarmupError(f"warmup: failed to parse warmup record {count} from {path}: {e}") from e
    except tf.errors.OpError as e:
        raise WarmupError(f"warmup: {path} is not a TFRecord file of PredictionLogs: {e.message}") from e


def request_inputs(log: Any, path: str) -> tuple[str, dict[str, Any]]:
    """(signature name, {input: numpy array}) of a predict_log record; WarmupError for other log types."""
    import tensorflow as tf  # TensorFlow: see read

    kind = log.WhichOneof("log_type")
    if kind != "predict_log":
        raise WarmupError(f"warmup: unsupported log_type for warmup: {kind} in {path}")
    request = log.predict_log.request
    inputs = {name: tf.make_ndarray(proto) for name, proto in request.inputs.items()}
    return request.model_spec.signature_name or DEFAULT_SIGNATURE, inputs
