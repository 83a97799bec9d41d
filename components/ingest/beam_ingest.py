"""The ingestion as a Beam pipeline: files in parallel, each row typed or quarantined, counts kept."""

from __future__ import annotations

import collections
import dataclasses
import json
import os
from typing import Mapping, Optional, Sequence

import apache_beam as beam
from tfx.dsl.io import fileio

from flywheel.components.ingest import spec
from flywheel.data import parsing
from flywheel.monitoring import profile_beam
from flywheel.monitoring.profile import schema_kinds

QUARANTINE_TAG = "__quarantine__"
READ_TAG = "__read__"
COUNTS_TAG = "__counts__"
PHYSICAL_TAG = "__physical__"  # data rows the files hold, counted without the parser
PROFILE_TAG = "__profile__"


@dataclasses.dataclass(frozen=True)
class IngestOptions:
    """How rows become examples."""

    columns: tuple[parsing.Column, ...]
    splits: tuple[tuple[str, int], ...] = (("train", 2), ("eval", 1))
    split_key_columns: tuple[str, ...] = ()
    quarantine_limit: float = 0.01


@dataclasses.dataclass(frozen=True)
class IngestCounts:
    """rows_read: rows the parser produced; physical_rows: data rows the files hold, counted apart
    (CSV: non-blank lines after the header; Parquet: the footer's num_rows). They differ only when a
    quoted field spans lines (one row, several lines)."""

    rows_read: int
    rows_written: dict[str, int]
    rows_quarantined: int
    physical_rows: int

    def check_invariant(self) -> None:
        if self.rows_read != sum(self.rows_written.values()) + self.rows_quarantined:
            raise parsing.IngestError(f"ingest: rows_read {self.rows_read} != written {self.rows_written} + "
                                      f"quarantined {self.rows_quarantined}")


def _to_example(values: dict) -> bytes:
    """A serialized tf.Example; deterministic bytes (features in name order) for the same typed row."""
    from tensorflow.core.example import example_pb2  # its package imports TensorFlow: only Beam's workers need it

    example = example_pb2.Example()
    feature = example.features.feature
    for name, value in values.items():
        if isinstance(value, bytes):
            feature[name].bytes_list.value.append(value)
        elif isinstance(value, int):
            feature[name].int64_list.value.append(value)
        else:
            feature[name].float_list.value.append(value)
    return example.SerializeToString(deterministic=True)


class _ParseFile(beam.DoFn):
    """One file: each row to its split as a tf.Example or to the quarantine; then the file's counts."""

    def __init__(self, options: IngestOptions):
        self._options = options

    def process(self, path: str):
        opts = self._options
        counts = collections.Counter({READ_TAG: 0, QUARANTINE_TAG: 0, **{name: 0 for name, _ in opts.splits}})
        covered = 0
        for row in parsing.file_rows(path, opts.columns, opts.split_key_columns, opts.splits):
            counts[READ_TAG] += 1
            covered += row.lines
            if isinstance(row, parsing.Rejected):
                counts[QUARANTINE_TAG] += 1
                yield beam.pvalue.TaggedOutput(QUARANTINE_TAG, json.dumps(row.to_dict(), ensure_ascii=False))
            else:
                counts[row.split] += 1
                yield beam.pvalue.TaggedOutput(row.split, _to_example(row.values))
                yield beam.pvalue.TaggedOutput(PROFILE_TAG, (path, row.values))
        counts[PHYSICAL_TAG] = parsing.physical_rows(path)
        parsing.check_accounted(path, counts[PHYSICAL_TAG], covered)
        yield beam.pvalue.TaggedOutput(COUNTS_TAG, dict(counts))


def _sum_counts(per_file) -> dict:
    total: collections.Counter = collections.Counter()
    for counts in per_file:
        total.update(counts)
    return dict(total)


def expand(pipeline: beam.Pipeline, files: Sequence[str], options: IngestOptions, examples_uri: str,
           quarantine_uri: str, counts_dir: str, profile_uri: str = "",
           file_spans: Optional[Mapping[str, int]] = None) -> None:
    """Adds the ingestion to `pipeline`: Split-<name>/ gzip TFRecords, quarantine.jsonl, counts, and (with
    profile_uri) one profile-span-<N>.json per span of `file_spans` ({file: span}) from the typed rows."""
    split_names = [name for name, _ in options.splits]
    outputs = (pipeline
               | "Files" >> beam.Create(list(files))
               | "Reshuffle" >> beam.Reshuffle()
               | "Parse" >> beam.ParDo(_ParseFile(options)).with_outputs(QUARANTINE_TAG, COUNTS_TAG, PROFILE_TAG,
                                                                    *split_names))
    for name in split_names:
        (outputs[name]
         | f"Write{name}" >> beam.io.WriteToTFRecord(
             os.path.join(examples_uri, f"Split-{name}", "data_tfrecord"), file_name_suffix=".gz"))
    (outputs[QUARANTINE_TAG]
     | "WriteQuarantine" >> beam.io.WriteToText(
         os.path.join(quarantine_uri, spec.QUARANTINE_FILE), shard_name_template=""))
    (outputs[COUNTS_TAG]
     | "SumCounts" >> beam.CombineGlobally(_sum_counts)
     | "FormatCounts" >> beam.Map(json.dumps)
     | "WriteCounts" >> beam.io.WriteToText(os.path.join(counts_dir, "counts"), shard_name_template=""))
    if profile_uri:
        spans = dict(file_spans or {})
        (outputs[PROFILE_TAG]
         | "SpanOfRow" >> beam.MapTuple(lambda path, values: (spans[path], values))
         | "Profile" >> profile_beam.SpanProfiles(schema_kinds(options.columns), spans.values(), profile_uri))


def read_counts(counts_dir: str, split_names: Sequence[str]) -> IngestCounts:
    merged: dict[str, int] = {}
    for name in fileio.listdir(counts_dir):
        with fileio.open(os.path.join(counts_dir, name), "r") as f:
            for line in f.read().splitlines():
                if line.strip():
                    merged.update(json.loads(line))
    counts = IngestCounts(rows_read=merged.get(READ_TAG, 0),
                          rows_written={n: merged.get(n, 0) for n in split_names},
                          rows_quarantined=merged.get(QUARANTINE_TAG, 0),
                          physical_rows=merged.get(PHYSICAL_TAG, 0))
    counts.check_invariant()
    return counts
