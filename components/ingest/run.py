"""The ingestion run, as used by both the executor and `flywheel ingest`: files -> examples + quarantine + counts."""

from __future__ import annotations

import json
import os
from typing import Callable

import apache_beam as beam
from tfx.dsl.io import fileio

from flywheel.components.ingest import beam_ingest, spec
from flywheel.data import inputs, parsing


def run_ingest(resolved: inputs.ResolvedInput, options: beam_ingest.IngestOptions, examples_uri: str,
               quarantine_uri: str, work_dir: str,
               make_pipeline: Callable[[], beam.Pipeline] = beam.Pipeline, profile_uri: str = "",
               input_base: str = "") -> beam_ingest.IngestCounts:
    """Reads the resolved files into examples and quarantine (and per-span profiles into profile_uri when
    given); returns the counts (limit not checked)."""
    parsing.check_files(resolved.files, options.columns)
    counts_dir, shards_dir = os.path.join(work_dir, "ingest_counts"), os.path.join(work_dir, "ingest_shards")
    for folder in (counts_dir, shards_dir):
        if fileio.exists(folder):
            fileio.rmtree(folder)
    fileio.makedirs(counts_dir)
    fileio.makedirs(quarantine_uri)
    with make_pipeline() as pipeline:
        beam_ingest.expand(pipeline, resolved.files, options, examples_uri, quarantine_uri, counts_dir, profile_uri,
                           {f: inputs.span_of(f, input_base) for f in resolved.files} if profile_uri else None,
                           shards_dir)
    if fileio.exists(shards_dir):
        fileio.rmtree(shards_dir)
    counts = beam_ingest.read_counts(counts_dir, [n for n, _ in options.splits])
    summary = {
        spec.ROWS_READ: counts.rows_read,
        spec.ROWS_WRITTEN: counts.rows_written,
        spec.ROWS_QUARANTINED: counts.rows_quarantined,
        spec.PHYSICAL_ROWS: counts.physical_rows,
        spec.FINGERPRINT: resolved.fingerprint,
        spec.SPANS: list(resolved.spans),
        spec.INPUT_FILES: list(resolved.files),
    }
    with fileio.open(os.path.join(quarantine_uri, spec.COUNTS_FILE), "w") as f:
        f.write(json.dumps(summary, indent=2))
    return counts
