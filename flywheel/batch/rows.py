"""Rows for batch inference: which columns are read, how a typed row becomes a tf.Example and a Parquet row.

Plain functions on Ingest's typing (`components/ingest/parsing.py`). The label is not required: a schema
feature marked `not_in_environment: "SERVING"` (TFDV's way of saying "absent at serving time") is read
when present and left empty when not. Every schema column is written, typed from the schema (INT ->
int64, FLOAT -> float64 holding the value as written, BYTES -> UTF-8 string), so every shard of one run
has the same Parquet schema whichever columns its file held; columns outside the schema are not read,
as in Ingest.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Sequence

from tensorflow_metadata.proto.v0 import schema_pb2

from flywheel.batch.served import PredictError
from flywheel.components.ingest import parsing

SERVING_ENVIRONMENT = "SERVING"
PREDICTION = "prediction"
MODEL_VERSION = "model_version"
OUTPUT_COLUMNS = (PREDICTION, MODEL_VERSION)


def serving_columns(schema: schema_pb2.Schema) -> tuple[parsing.Column, ...]:
    """The schema's typed columns; those not in the SERVING environment (the label) are optional."""
    absent = {f.name for f in schema.feature if SERVING_ENVIRONMENT in f.not_in_environment}
    columns = parsing.columns_from_schema(schema)
    clash = [c.name for c in columns if c.name in OUTPUT_COLUMNS]
    if clash:
        raise PredictError(f"predict: schema feature(s) {clash} would be overwritten by the output columns "
                                  f"{list(OUTPUT_COLUMNS)}; rename them in the schema")
    return tuple(dataclasses.replace(c, required=False) if c.name in absent else c for c in columns)


def arrow_schema(columns: Sequence[parsing.Column]):
    """The predictions' Parquet schema: the input columns, then `prediction` (float64) and `model_version`."""
    import pyarrow as pa

    kinds = {parsing.INT: pa.int64(), parsing.FLOAT: pa.float64(), parsing.BYTES: pa.string()}
    return pa.schema([pa.field(c.name, kinds[c.kind]) for c in columns]
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


class Batch:
    """Up to `size` typed rows, kept column by column, with their serialized tf.Examples: the unit that goes
    through RunInference. Bounded: the caller emits it when full and starts a new one."""

    def __init__(self, columns: Sequence[parsing.Column]):
        from tensorflow.core.example import example_pb2

        self._example = example_pb2.Example
        self.names = [c.name for c in columns]
        self.bytes_columns = {c.name for c in columns if c.kind == parsing.BYTES}
        self.values: dict[str, list] = {name: [] for name in self.names}
        self.examples: list[bytes] = []

    def __len__(self) -> int:
        return len(self.examples)

    def add(self, values: dict) -> None:
        for name in self.names:
            value = values.get(name)
            self.values[name].append(value.decode("utf-8") if name in self.bytes_columns and value is not None
                                     else value)
        self.examples.append(self.to_example(values))

    def to_example(self, values: dict) -> bytes:
        """The row as Ingest writes it: one value per feature, floats as float32, missing values absent."""
        example = self._example()
        feature = example.features.feature
        for name, value in values.items():
            if isinstance(value, bytes):
                feature[name].bytes_list.value.append(value)
            elif isinstance(value, int):
                feature[name].int64_list.value.append(value)
            else:
                feature[name].float_list.value.append(value)
        return example.SerializeToString(deterministic=True)


def scores(logs: Iterable, output: str) -> list[float]:
    """The one score per row in RunInference's PredictionLogs (`predict_log.response.outputs[output]`)."""
    import numpy as np

    result = []
    for log in logs:
        tensor = log.predict_log.response.outputs[output]
        if tensor.tensor_content:
            from tensorflow.python.framework import tensor_util

            values = tensor_util.MakeNdarray(tensor).ravel()
        else:
            values = np.asarray(tensor.float_val or tensor.double_val or tensor.int64_val)
        if values.size != 1:
            raise PredictError(f"predict: model output {output!r} has {values.size} values per row; "
                                      f"batch inference writes one score per row")
        result.append(float(values[0]))
    return result
