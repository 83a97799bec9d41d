"""Rows for batch inference: which columns are read, how a typed row becomes a tf.Example and a Parquet row.

Plain functions on Ingest's typing (`flywheel/data/parsing.py`). The label is not required: a schema
feature not in the SERVING environment (`parsing.in_serving`, TFDV's way of saying "absent at serving time")
is read when present and left empty when not. Every schema column is written, typed from the schema (INT ->
int64, FLOAT -> float64 holding the value as written, BYTES -> UTF-8 string), so every shard of one run
has the same Parquet schema whichever columns its file held; columns outside the schema are not read,
as in Ingest.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tensorflow_metadata.proto.v0 import schema_pb2

from flywheel.batch.model_version import PredictError
from flywheel.data import parsing

PREDICTION = "prediction"
MODEL_VERSION = "model_version"
SOURCE_FILE, SOURCE_LINE = "source_file", "source_line"  # each row's key: the file and line it was read from
OUTPUT_COLUMNS = (SOURCE_FILE, SOURCE_LINE, PREDICTION, MODEL_VERSION)


def serving_columns(schema: schema_pb2.Schema) -> tuple[parsing.Column, ...]:
    """The schema's typed columns; those not in serving (the label: `parsing.in_serving`) are optional."""
    absent = set(parsing.label_names(schema))
    columns = parsing.columns_from_schema(schema)
    clash = [c.name for c in columns if c.name in OUTPUT_COLUMNS]
    if clash:
        raise PredictError(f"predict: schema feature(s) {clash} would be overwritten by the output columns "
                                  f"{list(OUTPUT_COLUMNS)}; rename them in the schema")
    return tuple(dataclasses.replace(c, required=False) if c.name in absent else c for c in columns)


def with_id_column(columns: Sequence[parsing.Column], id_column: str | None) -> tuple[parsing.Column, ...]:
    """The columns read, with `id_column` required: a schema column as typed there, any other as text (carried
    to the output, not a model input). PredictError when it would clash with an output column."""
    if not id_column:
        return tuple(columns)
    if id_column in OUTPUT_COLUMNS:
        raise PredictError(f"predict: id column {id_column!r} would be overwritten by the output column of that "
                           f"name; the output columns are {list(OUTPUT_COLUMNS)}")
    if any(c.name == id_column for c in columns):
        return tuple(dataclasses.replace(c, required=True) if c.name == id_column else c for c in columns)
    return (*columns, parsing.Column(id_column, parsing.BYTES, True))


def arrow_schema(columns: Sequence[parsing.Column]):
    """The predictions' Parquet schema: `source_file` and `source_line` (where each row was read: with the
    prediction, a key to join it back to its row), the input columns, then `prediction` (float64) and
    `model_version`."""
    return pa.schema([pa.field(SOURCE_FILE, pa.string(), nullable=False),
                      pa.field(SOURCE_LINE, pa.int64(), nullable=False)]
                     + list(input_schema(columns))
                     + [pa.field(PREDICTION, pa.float64(), nullable=False),
                        pa.field(MODEL_VERSION, pa.int64(), nullable=False)])


def utf8_problem(values: dict, columns: Sequence[parsing.Column]) -> tuple[str, str] | None:
    """(column, reason) for a BYTES value that is not UTF-8 (a Parquet string cannot hold it), else None."""
    for column in columns:
        value = values.get(column.name)
        if column.kind == parsing.BYTES and value is not None:
            try:
                value.decode("utf-8")
            except UnicodeDecodeError as e:
                return column.name, (f"column {column.name!r}: bytes that are not valid UTF-8 ({e.reason} at byte "
                                     f"{e.start}) cannot be written as a Parquet string")
    return None


def input_schema(columns: Sequence[parsing.Column]):
    """The input columns' Arrow schema (the predictions' schema without the two output columns)."""
    kinds = {parsing.INT: pa.int64(), parsing.FLOAT: pa.float64(), parsing.BYTES: pa.string()}
    return pa.schema([pa.field(c.name, kinds[c.kind]) for c in columns])


class Batch:
    """Up to a caller's limit of typed rows, kept column by column: the unit that goes through RunInference.
    Bounded: the caller emits it when full (`record_batch()`) and starts a new one."""

    def __init__(self, columns: Sequence[parsing.Column]):
        self.names = [c.name for c in columns]
        self.bytes_columns = {c.name for c in columns if c.kind == parsing.BYTES}
        self._schema = input_schema(columns)
        self.values: dict[str, list] = {name: [] for name in self.names}
        self.lines: list[int] = []  # each row's line in its file
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def add(self, values: dict, line: int) -> None:
        for name in self.names:
            value = values.get(name)
            self.values[name].append(value.decode("utf-8") if name in self.bytes_columns and value is not None
                                     else value)
        self.lines.append(line)
        self.size += 1

    def record_batch(self):
            return pa.RecordBatch.from_pydict(self.values, schema=self._schema)


def to_examples(batch, encoder) -> list[bytes]:
    """A record batch of typed rows as serialized tf.Examples, encoded by tfx-bsl (C++): each value a
    one-element list (floats as float32, text as bytes, as Ingest writes them); a missing value, no value."""
    lists = []
    for column in batch.columns:
        if pa.types.is_floating(column.type):
            column = pc.cast(column, pa.float32(), safe=False)
        elif pa.types.is_string(column.type):
            column = column.cast(pa.binary())
        valid = pc.invert(column.is_null()) if column.null_count else None
        if valid is None:
            offsets = pa.array(range(len(column) + 1), pa.int32())
            lists.append(pa.ListArray.from_arrays(offsets, column))
        else:
            counts = pc.cast(valid, pa.int32()).to_numpy(zero_copy_only=False)
            offsets = pa.array([0, *counts.cumsum()], pa.int32())
            lists.append(pa.ListArray.from_arrays(offsets, column.drop_null(), mask=column.is_null()))
    return encoder.encode(pa.RecordBatch.from_arrays(lists, batch.schema.names))


def scores(logs: Sequence, output: str):
    """The one score per row in RunInference's PredictionLogs (`predict_log.response.outputs[output]`), as a
    float64 array; PredictError when the output holds more (or fewer) than one value per row."""
    from tensorflow.python.framework import tensor_util  # TensorFlow: only the workers that score rows load it

    tensors = [log.predict_log.response.outputs[output] for log in logs]
    first = tensors[0] if tensors else None
    if first is not None and all(len(t.float_val) == 1 for t in tensors):  # one float32 per row, the usual case
        values = np.array([t.float_val[0] for t in tensors])
    elif first is not None and first.tensor_content and all(t.dtype == first.dtype for t in tensors):
        dtype = tensor_util.MakeNdarray(first).dtype  # every row's tensor packed the same way: one read
        values = np.frombuffer(b"".join(t.tensor_content for t in tensors), dtype=dtype)
    else:
        values = np.concatenate([tensor_util.MakeNdarray(t).ravel() for t in tensors]) if tensors else np.zeros(0)
    if values.size != len(tensors):
        raise PredictError(f"predict: model output {output!r} has {values.size} values for {len(tensors)} rows; "
                           f"batch inference writes one score per row")
    return values.astype(np.float64)
