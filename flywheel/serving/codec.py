"""TF Serving's JSON formats (tensorflow_serving/util/json_tensor.cc), for signatures with [None] inputs.

Requests: `{"signature_name": s, "instances": [...]}` (row format: one object per row with every input
by name, or plain values when the signature has one input) or `{"inputs": {name: [...]}}` (columnar).
JSON numbers go to float inputs, JSON integers to integer inputs, strings (or `{"b64": ...}`) to
string inputs; NaN and Infinity are accepted as TF Serving accepts them. Every error is TF Serving's
InvalidArgument (HTTP 400) with its wording, and names the input: a missing or unknown feature is
named on its own (TF Serving lists only the expected keys).

`parse_rows` is the fast path of the common request: row format, every row an object holding exactly the
signature's inputs with values of their JSON types. It decodes the body straight into typed rows (msgspec,
with a row type made once per signature) and returns None for anything else, which `parse_json` and
`parse_predict` then parse, accept or refuse with TF Serving's errors, as before.
"""

from __future__ import annotations

import base64
import binascii
import collections
import functools
import json
import operator
import typing
import weakref
from typing import Any, Optional, Sequence

import msgspec
import numpy as np
import orjson

from flywheel.serving.models import InvalidArgument, Signature, TensorSpec

ROW, COLUMNAR = "row", "columnar"


def _debug(value: Any) -> str:
    text = json.dumps(value, allow_nan=True)
    return text if len(text) <= 100 else text[:97] + "..."


def _json_type(value: Any) -> str:
    if value is None:
        return "Null"
    if isinstance(value, bool):
        return "Bool"
    if isinstance(value, (int, float)):
        return "Number"
    if isinstance(value, str):
        return "String"
    if isinstance(value, list):
        return "Array"
    return "Object"


def _is_b64(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and "b64" in value


def _type_name(dtype: Any) -> str:
    """TensorFlow's DataTypeString, as TF Serving prints it: DT_FLOAT -> float, DT_INT64 -> int64."""
    from tensorflow.core.framework import types_pb2

    return types_pb2.DataType.Name(dtype.as_datatype_enum).removeprefix("DT_").lower()


def _type_error(value: Any, dtype: Any) -> InvalidArgument:
    return InvalidArgument(f"JSON Value: {_debug(value)} Type: {_json_type(value)} is not of expected type: "
                           f"{_type_name(dtype)}")


def _scalar(value: Any, dtype: Any) -> Any:
    """One JSON value as a value of the input's dtype (TF Serving's rules), or InvalidArgument."""
    if dtype.is_floating:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _type_error(value, dtype)
        return float(value)
    if dtype.is_integer:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _type_error(value, dtype)
        if not dtype.min <= value <= dtype.max:
            raise InvalidArgument(f"JSON Value: {value} out of range for {_type_name(dtype)}")
        return value
    if dtype.is_bool:
        if not isinstance(value, bool):
            raise _type_error(value, dtype)
        return value
    if dtype.name == "string":
        if isinstance(value, str):
            return value.encode("utf-8")
        if _is_b64(value) and isinstance(value["b64"], str):
            try:
                return base64.b64decode(value["b64"], validate=True)
            except (binascii.Error, ValueError):
                raise InvalidArgument("Unable to base64 decode") from None
        raise _type_error(value, dtype)
    raise InvalidArgument(f"Conversion of JSON Value: {_debug(value)} to type: {_type_name(dtype)}")


_FLOAT_TYPES, _INT_TYPES = frozenset((float, int)), frozenset((int,))


@functools.lru_cache(maxsize=None)
def _int_limits(numpy_dtype: Any) -> tuple[int, int]:
    limits = np.iinfo(numpy_dtype)
    return int(limits.min), int(limits.max)


def _int_column(values: Sequence, spec: TensorSpec) -> Any:
    """Python ints as the input's integer column: int64, then the input's range checked; None when a value is
    beyond it (the caller then names it value by value)."""
    try:
        column = np.array(values, dtype=np.int64)
    except OverflowError:
        return None
    if spec.numpy_dtype == np.int64:
        return column
    low, high = _int_limits(spec.numpy_dtype)
    return column.astype(spec.numpy_dtype) if low <= column.min() and column.max() <= high else None


def _fast_column(values: Sequence, spec: TensorSpec) -> Any:
    """The column when every value already has the JSON type the input takes (the common case, checked by
    the values' types in one pass; integer ranges by numpy), else None: the caller then converts value by
    value, naming any error."""
    types = set(map(type, values))
    dtype = spec.dtype
    if dtype.is_floating and types <= _FLOAT_TYPES:
        return np.array(values, dtype=spec.numpy_dtype)
    if dtype.is_integer and types <= _INT_TYPES:
        return _int_column(values, spec)
    if dtype.name == "string" and types == {str}:
        return np.array(list(map(str.encode, values)), dtype=object)
    return None


def _column(values: Sequence, name: str, signature: Signature, where: str) -> np.ndarray:
    spec = signature.inputs[name]
    column = _fast_column(values, spec)
    if column is not None:
        return column
    out = []
    for i, value in enumerate(values):
        if isinstance(value, list):
            raise InvalidArgument(f"Failed to process element: {i} key: {name} of {where}. Error: JSON Value: "
                                  f"{_debug(value)} is a list, but input {name} takes one value per row "
                                  f"(shape {list(spec.shape)})")
        try:
            out.append(_scalar(value, spec.dtype))
        except InvalidArgument as e:
            raise InvalidArgument(f"Failed to process element: {i} key: {name} of {where}. Error: {e}") from None
    return np.array(out, dtype=object if spec.dtype.name == "string" else spec.dtype.as_numpy_dtype)


def parse_json(body: bytes) -> Any:
    """The request document. orjson parses standard JSON; what it refuses goes to the standard library's
    parser, which also takes NaN and Infinity as TF Serving does, and names the error."""
    if not body.strip():
        raise InvalidArgument("JSON Parse error: The document is empty")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidArgument(f"JSON Parse error: {e}") from None


def signature_name(doc: Any) -> str:
    if not isinstance(doc, dict):
        raise InvalidArgument(f"JSON Value: {_debug(doc)} Type: {_json_type(doc)} is not of expected type: object")
    name = doc.get("signature_name", "")
    if not isinstance(name, str):
        raise InvalidArgument(f"JSON Value: {_debug(doc)} not formatted correctly. 'signature_name' key must be "
                              "a string value.")
    return name


def _check_objects(instances: list, names: list[str]) -> None:
    """Raises InvalidArgument for the first row that is not an object with exactly the inputs' keys."""
    expected = set(names)
    for i, item in enumerate(instances):
        if not isinstance(item, dict) or _is_b64(item):
            raise InvalidArgument(f"Expecting object but got list at item {i} of input list")
        if set(item) != expected:
            missing, unknown = sorted(expected - set(item)), sorted(set(item) - expected)
            detail = "; ".join(part for part in (f"missing: {', '.join(missing)}" if missing else "",
                                                 f"unknown: {', '.join(unknown)}" if unknown else "") if part)
            raise InvalidArgument(f"Failed to process element: {i} of 'instances' list. JSON object: {_debug(item)} "
                                  f"keys must be equal to: {','.join(sorted(names))} ({detail})")


def _rows_from_instances(instances: list, signature: Signature) -> tuple[dict[str, np.ndarray], list[dict]]:
    names = list(signature.inputs)
    objects = isinstance(instances[0], dict) and not _is_b64(instances[0])
    if not objects:
        if len(names) > 1:
            raise InvalidArgument("instances is a plain list, but expecting list of objects as multiple input "
                                  "tensors required as per tensorinfo_map")
        for i, item in enumerate(instances):
            if isinstance(item, dict) and not _is_b64(item):
                raise InvalidArgument(f"Expecting value/list but got object at item {i} of input list")
        column = _column(instances, names[0], signature, "'instances' list")
        return {names[0]: column}, [{names[0]: v} for v in instances]
    values = _transpose(instances, names)
    if values is None:
        _check_objects(instances, names)
    columns = {name: _column(column, name, signature, "'instances' list")
               for name, column in zip(names, values, strict=True)}
    return columns, instances


def _transpose(instances: list, names: list[str]) -> Any:
    """The rows' values input by input (one sequence per name, in `names` order) when every row is an object
    with exactly those keys, else None. One pass in C: a row with as many keys as there are inputs, each of
    which it has, has no other key."""
    if set(map(type, instances)) != {dict} or set(map(len, instances)) != {len(names)}:
        return None
    try:
        if len(names) == 1:
            return [list(map(operator.itemgetter(names[0]), instances))]
        return list(zip(*map(operator.itemgetter(*names), instances), strict=True))
    except KeyError:
        return None


class Rows(list):
    """Rows decoded by `parse_rows`: typed objects whose fields are the `names` inputs, in order (`row_dicts`
    turns them into {input: value})."""

    __slots__ = ("names",)

    def __init__(self, rows: list, names: Sequence[str]):
        super().__init__(rows)
        self.names = names


_PLAIN_TYPES = {"f": float, "i": int, "u": int, "b": bool}
# {id(signature): (a weak reference to it, (its body decoder or None when it has no fast path, names, getter))}
_DECODERS: dict[int, tuple[weakref.ref, tuple]] = {}


def _make_decoder(signature: Signature) -> Any:
    """A decoder of `{"instances": [row, ...], "signature_name": s}` bodies whose rows hold exactly the signature's
    inputs, each a JSON value of the input's type (as `_fast_column` takes them); None when an input is not a
    [None]-shaped number, bool or string."""
    if not signature.inputs:
        return None
    fields = []
    for spec in signature.inputs.values():
        kind = "s" if spec.dtype.name == "string" else np.dtype(spec.numpy_dtype).kind
        if len(spec.shape) != 1 or (kind not in _PLAIN_TYPES and kind != "s"):
            return None
        fields.append((f"f{len(fields)}", str if kind == "s" else _PLAIN_TYPES[kind]))
    # Fields f0, f1... named as the inputs in JSON (an input's name need not be a Python identifier).
    row = msgspec.defstruct("Row", fields, forbid_unknown_fields=True, gc=False,
                            rename=dict(zip((f for f, _ in fields), signature.inputs, strict=True)))
    body = msgspec.defstruct("Body", [("instances", list[row]), ("signature_name", str, ""),
                                      ("inputs", typing.Union[msgspec.Raw, msgspec.UnsetType], msgspec.UNSET)],
                             gc=False)
    return msgspec.json.Decoder(body)


def _decoder(signature: Signature) -> tuple[Any, tuple[str, ...], Any]:
    """(the signature's body decoder or None, its input names, a getter of a row's values in that order), made once
    per signature: the rows of every request share the names."""
    key = id(signature)
    entry = _DECODERS.get(key)
    if entry is None or entry[0]() is not signature:
        names = tuple(signature.inputs)
        entry = _DECODERS[key] = (weakref.ref(signature, lambda _, key=key: _DECODERS.pop(key, None)),
                                  (_make_decoder(signature), names,
                                   operator.attrgetter(*[f"f{i}" for i in range(len(names))]) if names else None))
    return entry[1]


def parse_rows(body: bytes, signature: Signature) -> Optional[tuple[dict[str, np.ndarray], Rows]]:
    """({input: column}, rows) of a row-format body for `signature` (its `signature_name` empty or naming it),
    when every row has exactly the signature's inputs with values of their JSON types; else None (then
    `parse_json` and `parse_predict` take the body, and name what is wrong with it)."""
    decoder, names, getter = _decoder(signature)
    if decoder is None:
        return None
    try:
        doc = decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    if doc.inputs is not msgspec.UNSET or not doc.instances or doc.signature_name not in ("", signature.name):
        return None
    values = zip(*map(getter, doc.instances), strict=True) if len(names) > 1 else [list(map(getter, doc.instances))]
    columns = {}
    for name, column in zip(names, values, strict=True):
        spec = signature.inputs[name]
        if spec.dtype.is_integer:
            array = _int_column(column, spec)
            if array is None:  # out of range: named value by value on the general path
                return None
        elif spec.dtype.name == "string":
            array = np.array(list(map(str.encode, column)), dtype=object)
        else:
            array = np.array(column, dtype=spec.numpy_dtype)
        columns[name] = array
    return columns, Rows(doc.instances, names)


def row_dicts(rows: list) -> list[dict]:
    """The rows as {input: value} dicts (what the request log and a failed request's log take)."""
    if not isinstance(rows, Rows):
        return rows
    names = rows.names
    return [dict(zip(names, msgspec.structs.astuple(row), strict=True)) for row in rows]


def _rows_from_inputs(inputs: Any, signature: Signature) -> tuple[dict[str, np.ndarray], list[dict]]:
    names = list(signature.inputs)
    if not isinstance(inputs, dict) or _is_b64(inputs):
        if len(names) > 1:
            raise InvalidArgument("inputs is a plain value/list, but expecting an object as multiple input tensors "
                                  "required as per tensorinfo_map")
        inputs = {names[0]: inputs}
    for name in names:
        if name not in inputs:
            raise InvalidArgument(f"Missing named input: {name} in 'inputs' object.")
    unknown = sorted(set(inputs) - set(names))
    if unknown:
        raise InvalidArgument(f"JSON object: does not have named input: {unknown[0]}")
    columns = {}
    for name in names:
        values = inputs[name]
        if not isinstance(values, list):
            raise InvalidArgument(f"Input {name} of 'inputs' object: expected a list of one value per row "
                                  f"(shape {list(signature.inputs[name].shape)}), got {_debug(values)}")
        columns[name] = _column(values, name, signature, "'inputs' object")
    sizes = {name: len(col) for name, col in columns.items()}
    usual = collections.Counter(sizes.values()).most_common(1)[0][0]
    odd = [name for name in names if sizes[name] != usual]
    if odd:
        raise InvalidArgument(f"Expecting tensor size: {usual} but got: {sizes[odd[0]]} (input {odd[0]}; the other "
                              f"inputs have {usual} rows)")
    if not usual:
        raise InvalidArgument("No values in 'inputs' object")
    rows = [{name: inputs[name][i] for name in names} for i in range(sizes[names[0]])]
    return columns, rows


def parse_predict(doc: dict, signature: Signature) -> tuple[str, dict[str, np.ndarray], list[dict]]:
    """(format, {input: column}, rows as sent) of a predict request body."""
    if "instances" in doc and "inputs" in doc:
        raise InvalidArgument(f"JSON Value: {_debug(doc)} Not formatted correctly expecting only one of 'inputs' "
                              "or 'instances' keys to exist ")
    if "instances" in doc:
        instances = doc["instances"]
        if not isinstance(instances, list):
            raise InvalidArgument(f"JSON Value: {_debug(doc)} Expecting 'instances' to be an list/array")
        if not instances:
            raise InvalidArgument(f"JSON Value: {_debug(doc)} No values in 'instances' array")
        return (ROW, *_rows_from_instances(instances, signature))
    if "inputs" in doc:
        return (COLUMNAR, *_rows_from_inputs(doc["inputs"], signature))
    raise InvalidArgument("Missing 'inputs' or 'instances' key")


def _json_value(value: Any) -> Any:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return {"b64": base64.b64encode(value).decode("ascii")}
    return value


def _tolist(array: np.ndarray, name: str) -> list:
    if array.dtype == object:
        flat = [_json_value(v) if not name.endswith("_bytes") else {"b64": base64.b64encode(v).decode("ascii")}
                for v in array.reshape(-1)]
        return np.array(flat, dtype=object).reshape(array.shape).tolist()
    return array.tolist()


def row_predictions(outputs: dict[str, np.ndarray]) -> list:
    """Per-row predictions: the output's rows when there is one output, else one object per row."""
    if len(outputs) == 1:
        name, array = next(iter(outputs.items()))
        return _tolist(array, name)
    lists = {name: _tolist(array, name) for name, array in outputs.items()}
    rows = len(next(iter(lists.values())))
    return [{name: values[i] for name, values in lists.items()} for i in range(rows)]


def format_response(fmt: str, outputs: dict[str, np.ndarray]) -> dict:
    if fmt == ROW:
        return {"predictions": row_predictions(outputs)}
    if len(outputs) == 1:
        name, array = next(iter(outputs.items()))
        return {"outputs": _tolist(array, name)}
    return {"outputs": {name: _tolist(array, name) for name, array in outputs.items()}}


def _finite(outputs: dict[str, np.ndarray]) -> bool:
    for array in outputs.values():
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            return False
    return True


_NUMPY_JSON = {np.dtype(np.float32): np.float64, np.dtype(np.float64): np.float64, np.dtype(np.int32): np.int64,
               np.dtype(np.int64): np.int64}


def encode_predict(fmt: str, outputs: dict[str, np.ndarray]) -> bytes:
    """A predict answer's JSON, as `encode_response(format_response(fmt, outputs), outputs)` writes it. A single finite
    float or integer output is written by orjson straight from its array, as float64 or int64 (the values `tolist`
    gives, written alike), without a Python list per row."""
    if len(outputs) == 1:
        array = next(iter(outputs.values()))
        wide = _NUMPY_JSON.get(array.dtype)
        if wide is not None and _finite(outputs):
            key = "predictions" if fmt == ROW else "outputs"
            return orjson.dumps({key: np.ascontiguousarray(array, dtype=wide)}, option=orjson.OPT_SERIALIZE_NUMPY)
    return encode_response(format_response(fmt, outputs), outputs)


def encode_response(payload: Any, outputs: dict[str, np.ndarray]) -> bytes:
    """A predict answer's JSON: orjson's, unless an output holds NaN or Infinity, which orjson would turn
    into null; TF Serving writes them as NaN and Infinity, as `dumps` does."""
    return orjson.dumps(payload) if _finite(outputs) else dumps(payload)


def dumps(payload: Any) -> bytes:
    return json.dumps(payload, allow_nan=True, separators=(",", ":")).encode("utf-8")
