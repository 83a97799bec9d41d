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
import functools
import json
import math
import operator
import re
import typing
import weakref
from typing import Any, Optional, Sequence

import msgspec
import numpy as np
import orjson

from flywheel.server.errors import InvalidArgument
from flywheel.server.signatures import Signature, TensorSpec

ROW, COLUMNAR = "row", "columnar"


def _debug(value: Any) -> str:
    text = json.dumps(value, allow_nan=True)
    return text if len(text) <= 100 else text[:97] + "..."


def _json_type(value: Any) -> str:
    if value is None:
        return "Null"
    if isinstance(value, bool):
        return "True" if value else "False"
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
    from tensorflow.core.framework import types_pb2  # TensorFlow: loaded by the model already; seconds to import

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
        if not dtype.min <= value <= dtype.max:  # rapidjson's IsInt/IsInt64/IsUint: a type error in TF Serving
            raise _type_error(value, dtype)
        return value
    if dtype.is_bool:
        if not isinstance(value, bool):
            raise _type_error(value, dtype)
        return value
    if dtype.name == "string":
        if isinstance(value, str):
            return value.encode("utf-8")
        if isinstance(value, dict):
            if not (_is_b64(value) and isinstance(value["b64"], str)):
                raise InvalidArgument(f"JSON Value: {_debug(value)} not formatted correctly for base64 data")
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


MAX_RANK = 32  # numpy's limit on dimensions; TF Serving's own would be TensorFlow's (254)


def _shape_text(shape: Sequence[int]) -> str:
    """A shape as TF Serving prints it: [2,1]."""
    return "[" + ",".join(map(str, shape)) + "]"


def _dense_shape(value: Any) -> list[int]:
    """The shape a JSON value stands for, read along its first elements (json_tensor.cc's GetDenseTensorShape)."""
    shape: list[int] = []
    while isinstance(value, list):
        shape.append(len(value))
        if len(shape) > MAX_RANK:
            raise InvalidArgument(f"JSON Value: {_debug(value)} nests lists more than {MAX_RANK} deep: a tensor has at "
                                  f"most {MAX_RANK} dimensions here")
        if not value:
            break
        value = value[0]
    return shape


def _fill(value: Any, level: int, shape: list[int], dtype: Any, out: list) -> None:
    """Appends the values of a dense JSON tensor to `out`, checking every list against `shape` (FillTensorProto)."""
    if not isinstance(value, list):
        if level != len(shape):
            raise InvalidArgument(f"JSON Value: {_debug(value)} found at incorrect level: {level + 1} in the JSON DOM. "
                                  f"Expected at level: {len(shape)}")
        out.append(_scalar(value, dtype))
        return
    if level >= len(shape):
        raise InvalidArgument(f"Encountered list at unexpected level: {level} expected < {len(shape)}")
    if len(value) != shape[level]:
        raise InvalidArgument(f"Encountered list at unexpected size: {len(value)} at level: {level} expected size: "
                              f"{shape[level]}")
    for item in value:
        _fill(item, level + 1, shape, dtype, out)


def _tensor(value: Any, spec: TensorSpec) -> np.ndarray:
    """A JSON value (a scalar, or lists nested to any depth) as an array of the input's dtype, by TF Serving's rules."""
    shape = _dense_shape(value)
    out: list = []
    _fill(value, 0, shape, spec.dtype, out)
    return np.array(out, dtype=object if spec.dtype.name == "string" else spec.numpy_dtype).reshape(shape)


def _check_rank(value: Any, tensor: np.ndarray, name: str, spec: TensorSpec) -> None:
    """An instance with more dimensions than the input's rank leaves room for (one per row for a [-1] input)."""
    if spec.shape is None or tensor.ndim < len(spec.shape):
        return
    wanted = [-1 if d is None else d for d in spec.shape]
    if len(spec.shape) == 1:
        raise InvalidArgument(f"JSON Value: {_debug(value)} is a list, but input {name} takes one value per row "
                              f"(shape {wanted})")
    raise InvalidArgument(f"JSON Value: {_debug(value)} has {tensor.ndim} dimension(s), but input {name} takes "
                          f"{len(spec.shape) - 1} per row (shape {wanted})")


def _column(values: Sequence, name: str, signature: Signature, where: str, keyed: bool = True) -> np.ndarray:
    """The instances' values of one input batched into one array (each instance a scalar or a nested list, all of one
    shape); errors name the element (and the key, for rows that are objects) as TF Serving does."""
    spec = signature.inputs[name]
    column = _fast_column(values, spec)
    if column is not None:
        return column
    tensors: list[np.ndarray] = []
    for i, value in enumerate(values):
        try:
            tensor = _tensor(value, spec)
            if tensors and tensor.size != tensors[0].size:
                raise InvalidArgument(f"Expecting tensor size: {tensors[0].size} but got: {tensor.size}")
            if tensors and tensor.shape != tensors[0].shape:
                raise InvalidArgument(f"Expecting shape {_shape_text(tensors[0].shape)} but got: "
                                      f"{_shape_text(tensor.shape)}")
            _check_rank(value, tensor, name, spec)
        except InvalidArgument as e:
            key = f" key: {name}" if keyed else ""
            raise InvalidArgument(f"Failed to process element: {i}{key} of {where}. Error: {e.message}") from None
        tensors.append(tensor)
    return np.stack(tensors)


def parse_json(body: bytes) -> Any:
    """The request document. orjson parses standard JSON; what it refuses goes to the standard library's
    parser, which also takes NaN and Infinity as TF Serving does, and names the error."""
    if not body.strip():
        raise InvalidArgument("JSON Parse error: The document is empty")
    try:
        return _shallow(orjson.loads(body), body)
    except orjson.JSONDecodeError:
        pass
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidArgument(f"JSON Parse error: Invalid encoding in string. at offset: {e.start}") from None
    try:
        doc = json.loads(text, parse_float=_finite_float, parse_int=_finite_int)
    except RecursionError:
        raise _too_deep() from None
    except json.JSONDecodeError as e:
        raise _decode_error(e, text) from None
    except _NumberTooBig as e:
        raise _parse_error("Number too big to be stored in double.", text, text.find(e.literal)) from None
    _refuse_lone_surrogates(doc, text)
    return _shallow(doc, body)


# Arrays and objects in arrays and objects: TensorFlow's tensors have at most 254 dimensions, and the code that
# reads a document (naming a bad value, logging it) recurses once per level, which Python bounds.
MAX_JSON_DEPTH = 128
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def _parse_error(what: str, text: str, index: int) -> InvalidArgument:
    """TF Serving's parse error: rapidjson's message and the byte offset of what it refused (at `index` in text)."""
    offset = len(text[:max(index, 0)].encode("utf-8"))
    return InvalidArgument(f"JSON Parse error: {what} at offset: {offset}")


class _NumberTooBig(ValueError):
    def __init__(self, literal: str):
        super().__init__(literal)
        self.literal = literal


def _finite_float(literal: str) -> float:
    """A JSON number as a float; one beyond float64 (`1e400`) is refused as TF Serving's parser refuses it (only the
    literals NaN and Infinity stand for those values)."""
    value = float(literal)
    if math.isinf(value):
        raise _NumberTooBig(literal)
    return value


def _finite_int(literal: str) -> int:
    """A JSON integer; one beyond float64 (more than 308 digits) is refused as TF Serving's parser refuses it (it
    reads an integer beyond 64 bits as a double)."""
    if len(literal) > 310:
        raise _NumberTooBig(literal)
    value = int(literal)
    if len(literal) > 300:
        try:
            float(value)
        except OverflowError:
            raise _NumberTooBig(literal) from None
    return value


def _shallow(doc: Any, body: bytes) -> Any:
    """The document, when its arrays and objects nest at most MAX_JSON_DEPTH deep (walked only when the body has
    that many brackets); else InvalidArgument."""
    if body.count(b"[") + body.count(b"{") <= MAX_JSON_DEPTH:
        return doc
    stack = [(doc, 1)] if isinstance(doc, (list, dict)) else []
    while stack:
        value, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise _too_deep()
        items = value.values() if isinstance(value, dict) else value
        stack.extend((item, depth + 1) for item in items if isinstance(item, (list, dict)))
    return doc


def _too_deep() -> InvalidArgument:
    return InvalidArgument(f"JSON Parse error: arrays and objects nest deeper than {MAX_JSON_DEPTH} levels")


def _refuse_lone_surrogates(doc: Any, text: str) -> None:
    """A `\\ud800` escape without its pair decodes to a string no UTF-8 encoder takes: refused as TF Serving's
    parser refuses it. Only a document with a surrogate escape is checked (re-encoded whole, in C)."""
    found = _SURROGATE_ESCAPE.search(text)
    if found is None:
        return
    try:
        json.dumps(doc, ensure_ascii=False, allow_nan=True).encode("utf-8")
    except UnicodeEncodeError:
        raise _parse_error("The surrogate pair in string is invalid.", text, found.start()) from None
    except RecursionError:
        raise _too_deep() from None


# The standard library's messages, in the words of TF Serving's parser (rapidjson's GetParseError_En).
_RAPIDJSON_MESSAGES = (("Expecting value", "Invalid value."),
                       ("Extra data", "The document root must not be followed by other values."),
                       ("Expecting property name", "Missing a name for object member."),
                       ("Expecting ':' delimiter", "Missing a colon after a name of object member."),
                       ("Unterminated string", "Missing a closing quotation mark in string."),
                       ("Invalid control character", "Invalid encoding in string."),
                       ("Invalid \\uXXXX escape", "Incorrect hex digit after \\u escape in string."),
                       ("Invalid \\escape", "Invalid escape character in string."))


def _innermost(text: str) -> str:
    """The bracket ('[' or '{') still open at the end of `text`, strings skipped; '' when none is."""
    stack, in_string, escaped = [], False, False
    for char in text:
        if in_string:
            in_string, escaped = char != '"' or escaped, char == "\\" and not escaped
        elif char == '"':
            in_string = True
        elif char in "[{":
            stack.append(char)
        elif char in "]}" and stack:
            stack.pop()
    return stack[-1] if stack else ""


def _decode_error(error: json.JSONDecodeError, text: str) -> InvalidArgument:
    """A parse error as TF Serving words it: rapidjson's message and the byte offset where it stopped."""
    offset = len(text[:error.pos].encode("utf-8", "surrogatepass"))
    if error.msg.startswith("Expecting ',' delimiter"):
        what = ("Missing a comma or '}' after an object member." if _innermost(text[:error.pos]) == "{"
                else "Missing a comma or ']' after an array element.")
    else:
        what = next((words for start, words in _RAPIDJSON_MESSAGES if error.msg.startswith(start)), "Invalid value.")
    return InvalidArgument(f"JSON Parse error: {what} at offset: {offset}")


def signature_name(doc: Any) -> str:
    if not isinstance(doc, dict):
        raise InvalidArgument(f"JSON Value: {_debug(doc)} Is not object")
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
        column = _column(instances, names[0], signature, "'instances' list", keyed=False)
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
        if spec.shape is None or len(spec.shape) != 1 or (kind not in _PLAIN_TYPES and kind != "s"):
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
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, RecursionError):
        return None  # the general path names what is wrong
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
        spec, value = signature.inputs[name], inputs[name]
        column = _fast_column(value, spec) if isinstance(value, list) and value else None
        if column is None:
            column = _tensor(value, spec)
            if spec.shape is not None and column.ndim > len(spec.shape):
                raise InvalidArgument(f"Input {name} of 'inputs' object: JSON Value: {_debug(value)} has "
                                      f"{column.ndim} dimensions, but the input has {len(spec.shape)} (shape "
                                      f"{[-1 if d is None else d for d in spec.shape]})")
        columns[name] = column
    _check_rows_alike(columns, signature)
    batch = {column.shape[0] if column.ndim else -1 for column in columns.values()}
    if len(batch) == 1 and min(batch) > 0:  # one row per index of the 0-th dimension, as the row format has them
        return columns, [{name: inputs[name][i] for name in names} for i in range(min(batch))]
    return columns, [{name: inputs[name] for name in names}]


def _check_rows_alike(columns: dict[str, np.ndarray], signature: Signature) -> None:
    """Inputs that all take one value per row ([-1]) must be given as many rows each: the one that differs is named
    (TF Serving feeds them, and answers the graph's error)."""
    if len(columns) < 2 or any(spec.shape is None or len(spec.shape) != 1 for spec in signature.inputs.values()):
        return
    for name, column in columns.items():
        if column.ndim == 0:  # one value where the input takes a list of one value per row
            raise InvalidArgument(f"input {name} of signature {signature.name}: shape [] is not compatible with [-1]")
    sizes = [len(column) for column in columns.values()]
    usual = max(sizes, key=sizes.count)
    for name, size in zip(columns, sizes, strict=True):
        if size != usual:
            raise InvalidArgument(f"Expecting tensor size: {usual} but got: {size} (input {name}; the other inputs "
                                  f"have {usual} rows)")


def batch_group(columns: dict[str, np.ndarray], rows: int) -> Any:
    """What requests of one signature must share to be run in one call (`Batcher.submit`'s group): None for the
    common one (every input one value per row), the inputs' shapes past the 0-th dimension for nested ones, and a
    new object (joining nothing) when an input's 0-th dimension is not the request's rows (columnar inputs of
    different sizes, or a scalar)."""
    if any(column.ndim == 0 or column.shape[0] != rows for column in columns.values()):
        return object()
    if all(column.ndim == 1 for column in columns.values()):
        return None
    return tuple(column.shape[1:] for column in columns.values())


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


def _tolist(array: np.ndarray, name: str, short: bool = True) -> list:
    """An output as JSON values; short: float32 values as the shortest text of each (what an answer writes), else
    as the float64 of the same float32 (what the request log keeps)."""
    if array.dtype == object:
        flat = [_json_value(v) if not name.endswith("_bytes") else {"b64": base64.b64encode(v).decode("ascii")}
                for v in array.reshape(-1)]
        return np.array(flat, dtype=object).reshape(array.shape).tolist()
    if short and array.dtype == np.float32:
        return _float32_list(array)
    return array.tolist()


def _float32_list(array: np.ndarray) -> Any:
    """A float32 array as Python floats that print as the shortest text of each float32 (-3.14, where the
    float64 value of the same float32 prints as -3.140000104904175): orjson writes float32 arrays that way."""
    if array.ndim and np.isfinite(array).all():
        return orjson.loads(orjson.dumps(np.ascontiguousarray(array), option=orjson.OPT_SERIALIZE_NUMPY))
    flat = [float(str(value)) for value in array.reshape(-1)]  # numpy's str of a float32: its shortest text
    return np.array(flat, dtype=np.float64).reshape(array.shape).tolist()


def _check_rows(outputs: dict[str, np.ndarray]) -> None:
    """The row format needs every output batched alike (json_tensor.cc's MakeRowFormatJsonFromTensors)."""
    batch = None
    for name, array in sorted(outputs.items()):
        if array.ndim == 0:
            raise InvalidArgument(f"Tensor name: {name} has no shape information ")
        if batch is not None and array.shape[0] != batch:
            raise InvalidArgument(f"Tensor name: {name} has inconsistent batch size: {array.shape[0]} expecting: "
                                  f"{batch}")
        batch = array.shape[0]


def row_predictions(outputs: dict[str, np.ndarray], short: bool = False) -> list:
    """Per-row predictions: the output's rows when there is one output, else one object per row; when the outputs
    have no common 0-th dimension (a columnar request's), one prediction holding them whole. short: float32
    values as an answer writes them (`_tolist`)."""
    if any(array.ndim == 0 for array in outputs.values()) or len({a.shape[0] for a in outputs.values()}) > 1:
        whole = {name: _tolist(array, name, short) for name, array in outputs.items()}
        return [whole if len(whole) > 1 else next(iter(whole.values()))]
    if len(outputs) == 1:
        name, array = next(iter(outputs.items()))
        return _tolist(array, name, short)
    lists = {name: _tolist(array, name, short) for name, array in outputs.items()}
    rows = len(next(iter(lists.values())))
    return [{name: values[i] for name, values in lists.items()} for i in range(rows)]


def format_response(fmt: str, outputs: dict[str, np.ndarray]) -> dict:
    if fmt == ROW:
        _check_rows(outputs)
        return {"predictions": row_predictions(outputs, short=True)}
    if len(outputs) == 1:
        name, array = next(iter(outputs.items()))
        return {"outputs": _tolist(array, name)}
    return {"outputs": {name: _tolist(array, name) for name, array in outputs.items()}}


def _finite(outputs: dict[str, np.ndarray]) -> bool:
    for array in outputs.values():
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            return False
    return True


_NUMPY_JSON = {np.dtype(np.float32): np.float32, np.dtype(np.float64): np.float64, np.dtype(np.int32): np.int64,
               np.dtype(np.int64): np.int64}


def encode_predict(fmt: str, outputs: dict[str, np.ndarray]) -> bytes:
    """A predict answer's JSON, as `encode_response(format_response(fmt, outputs), outputs)` writes it. A single finite
    float or integer output is written by orjson straight from its array (float32 as the shortest text of each
    float32, as `_tolist` gives it; int32 as int64), without a Python list per row."""
    if len(outputs) == 1:
        array = next(iter(outputs.values()))
        wide = _NUMPY_JSON.get(array.dtype)
        if wide is not None and array.ndim and _finite(outputs):
            key = "predictions" if fmt == ROW else "outputs"
            return orjson.dumps({key: np.ascontiguousarray(array, dtype=wide)}, option=orjson.OPT_SERIALIZE_NUMPY)
    return encode_response(format_response(fmt, outputs), outputs)


def encode_response(payload: Any, outputs: dict[str, np.ndarray]) -> bytes:
    """A predict answer's JSON: orjson's, unless an output holds NaN or Infinity, which orjson would turn
    into null; TF Serving writes them as NaN and Infinity, as `dumps` does."""
    return orjson.dumps(payload) if _finite(outputs) else dumps(payload)


def dumps(payload: Any) -> bytes:
    return json.dumps(payload, allow_nan=True, separators=(",", ":")).encode("utf-8")


# ---- :classify and :regress (json_tensor.cc's FillClassifyRegressRequestFromJson, classifier.cc, regressor.cc) ----

CLASSIFY, REGRESS = "classify", "regress"
_EXAMPLE_APIS = {CLASSIFY: ("tensorflow/serving/classify", "classification"),
                 REGRESS: ("tensorflow/serving/regress", "regression")}
_INT64_MIN, _INT64_MAX, _UINT64_MAX = -(2**63), 2**63 - 1, 2**64 - 1


def _feature_value(item: Any, name: str) -> tuple[str, Any]:
    """(the tf.train.Feature list kind, the value) of one JSON value of an example's feature (AddValueToFeature)."""
    if isinstance(item, bool):
        return "int64", int(item)
    if isinstance(item, str):
        return "bytes", item.encode("utf-8")
    if isinstance(item, float) or isinstance(item, int) and not _INT64_MIN <= item <= _UINT64_MAX:
        with np.errstate(over="ignore"):
            return "float", float(np.float32(item))
    if isinstance(item, int):
        if item > _INT64_MAX:
            raise InvalidArgument(f"Feature: {name} has uint64_t element. Only int64_t is supported.")
        return "int64", item
    if _is_b64(item) and isinstance(item["b64"], str):
        return "bytes", _scalar(item, _string_dtype())
    raise InvalidArgument(f"Feature: {name} has element with unexpected JSON type: {_json_type(item)}")


@functools.lru_cache(maxsize=1)
def _string_dtype() -> Any:
    import tensorflow as tf  # TensorFlow: loaded by the model already; seconds to import

    return tf.string


def _example(value: Any) -> Any:
    """One JSON object as a tf.train.Example (MakeExampleFromJsonObject): each key a feature of one value or a list."""
    from tensorflow.core.example import example_pb2  # TensorFlow: loaded by the model already; seconds to import

    if not isinstance(value, dict):
        raise InvalidArgument(f"Example must be JSON object but got JSON {_json_type(value)}")
    example = example_pb2.Example()
    for name, content in value.items():
        kind, values = None, []
        for item in content if isinstance(content, list) else [content]:
            item_kind, item_value = _feature_value(item, name)
            if kind is not None and item_kind != kind:
                raise InvalidArgument(f"Unexpected element type in feature: {name} expecting type: {kind}")
            kind = item_kind
            values.append(item_value)
        feature = example.features.feature[name]
        if kind is not None:
            getattr(feature, f"{kind}_list").value.extend(values)
    return example


def parse_examples(doc: Any) -> np.ndarray:
    """The serialized tf.Examples of a classify or regress body (`examples`, each merged with `context`)."""
    context = _example(doc["context"]).SerializeToString() if "context" in doc else b""
    if "examples" not in doc:
        raise InvalidArgument(f"JSON Value: {_debug(doc)} When method is classify, key 'examples' is expected and "
                              "was not found")
    examples = doc["examples"]
    if not isinstance(examples, list):
        raise InvalidArgument(f"JSON Value: {_debug(doc)} Expecting 'examples' value to be an list/array")
    if not examples:
        raise InvalidArgument(f"JSON Value: {_debug(doc)} 'examples' value is an empty array")
    return np.array([context + _example(example).SerializeToString() for example in examples], dtype=object)


def example_signature(signatures: dict[str, Signature], name: str, api: str) -> tuple[Signature, str]:
    """(the signature, its input's name) a classify or regress request runs, checked as TF Serving checks it."""
    key = name or "serving_default"
    if key not in signatures:
        raise InvalidArgument(f"No signature was found with the name: {key}")
    signature = signatures[key]
    method, verb = _EXAMPLE_APIS[api]
    if signature.method_name != method:
        raise InvalidArgument(f"Expected {verb} signature method_name to be {method}. Was: {signature.method_name}")
    if len(signature.inputs) != 1:
        raise InvalidArgument("Expected one input Tensor.")
    if api == REGRESS and len(signature.outputs) != 1:
        raise InvalidArgument("Expected one output Tensor.")
    if api == CLASSIFY and len(signature.outputs) not in (1, 2):
        raise InvalidArgument(f"Expected one or two output Tensors, found {len(signature.outputs)}")
    if "inputs" not in signature.inputs:
        raise InvalidArgument(f"No {verb} inputs found in SignatureDef: {key} (inputs: {sorted(signature.inputs)})")
    wanted = {"classes", "scores"} if api == CLASSIFY else {"outputs"}
    if not wanted & set(signature.outputs):
        raise InvalidArgument(f"Expected {verb} signature outputs to contain {' or '.join(sorted(wanted))}; "
                              f"signature {key} has {sorted(signature.outputs)}")
    if signature.inputs["inputs"].dtype.name != "string":
        raise InvalidArgument(f"Signature {key}: input 'inputs' takes {_type_name(signature.inputs['inputs'].dtype)}, "
                              f"but {api} feeds it serialized tf.Examples (string)")
    return signature, "inputs"


def _matrix(array: np.ndarray, what: str, kind: str, examples: int) -> None:
    if array.ndim != 2:
        raise InvalidArgument(f"Expected Tensor shape: [batch_size num_classes] but got {_shape_text(array.shape)}")
    if array.dtype.kind != kind:
        raise InvalidArgument(f"Expected {what} Tensor of {'DT_STRING' if kind == 'O' else 'DT_FLOAT'}. Got: "
                              f"{array.dtype}")
    if array.shape[0] != examples:
        raise InvalidArgument(f"Expected {what} output batch size of {examples}. Got: {array.shape[0]}")


def encode_classify(outputs: dict[str, np.ndarray], examples: int) -> bytes:
    """`{"results": [[[label, score], ...], ...]}`, one list of classes per example (label "" without a classes
    output, score 0.0 without a scores output), as TF Serving writes a ClassificationResult."""
    classes, scores = outputs.get("classes"), outputs.get("scores")
    if classes is not None:
        _matrix(classes, "classes", "O", examples)
    if scores is not None:
        _matrix(scores, "scores", "f", examples)
    if classes is not None and scores is not None and classes.shape[1] != scores.shape[1]:
        raise InvalidArgument(f"Tensors class and score should match in dim_size(1). Got {classes.shape[1]} vs. "
                              f"{scores.shape[1]}")
    width = (classes if classes is not None else scores).shape[1]
    labels = _tolist(classes, "classes") if classes is not None else [[""] * width for _ in range(examples)]
    values = (_float32_list(scores.astype(np.float32)) if scores is not None
              else [[0.0] * width for _ in range(examples)])
    results = [[[label, score] for label, score in zip(row_labels, row_scores, strict=True)]
               for row_labels, row_scores in zip(labels, values, strict=True)]
    return encode_response({"results": results}, {} if scores is None else {"scores": scores})


def encode_regress(outputs: dict[str, np.ndarray], examples: int) -> bytes:
    """`{"results": [value, ...]}`, one value per example, as TF Serving writes a RegressionResult."""
    values = outputs["outputs"]
    if not (values.ndim == 1 or values.ndim == 2 and values.shape[1] == 1):
        raise InvalidArgument(f"Expected output Tensor shape to be either [batch_size] or [batch_size, 1] but got "
                              f"{_shape_text(values.shape)}")
    if values.shape[0] != examples:
        raise InvalidArgument(f"Input batch size did not match output batch size: {examples} vs. {values.shape[0]}")
    if values.dtype != np.float32:
        raise InvalidArgument(f"Expected output Tensor of DT_FLOAT.  Got: {values.dtype}")
    return encode_response({"results": _float32_list(values.reshape(-1))}, {"outputs": values})
