"""Batch inference as a Beam pipeline: a span's files -> typed rows -> tf.Examples -> RunInference -> Parquet.

    files ─► Reshuffle ─► ParseFile ─┬─► batches of typed rows + tf.Examples ─► RunInferenceOnKeyedBatches
                                     │        (tfx-bsl, the served version's examples signature) ─► ToTable
                                     │        ─► predictions/part-*.parquet (input columns, prediction, model_version)
                                     ├─► quarantine.jsonl (file, line, column, reason, raw: Ingest's records)
                                     └─► per-file counts ─┐
                     scored rows per file (from ToTable) ─┴─► checked: read == scored + quarantined ─► counts.json

Files are read with Ingest's own parser and typing (`components/ingest/parsing.py`), so a row Ingest
would quarantine is quarantined here for the same reason, and each file's rows are checked against a
count made apart from the parser. Rows stream: a worker holds one batch of `batch_size` rows at a time,
never a file or a span. Parquet is written by Beam's parquetio, through Beam's filesystems (gs:// too).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
from typing import Any, List, Sequence, Tuple

import apache_beam as beam

from flywheel.batch import rows, served
from flywheel.components.ingest import parsing

QUARANTINE_FILE = "quarantine.jsonl"
COUNTS_FILE = "counts.json"
PREDICTIONS_DIR = "predictions"
READ, SCORED, QUARANTINED, PHYSICAL = "rows_in", "rows_scored", "rows_quarantined", "physical_rows"
_QUARANTINE_TAG, _COUNTS_TAG, _SCORED_TAG = "quarantine", "counts", "scored"
_ONE_SPLIT = (("all", 1),)  # Ingest's parser assigns a split; batch inference has one
# ((file, pyarrow.RecordBatch of the typed rows), [serialized tf.Example]): RunInference types its output after
# its input's key.
_KEYED_BATCH = Tuple[Tuple[str, Any], List[bytes]]


@dataclasses.dataclass(frozen=True)
class PredictOptions:
    """What to read and which model to score it with."""

    columns: tuple[parsing.Column, ...]
    model: served.ServedModel
    batch_size: int = 1024


class _ParseFile(beam.DoFn):
    """One file: bounded batches of typed rows (an Arrow record batch each) with their serialized tf.Examples,
    quarantine records, then the file's counts."""

    def __init__(self, options: PredictOptions):
        self._options = options
        self._encoder = None

    def setup(self):
        from tfx_bsl.coders import example_coder

        self._encoder = example_coder.RecordBatchToExamplesEncoder()

    def _emit(self, path: str, batch: rows.Batch):
        record_batch = batch.record_batch()
        return (path, record_batch), rows.to_examples(record_batch, self._encoder)

    def process(self, path: str):
        columns = self._options.columns
        batch = rows.Batch(columns)
        counts = collections.Counter({READ: 0, QUARANTINED: 0})
        covered = 0
        for row in parsing.file_rows(path, columns, (), _ONE_SPLIT):
            counts[READ] += 1
            covered += row.lines
            if isinstance(row, parsing.Parsed) and (problem := rows.utf8_problem(row.values, columns)):
                # Only a Parquet BINARY column can hold such bytes (CSV rows are UTF-8 checked): its line is its row.
                row = parsing.Rejected(path, counts[READ], problem[0], problem[1], repr(row.values))
            if isinstance(row, parsing.Rejected):
                counts[QUARANTINED] += 1
                yield beam.pvalue.TaggedOutput(_QUARANTINE_TAG, json.dumps(row.to_dict(), ensure_ascii=False))
                continue
            batch.add(row.values)
            if len(batch) >= self._options.batch_size:
                yield self._emit(path, batch)
                batch = rows.Batch(columns)
        if len(batch):
            yield self._emit(path, batch)
        counts[PHYSICAL] = parsing.physical_rows(path)
        parsing.check_accounted(path, counts[PHYSICAL], covered)
        yield beam.pvalue.TaggedOutput(_COUNTS_TAG, (path, dict(counts)))


class _ToTable(beam.DoFn):
    """A scored batch -> a pyarrow Table (input columns + prediction + model_version); its size per file."""

    def __init__(self, options: PredictOptions):
        self._options = options
        self._schema = None

    def setup(self):
        self._schema = rows.arrow_schema(self._options.columns)

    def process(self, scored):
        import numpy as np
        import pyarrow as pa

        (path, batch), logs = scored
        predictions = rows.scores(logs, self._options.model.output)
        arrays = [*batch.columns, pa.array(predictions, pa.float64()),
                  pa.array(np.full(len(predictions), self._options.model.version, dtype=np.int64))]
        yield pa.Table.from_batches([pa.RecordBatch.from_arrays(arrays, schema=self._schema)])
        yield beam.pvalue.TaggedOutput(_SCORED_TAG, (path, len(predictions)))


def _check_file(joined) -> dict:
    """One file's counts with its scored rows; PredictError naming the file when they do not add up."""
    path, grouped = joined
    (counts,) = grouped[_COUNTS_TAG]
    scored = sum(grouped[_SCORED_TAG])
    if counts[READ] != scored + counts[QUARANTINED]:
        raise served.PredictError(f"predict: {path}: {counts[READ]:,} rows read but {scored:,} scored + "
                                  f"{counts[QUARANTINED]:,} quarantined; rows were lost or counted twice "
                                  f"(please report this as a bug)")
    return {"file": path, READ: counts[READ], SCORED: scored, QUARANTINED: counts[QUARANTINED],
            PHYSICAL: counts[PHYSICAL]}


def _total(per_file) -> dict:
    files = sorted(per_file, key=lambda f: f["file"])
    return {**{key: sum(f[key] for f in files) for key in (READ, SCORED, QUARANTINED, PHYSICAL)}, "files": files}


def inference_spec(model: served.ServedModel):
    """tfx-bsl's endpoint for the version's examples signature, as BulkInferrer builds it."""
    from tfx_bsl.public.proto import model_spec_pb2

    spec = model_spec_pb2.InferenceSpecType()
    spec.saved_model_spec.CopyFrom(model_spec_pb2.SavedModelSpec(
        model_path=model.path, tag=[served.SERVE_TAG], signature_name=[model.signature]))
    # Each element is already a batch of rows: one model call each, never several held together.
    spec.batch_parameters.min_batch_size = 1
    spec.batch_parameters.max_batch_size = 1
    return spec


def expand(pipeline: beam.Pipeline, files: Sequence[str], options: PredictOptions, output: str) -> None:
    """Adds batch inference to `pipeline`: `output`/predictions/part-*.parquet, quarantine.jsonl, counts.json."""
    from tfx_bsl.public.beam import run_inference

    parsed = (pipeline
              | "Files" >> beam.Create(list(files))
              | "Reshuffle" >> beam.Reshuffle()
              | "ParseFile" >> beam.ParDo(_ParseFile(options)).with_output_types(_KEYED_BATCH).with_outputs(
                  _QUARANTINE_TAG, _COUNTS_TAG, main="batches"))
    tables = (parsed.batches
              | "RunInference" >> run_inference.RunInferenceOnKeyedBatches(inference_spec(options.model))
              | "ToTable" >> beam.ParDo(_ToTable(options)).with_outputs(_SCORED_TAG, main="tables"))
    (tables.tables
     | "WriteParquet" >> beam.io.WriteToParquetBatched(
         os.path.join(output, PREDICTIONS_DIR, "part"), rows.arrow_schema(options.columns), codec="snappy",
         file_name_suffix=".parquet"))
    (parsed[_QUARANTINE_TAG]
     | "WriteQuarantine" >> beam.io.WriteToText(os.path.join(output, QUARANTINE_FILE), shard_name_template=""))
    scored = tables[_SCORED_TAG] | "ScoredPerFile" >> beam.CombinePerKey(sum)
    ({_COUNTS_TAG: parsed[_COUNTS_TAG], _SCORED_TAG: scored}
     | "JoinCounts" >> beam.CoGroupByKey()
     | "CheckFile" >> beam.Map(_check_file)
     | "AllFiles" >> beam.combiners.ToList()  # one small dict per file, not per row
     | "Total" >> beam.Map(_total)
     | "FormatCounts" >> beam.Map(lambda total: json.dumps(total, indent=2))
     | "WriteCounts" >> beam.io.WriteToText(os.path.join(output, COUNTS_FILE), shard_name_template=""))


def beam_args(engine: str) -> tuple[str, ...]:
    """`local`: the DirectRunner in this process; `beam`: its multi-processing mode, as the Beam runner runs
    the pipeline's components (`pipelines/taxi/beam_runner.py`)."""
    from flywheel.pipelines.taxi import beam_runner

    if engine == "local":
        return ("--direct_running_mode=in_memory", "--direct_num_workers=1")
    if engine == "beam":
        return tuple(beam_runner.DEFAULT_BEAM_ARGS)
    raise ValueError(f"predict: unknown engine {engine!r}; engines: local, beam")


def check_output(output: str) -> None:
    """An output folder must be new or empty: shards of an earlier run would mix with this one's."""
    from tfx.dsl.io import fileio

    if fileio.exists(output) and (not fileio.isdir(output) or fileio.listdir(output)):
        raise served.PredictError(f"predict: output {output} already exists and is not an empty folder; "
                                  f"give a new folder (earlier predictions would mix with these)")


def read_counts(output: str) -> dict:
    """counts.json, checked again as a whole: rows in == scored + quarantined."""
    from tfx.dsl.io import fileio

    path = os.path.join(output, COUNTS_FILE)
    with fileio.open(path, "r") as f:
        counts = json.loads(f.read())
    if counts[READ] != counts[SCORED] + counts[QUARANTINED]:
        raise served.PredictError(f"predict: {path}: {counts[READ]:,} rows in but {counts[SCORED]:,} scored + "
                                  f"{counts[QUARANTINED]:,} quarantined")
    return counts


def run(files: Sequence[str], options: PredictOptions, output: str, args: Sequence[str] = ()) -> dict:
    """Scores `files` into `output`; returns counts.json's content. Files are checked (readable, header with
    the required columns) before any row is read."""
    from apache_beam.options.pipeline_options import PipelineOptions
    from tfx.dsl.io import fileio

    check_output(output)
    parsing.check_files(files, options.columns)
    fileio.makedirs(output)
    with beam.Pipeline(runner="DirectRunner", options=PipelineOptions(list(args))) as pipeline:
        expand(pipeline, files, options, output)
    return read_counts(output)
