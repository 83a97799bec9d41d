"""Ingest without a pipeline: CSV/Parquet into gzip tf.Examples and a quarantine, through Ingest's own Beam
pipeline. Importing this module imports Beam and TFX (Ingest's component library): quiet TensorFlow's logs first
(`flywheel.quiet.quiet_environment`) when that matters."""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
from typing import Any, Optional

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from flywheel import quiet
from flywheel.api.errors import UsageError, folder_argument, resolve_input
from flywheel.api.results import as_dict
from flywheel.components.ingest.beam_ingest import IngestOptions
from flywheel.components.ingest.quarantine import check_quarantine_limit
from flywheel.components.ingest.run import run_ingest
from flywheel.data.parsing import IngestError, columns_from_schema, load_schema


@dataclasses.dataclass(frozen=True)
class IngestResult:
    """Rows read, written (per split) and quarantined; error is set when the quarantine limit was exceeded
    or a required column is missing (the counts are still those of the attempt)."""

    rows_read: int
    rows_written: dict[str, int]
    rows_quarantined: int
    quarantine_path: str
    examples_path: str
    fingerprint: str
    span: int
    spans: list[int]
    physical_rows: int = 0
    error: Optional[str] = None

    def to_dict(self) -> dict[str, Any]:
        return as_dict(self)


def ingest(data: str, schema: str, output_dir: str, *, span: int = -1, num_spans: int = 1,
           quarantine_limit: float = 0.01, split_key: tuple[str, ...] = (), verbose: bool = False,
           beam_pipeline_args: tuple[str, ...] = ()) -> IngestResult:
    """Ingests CSV/Parquet into gzip tf.Examples under <output_dir>/examples and a quarantine, without a pipeline.
    `beam_pipeline_args` choose the Beam runner (default: the DirectRunner in this process), e.g.
    `--runner=flywheel.dask_runner.DaskRunner --dask_client_address=HOST:PORT` (docs/distributed.md)."""
    quiet.quiet_environment(verbose)
    resolved = resolve_input(data, span, num_spans)
    folder_argument(output_dir, "ingest: --output-dir")
    try:
        columns = columns_from_schema(load_schema(schema))
        options = IngestOptions(columns=tuple(columns), split_key_columns=tuple(split_key),
                                quarantine_limit=quarantine_limit)
    except (ValueError, OSError) as e:
        raise UsageError(str(e)) from e
    quiet.install(verbose, sys.stderr)
    out = os.path.abspath(output_dir)
    examples_uri, quarantine_uri = os.path.join(out, "examples"), os.path.join(out, "quarantine")
    kept_at = os.path.join(quarantine_uri, "quarantine.jsonl")
    common = {"quarantine_path": kept_at, "examples_path": examples_uri, "fingerprint": resolved.fingerprint,
              "span": max(resolved.spans), "spans": list(resolved.spans)}
    try:
        counts = run_ingest(resolved, options, examples_uri, quarantine_uri, os.path.join(out, ".work"),
                            functools.partial(beam.Pipeline, options=PipelineOptions(list(beam_pipeline_args))))
    except IngestError as e:
        return IngestResult(rows_read=0, rows_written={}, rows_quarantined=0, error=str(e), **common)
    error = None
    try:
        check_quarantine_limit(counts, options.quarantine_limit, quarantine_uri, kept_at)
    except IngestError as e:
        error = str(e)
    return IngestResult(rows_read=counts.rows_read, rows_written=dict(counts.rows_written),
                        rows_quarantined=counts.rows_quarantined, physical_rows=counts.physical_rows, error=error,
                        **common)
