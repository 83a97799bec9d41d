"""Ingest: the thin component class."""

from __future__ import annotations

from typing import Optional, Sequence, Union

from tfx import types
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.types import standard_artifacts

from flywheel.components.ingest import driver, executor, spec

DEFAULT_SPLITS = (("train", 2), ("eval", 1))


class Ingest(base_beam_component.BaseBeamComponent):
    """CSV/CSV.gz/Parquet files laid out by span -> standard Examples (gzip tf.Example TFRecords) + quarantine.

    Rows are typed from the schema; rows that do not parse go to the quarantine with file, line, column
    and reason, and every physical row is accounted for. The execution fails when the quarantined share
    exceeds `quarantine_limit`, a file misses a required column, or the input layout is refused (see the
    component's README).

    Args:
      input_base: a file, a folder of files, or a folder of `span-N/` folders (local, gs://, s3://), or a
        runtime parameter.
      schema: the curated Schema channel (ImportSchemaGen): column types and required columns.
      span: the last span to read; -1 the latest.
      num_spans: how many consecutive spans ending at `span` to read (a rolling window).
      split_key_columns: columns hashed for the deterministic split (default: the whole raw row).
      splits: (name, hash buckets) pairs, e.g. (("train", 2), ("eval", 1)).
      quarantine_limit: the largest share of rows that may be quarantined, within [0, 1].
      expected_fingerprint: the data fingerprint the spans must have (e.g. a continuous-training decision's
        output, `decide.outputs["fingerprint"].future()[0].value`); a mismatch fails the execution. It is part
        of the cache key, so new data is a new execution even where no custom driver runs (Kubeflow).
      span and num_spans may be run parameters or, for span, an upstream Integer's `.future()[0].value`.

    Outputs:
      examples: standard Examples, `Split-<name>/` gzip TFRecords; custom properties `rows_read`,
        `rows_written`, `rows_quarantined`, `physical_rows`, `data_fingerprint`, `spans`.
      quarantine: flywheel.Quarantine, `quarantine.jsonl` (file, line, column, reason, raw) and `counts.json`.
      profile: flywheel.DataProfile, one `profile-span-<N>.json` per span, for DriftMonitor and Push.
    """

    SPEC_CLASS = spec.IngestSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)
    DRIVER_CLASS = driver.IngestDriver

    def __init__(self, input_base: Union[str, types.Property], schema: types.BaseChannel,
                 span: Union[int, types.Property] = -1, num_spans: Union[int, types.Property] = 1,
                 split_key_columns: Sequence[str] = (), splits: Sequence[tuple[str, int]] = DEFAULT_SPLITS,
                 quarantine_limit: float = 0.01, expected_fingerprint: Optional[Union[str, types.Property]] = None):
        if not 0.0 <= quarantine_limit <= 1.0:
            raise ValueError(f"Ingest: quarantine_limit must be within [0, 1], got {quarantine_limit}")
        if isinstance(num_spans, int) and num_spans < 1:
            raise ValueError(f"Ingest: num_spans must be >= 1, got {num_spans}")
        if not splits or any(b < 1 for _, b in splits):
            raise ValueError(f"Ingest: splits must be (name, buckets >= 1) pairs, got {list(splits)}")
        super().__init__(spec.IngestSpec(
            input_base=input_base,
            span=span,
            num_spans=num_spans,
            split_key_columns=",".join(split_key_columns),
            splits=",".join(f"{n}:{b}" for n, b in splits),
            quarantine_limit=quarantine_limit,
            expected_fingerprint=expected_fingerprint,
            schema=schema,
            examples=types.Channel(type=standard_artifacts.Examples),
            quarantine=types.Channel(type=spec.Quarantine),
            profile=types.Channel(type=spec.DataProfile),
        ))
