"""A SavedModel's signatures as the server reads and runs them: `TensorSpec`, `Signature`, and `read` (every
SignatureDef of the `serve` meta graph, each made callable in a loaded version's session)."""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

from flywheel.store import layout

SERVE_TAG = "serve"


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: Any  # tf.DType
    shape: Optional[tuple]  # None for an unknown dimension; the whole shape None when its rank is unknown
    numpy_dtype: Any = dataclasses.field(default=None, compare=False)  # dtype.as_numpy_dtype, looked up once


@dataclasses.dataclass(frozen=True)
class Signature:
    name: str
    method_name: str
    inputs: dict[str, TensorSpec]
    outputs: dict[str, TensorSpec]
    # The version session's callable: one array per input (in `inputs` order) -> one per output (`outputs` order).
    call: Any = dataclasses.field(repr=False, compare=False)


def serve_meta_graph(path: str) -> Optional[Any]:
    """The MetaGraphDef tagged `serve` of a SavedModel, read from saved_model.pb (or .pbtxt) without loading the
    model; None when it has none."""
    proto = layout.read_saved_model(path)
    return next((m for m in proto.meta_graphs if SERVE_TAG in m.meta_info_def.tags), None)


def signature_defs(path: str) -> dict[str, Any]:
    """{name: SignatureDef} of a SavedModel's `serve` meta graph, as TF Serving reports them (the internal
    `__saved_model_init_op` left out)."""
    meta_graph = serve_meta_graph(path)
    if meta_graph is None:
        raise ValueError(f"serve: {layout.saved_model_file(path)} has no meta graph tagged '{SERVE_TAG}'")
    return {name: sig for name, sig in meta_graph.signature_def.items() if not name.startswith("__")}


def read(session: Any, defs: dict[str, Any]) -> dict[str, Signature]:
    """The callable `Signature` of each SignatureDef, in a session that has loaded the SavedModel."""
    return {name: Signature(name, sig.method_name, {k: _spec(k, v) for k, v in sorted(sig.inputs.items())},
                            {k: _spec(k, v) for k, v in sorted(sig.outputs.items())}, _callable(session, sig))
            for name, sig in defs.items()}


def _spec(name: str, info: Any) -> TensorSpec:
    # TensorFlow: seconds to import; only a version being loaded needs it
    import tensorflow as tf

    dims = None
    if info.HasField("tensor_shape") and not info.tensor_shape.unknown_rank:
        dims = tuple(None if d.size == -1 else d.size for d in info.tensor_shape.dim)
    dtype = tf.as_dtype(info.dtype)
    return TensorSpec(name, dtype, dims, dtype.as_numpy_dtype)


def _callable(session: Any, signature_def: Any) -> Any:
    """The C++ `Session::MakeCallable` of one SignatureDef: feeds its input tensors (in name order), fetches
    its outputs (in name order), and runs the graph on the calling thread (RunOptions.inter_op_thread_pool
    -1): for a graph this small, a hop to TensorFlow's inter-op threads costs more than the ops."""
    # TensorFlow: seconds to import; only a version being loaded needs it
    from tensorflow.core.protobuf import config_pb2

    options = config_pb2.CallableOptions(feed=[signature_def.inputs[k].name for k in sorted(signature_def.inputs)],
                                         fetch=[signature_def.outputs[k].name for k in sorted(signature_def.outputs)])
    options.run_options.inter_op_thread_pool = -1
    return session._make_callable_from_options(options)
