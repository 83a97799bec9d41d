"""Batch inference as a Beam pipeline: a span's files -> typed rows -> tf.Examples -> RunInference -> Parquet.

    files ─► Reshuffle ─► ParseFile ─┬─► batches of typed rows + tf.Examples ─► RunInferenceOnKeyedBatches
                                     │        (tfx-bsl, the served version's examples signature) ─► ToTable
                                     │        ─► predictions/part-*.parquet (source_file, source_line, input
                                     │           columns, prediction, model_version)
                                     ├─► quarantine.jsonl (file, line, column, reason, raw: Ingest's records)
                                     └─► per-file counts ─┐
                     scored rows per file (from ToTable) ─┴─► checked: read == scored + quarantined ─► counts.json

Files are read with Ingest's own parser and typing (`flywheel/data/parsing.py`), so a row Ingest
would quarantine is quarantined here for the same reason, and each file's rows are checked against a
count made apart from the parser. Rows stream: a worker holds one batch of `batch_size` rows at a time,
never a file or a span. Parquet is written by Beam's parquetio, through Beam's filesystems (gs:// too).

The process that builds and launches the pipeline never imports TensorFlow (it holds about 0.4 GB once
loaded): the model handler is tfx-bsl's, made where the model is loaded (`_KeyedBatches`), and files are
checked through the filesystem layer's TensorFlow-free local plugin. With `--engine beam` only the two
workers load TensorFlow and the model.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import json
import logging
import os
import sys
import time
from typing import Any, List, Sequence, Tuple

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.ml.inference import base as inference
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions
from apache_beam.runners.portability.fn_api_runner import fn_runner
from apache_beam.transforms import environments
from tfx_bsl.coders import example_coder
from tfx_bsl.public.proto import model_spec_pb2

from flywheel import engines, storage
from flywheel.batch import model_version, rows, worker
from flywheel.data import parsing

QUARANTINE_FILE = "quarantine.jsonl"
COUNTS_FILE = "counts.json"
PREDICTIONS_DIR = "predictions"
READ, SCORED, QUARANTINED, PHYSICAL = "rows_in", "rows_scored", "rows_quarantined", "physical_rows"
_QUARANTINE_TAG, _COUNTS_TAG, _SCORED_TAG = "quarantine", "counts", "scored"
_ONE_SPLIT = (("all", 1),)  # Ingest's parser assigns a split; batch inference has one
# ((file, pyarrow.RecordBatch of the typed rows, their lines in the file), [serialized tf.Example]): RunInference
# types its output after its input's key.
_KEYED_BATCH = Tuple[Tuple[str, Any, List[int]], List[bytes]]


@dataclasses.dataclass(frozen=True)
class PredictOptions:
    """What to read and which model to score it with."""

    columns: tuple[parsing.Column, ...]
    model: model_version.ServedModel
    batch_size: int = 1024
    progress_every: int = 0  # > 0: a line on stderr every that many rows of a file, and when a file is done
    started: float = 0.0  # time.time() when the run started: progress lines give the time elapsed since


def _progress(options: PredictOptions, message: str) -> None:
    if options.progress_every > 0:
        elapsed = time.time() - options.started if options.started else 0.0
        print(f"predict: {message} ({elapsed:,.0f} s)", file=sys.stderr, flush=True)


class _ParseFile(beam.DoFn):
    """One file: bounded batches of typed rows (an Arrow record batch each) with their serialized tf.Examples,
    quarantine records, then the file's counts."""

    def __init__(self, options: PredictOptions):
        self._options = options
        self._encoder = None

    def setup(self):
        self._encoder = example_coder.RecordBatchToExamplesEncoder()

    def _emit(self, path: str, batch: rows.Batch):
        record_batch = batch.record_batch()
        return (path, record_batch, batch.lines), rows.to_examples(record_batch, self._encoder)

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
            batch.add(row.values, row.line)
            if len(batch) >= self._options.batch_size:
                yield self._emit(path, batch)
                batch = rows.Batch(columns)
            if self._options.progress_every > 0 and counts[READ] % self._options.progress_every == 0:
                _progress(self._options, f"{os.path.basename(path)}: {counts[READ]:,} rows read, "
                                         f"{counts[QUARANTINED]:,} quarantined")
        if len(batch):
            yield self._emit(path, batch)
        counts[PHYSICAL] = parsing.physical_rows(path)
        parsing.check_accounted(path, counts[PHYSICAL], covered)
        _progress(self._options, f"{os.path.basename(path)}: done, {counts[READ]:,} rows read, "
                                 f"{counts[QUARANTINED]:,} quarantined")
        yield beam.pvalue.TaggedOutput(_COUNTS_TAG, (path, dict(counts)))


class _ToTable(beam.DoFn):
    """A scored batch -> a pyarrow Table (source file and line, input columns, prediction, model_version); its
    size per file."""

    def __init__(self, options: PredictOptions):
        self._options = options
        self._schema = None

    def setup(self):
        self._schema = rows.arrow_schema(self._options.columns)

    def process(self, scored):
        (path, batch, lines), logs = scored
        predictions = rows.scores(logs, self._options.model.output)
        arrays = [pa.array([path] * len(lines), pa.string()), pa.array(lines, pa.int64()),
                  *batch.columns, pa.array(predictions, pa.float64()),
                  pa.array(np.full(len(predictions), self._options.model.version, dtype=np.int64))]
        yield pa.Table.from_batches([pa.RecordBatch.from_arrays(arrays, schema=self._schema)])
        yield beam.pvalue.TaggedOutput(_SCORED_TAG, (path, len(predictions)))


def _check_file(joined) -> dict:
    """One file's counts with its scored rows; PredictError naming the file when they do not add up."""
    path, grouped = joined
    (counts,) = grouped[_COUNTS_TAG]
    scored = sum(grouped[_SCORED_TAG])
    if counts[READ] != scored + counts[QUARANTINED]:
        raise model_version.PredictError(f"predict: {path}: {counts[READ]:,} rows read but {scored:,} scored + "
                                  f"{counts[QUARANTINED]:,} quarantined; rows were lost or counted twice "
                                  f"(please report this as a bug)")
    return {"file": path, READ: counts[READ], SCORED: scored, QUARANTINED: counts[QUARANTINED],
            PHYSICAL: counts[PHYSICAL]}


def _total(per_file) -> dict:
    files = sorted(per_file, key=lambda f: f["file"])
    return {**{key: sum(f[key] for f in files) for key in (READ, SCORED, QUARANTINED, PHYSICAL)}, "files": files}


class _KeyedBatches(inference.ModelHandler):
    """tfx-bsl's model handler for the version (`CreateModelHandler`: the SavedModel loader and PredictionLog
    post-processing BulkInferrer runs) on elements (key, batch of serialized tf.Examples), one model call per
    element. It is made where the model is loaded, so the launching process never imports TensorFlow; this is
    what tfx-bsl's `RunInferenceOnKeyedBatches` builds, which makes its handler (and imports TensorFlow)
    while the pipeline is being built."""

    def __init__(self, spec):
        super().__init__()
        self._spec = spec
        self._handler = None

    def _tfx_bsl(self):
        if self._handler is None:
            # tfx-bsl's handler imports TensorFlow (0.4 GB): only the workers that load the model import it
            from tfx_bsl.public.beam.run_inference import CreateModelHandler

            self._handler = CreateModelHandler(self._spec)
        return self._handler

    def load_model(self):
        return self._tfx_bsl().load_model()

    def run_inference(self, batch, model, inference_args=None):
        return [(key, list(self._tfx_bsl().run_inference(list(examples), model))) for key, examples in batch]

    def get_num_bytes(self, batch) -> int:
        return sum(len(example) for _, examples in batch for example in examples)

    def get_metrics_namespace(self) -> str:
        return "flywheel.predict"

    def batch_elements_kwargs(self):
        return {"min_batch_size": 1, "max_batch_size": 1}  # each element is already a batch of rows


def inference_spec(model: model_version.ServedModel):
    """tfx-bsl's endpoint for the version's examples signature, as BulkInferrer builds it (a protobuf message:
    no TensorFlow import)."""
    spec = model_spec_pb2.InferenceSpecType()
    spec.saved_model_spec.CopyFrom(model_spec_pb2.SavedModelSpec(
        model_path=model.path, tag=[model_version.SERVE_TAG], signature_name=[model.signature]))
    # Each element is already a batch of rows: one model call each, never several held together.
    spec.batch_parameters.min_batch_size = 1
    spec.batch_parameters.max_batch_size = 1
    return spec


def expand(pipeline: beam.Pipeline, files: Sequence[str], options: PredictOptions, output: str) -> None:
    """Adds batch inference to `pipeline`: `output`/predictions/part-*.parquet, quarantine.jsonl, counts.json."""
    parsed = (pipeline
              | "Files" >> beam.Create(list(files))
              | "Reshuffle" >> beam.Reshuffle()
              | "ParseFile" >> beam.ParDo(_ParseFile(options)).with_output_types(_KEYED_BATCH).with_outputs(
                  _QUARANTINE_TAG, _COUNTS_TAG, main="batches"))
    tables = (parsed.batches
              | "RunInference" >> inference.RunInference(_KeyedBatches(inference_spec(options.model)))
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
    the pipeline's components (`flywheel.engines`)."""
    if engine not in engines.BEAM_ARGS:
        raise ValueError(f"predict: unknown engine {engine!r}; engines: {', '.join(engines.BEAM_ARGS)}")
    return engines.BEAM_ARGS[engine]


def runner(pipeline_options):
    """The runner for these options: the one `--runner` names (Dask, Dataflow, ...) if not the DirectRunner; else
    Beam's DirectRunner, except in its multi-processing mode (`--engine beam`), where it is the FnApiRunner the
    DirectRunner would use, with the same number of worker processes, each started as `flywheel.batch.worker`
    (Beam's SDK worker without the packages scoring never uses) instead of Beam's `sdk_worker_main`. The
    FnApiRunner starts a worker command of its own only in its `in_memory` mode (the mode's name is then its only
    difference), so `pipeline_options` is switched to it."""
    named = pipeline_options.view_as(StandardOptions).runner
    if named and named != "DirectRunner":
        return named
    direct = pipeline_options.view_as(DirectOptions)
    if direct.direct_running_mode != "multi_processing":
        return "DirectRunner"
    direct.direct_running_mode = "in_memory"
    return fn_runner.FnApiRunner(
        default_environment=environments.SubprocessSDKEnvironment.from_command_string(worker.command()))


@contextlib.contextmanager
def _quiet_about_worker_mode(chosen):
    """With `runner`'s FnApiRunner, Beam warns that `in_memory` mode with several workers should be
    `multi_processing`: it is, in all but the name. Other warnings pass."""
    if chosen == "DirectRunner":
        yield
        return
    log = logging.getLogger(fn_runner.__name__)

    def keep(record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("If direct_num_workers is not equal to 1")

    log.addFilter(keep)
    try:
        yield
    finally:
        log.removeFilter(keep)


def check_output(output: str) -> None:
    """An output folder must be new or empty: shards of an earlier run would mix with this one's."""
    fs = storage.filesystem(output)
    if fs.exists(output) and (not fs.isdir(output) or fs.listdir(output)):
        raise model_version.PredictError(f"predict: output {output} already exists and is not an empty folder; "
                                  f"give a new folder (earlier predictions would mix with these)")


def read_counts(output: str) -> dict:
    """counts.json, checked again as a whole: rows in == scored + quarantined."""
    path = os.path.join(output, COUNTS_FILE)
    with storage.filesystem(path).open(path, "r") as f:
        counts = json.loads(f.read())
    if counts[READ] != counts[SCORED] + counts[QUARANTINED]:
        raise model_version.PredictError(f"predict: {path}: {counts[READ]:,} rows in but {counts[SCORED]:,} scored + "
                                  f"{counts[QUARANTINED]:,} quarantined")
    return counts


def run(files: Sequence[str], options: PredictOptions, output: str, args: Sequence[str] = ()) -> dict:
    """Scores `files` into `output`; returns counts.json's content. Files are checked (readable, header with
    the required columns) before any row is read."""
    check_output(output)
    parsing.check_files(files, options.columns)
    storage.filesystem(output).makedirs(output)
    options = dataclasses.replace(options, started=options.started or time.time())
    _progress(options, f"scoring {len(files)} file(s) with {options.model.name} version {options.model.version}")
    pipeline_options = PipelineOptions(list(args))
    chosen = runner(pipeline_options)
    with _quiet_about_worker_mode(chosen), beam.Pipeline(runner=chosen, options=pipeline_options) as pipeline:
        expand(pipeline, files, options, output)
    return read_counts(output)
