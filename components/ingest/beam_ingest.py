"""The ingestion as a Beam pipeline: files in parallel, each row typed or quarantined, one shard per file and split,
counts kept."""

from __future__ import annotations

import collections
import dataclasses
import json
import os
from typing import Mapping, Optional, Sequence

import apache_beam as beam
import pyarrow as pa
from tfx.dsl.io import fileio

from flywheel.components.ingest import shards, spec
from flywheel.data import arrow_rows, parsing
from flywheel.monitoring import profile, profile_beam
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


@dataclasses.dataclass(frozen=True)
class Shards:
    """Where the examples go: `<examples_uri>/Split-<name>/data_tfrecord-<file>-of-<files>.gz`, one shard per input
    file and split, written first under `temporary_dir`."""

    examples_uri: str
    temporary_dir: str
    files: int

    def name(self, index: int) -> str:
        return f"data_tfrecord-{index:05d}-of-{self.files:05d}.gz"

    def writers(self, index: int, split_names: Sequence[str]) -> dict[str, shards.ShardWriter]:
        return {split: shards.ShardWriter(os.path.join(self.examples_uri, f"Split-{split}", self.name(index)),
                                          os.path.join(self.temporary_dir, f"Split-{split}", self.name(index)))
                for split in split_names}


class _FileProfile:
    """The profile of one file's typed rows: blocks typed in bulk (Arrow tables) and rows typed one by one."""

    def __init__(self, kinds: Mapping[str, str]):
        self._kinds = dict(kinds)
        self._rows = profile.Builder(self._kinds)
        self._blocks: Optional[profile.DatasetProfile] = None

    def add_block(self, values) -> None:
        part = profile.profile_table(values, kinds=self._kinds)
        self._blocks = part if self._blocks is None else profile.merge([self._blocks, part])

    def add_row(self, values: dict) -> None:
        self._rows.add(values)

    def result(self) -> profile.DatasetProfile:
        rows = self._rows.result()
        if self._blocks is None:
            return rows
        return self._blocks if not rows.rows else profile.merge([self._blocks, rows])


_ROW_BATCH = 10_000  # examples of rows typed one by one, written together


class _ParseFile(beam.DoFn):
    """One file: its rows to its shard of each split as tf.Examples or to the quarantine; then the file's
    profile (when asked) and counts. Plain CSV blocks are typed in bulk (`arrow_rows`), other rows one by one
    (`parsing`): the same examples, quarantine records and splits."""

    def __init__(self, options: IngestOptions, shards_plan: Shards, profile_rows: bool = False):
        self._options, self._shards, self._profile_rows = options, shards_plan, profile_rows

    def process(self, indexed: tuple[int, str]):
        index, path = indexed
        opts = self._options
        split_names = [name for name, _ in opts.splits]
        counts = collections.Counter({READ_TAG: 0, QUARANTINE_TAG: 0, **{name: 0 for name in split_names}})
        writers = self._shards.writers(index, split_names)
        file_profile = _FileProfile(schema_kinds(opts.columns)) if self._profile_rows else None
        one_by_one: dict[str, list[bytes]] = {name: [] for name in split_names}
        covered = 0
        try:
            for item in arrow_rows.file_items(path, opts.columns, opts.split_key_columns, opts.splits):
                if isinstance(item, arrow_rows.Block):
                    counts[READ_TAG] += item.rows
                    covered += item.rows
                    for name, examples in item.examples.items():
                        counts[name] += len(examples)
                        writers[name].write(examples)
                    if file_profile is not None:
                        file_profile.add_block(item.values)
                    continue
                counts[READ_TAG] += 1
                covered += item.lines
                if isinstance(item, parsing.Rejected):
                    counts[QUARANTINE_TAG] += 1
                    yield beam.pvalue.TaggedOutput(QUARANTINE_TAG, json.dumps(item.to_dict(), ensure_ascii=False))
                    continue
                counts[item.split] += 1
                one_by_one[item.split].append(_to_example(item.values))
                if len(one_by_one[item.split]) >= _ROW_BATCH:
                    writers[item.split].write(pa.array(one_by_one[item.split], pa.large_binary()))
                    one_by_one[item.split] = []
                if file_profile is not None:
                    file_profile.add_row(item.values)
            for name, examples in one_by_one.items():
                writers[name].write(pa.array(examples, pa.large_binary()))
            counts[PHYSICAL_TAG] = parsing.physical_rows(path)
            parsing.check_accounted(path, counts[PHYSICAL_TAG], covered)
        except BaseException:
            for writer in writers.values():
                writer.abort()
            raise
        for writer in writers.values():
            writer.close()
        if file_profile is not None:
            yield beam.pvalue.TaggedOutput(PROFILE_TAG, (path, file_profile.result()))
        yield beam.pvalue.TaggedOutput(COUNTS_TAG, dict(counts))


def _sum_counts(per_file) -> dict:
    total: collections.Counter = collections.Counter()
    for counts in per_file:
        total.update(counts)
    return dict(total)


def expand(pipeline: beam.Pipeline, files: Sequence[str], options: IngestOptions, examples_uri: str,
           quarantine_uri: str, counts_dir: str, profile_uri: str = "",
           file_spans: Optional[Mapping[str, int]] = None, temporary_dir: str = "") -> None:
    """Adds the ingestion to `pipeline`: Split-<name>/ gzip TFRecords (one shard per file; written first under
    temporary_dir, by default <examples_uri>/.incomplete), quarantine.jsonl, counts, and (with profile_uri) one
    profile-span-<N>.json per span of `file_spans` ({file: span})."""
    split_names = [name for name, _ in options.splits]
    plan = Shards(examples_uri, temporary_dir or os.path.join(examples_uri, ".incomplete"), len(files))
    outputs = (pipeline
               | "Files" >> beam.Create(list(enumerate(files)))
               | "Reshuffle" >> beam.Reshuffle()
               | "Parse" >> beam.ParDo(_ParseFile(options, plan, bool(profile_uri))).with_outputs(
                   QUARANTINE_TAG, COUNTS_TAG, PROFILE_TAG, *split_names))
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
         | "SpanOfFile" >> beam.MapTuple(lambda path, file_profile: (spans[path], file_profile))
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
