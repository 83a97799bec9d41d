"""Batch inference: a span scored with the served model through Beam. Importing this module imports Beam."""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import time
from typing import Any, Optional

from flywheel import quiet
from flywheel.api.errors import UsageError, creatable, resolve_input
from flywheel.api.results import as_dict
from flywheel.batch import model_version
from flywheel.batch.errors import data_error
from flywheel.batch.predict import (
    COUNTS_FILE,
    PHYSICAL,
    PREDICTIONS_DIR,
    QUARANTINE_FILE,
    QUARANTINED,
    READ,
    SCORED,
    PredictOptions,
    beam_args,
    check_output,
    run,
)
from flywheel.batch.rows import serving_columns, with_id_column
from flywheel.data.parsing import load_schema
from flywheel.pipelines import registry


@dataclasses.dataclass(frozen=True)
class PredictResult:
    """A batch inference: which model version scored which rows, where the predictions and the quarantine
    are, and the counts (rows_in == rows_scored + rows_quarantined, checked per file). error is set when a
    file was refused or rows did not add up (the counts are then those known before the failure: zero)."""

    pipeline: str
    engine: str
    model_name: str
    model_version: int
    model_path: str
    signature: str
    spans: list[int]
    files: int
    output: str
    predictions: str
    quarantine_path: str
    counts_path: str
    id_column: Optional[str] = None
    rows_in: int = 0
    rows_scored: int = 0
    rows_quarantined: int = 0
    physical_rows: int = 0
    elapsed: float = 0.0
    error: Optional[str] = None

    def to_dict(self) -> dict[str, Any]:
        return as_dict(self)


def predict(pipeline: str, data: str, serving_dir: str, output: str, span: Optional[int] = None,
            version: Optional[int] = None, engine: str = "local", *, batch_size: int = 1024,
            progress_every: int = 0, verbose: bool = False, id_column: Optional[str] = None,
            beam_pipeline_args: tuple[str, ...] = ()) -> PredictResult:
    """Scores a span (`data`: file, folder or folder of span-N folders; latest span unless `span`) with the
    served model (the version serving now unless `version`: the rollout's stable one, else the latest) through
    Beam: Parquet under `output`/predictions/ with `source_file` and `source_line` (where each row was read),
    the input columns (and `id_column`, required in every row, when given), `prediction` and `model_version`;
    bad rows in `output`/quarantine.jsonl; counts.json.

    `progress_every` > 0: a progress line on stderr every that many rows of a file, and per file and stage.
    `beam_pipeline_args` follow the engine's and may name another runner, e.g.
    `--runner=flywheel.dask_runner.DaskRunner --dask_client_address=HOST:PORT` (docs/distributed.md).
    UsageError for bad arguments (engine, data location, unknown model or version, a non-empty output)."""
    entry = registry.get(pipeline)
    quiet.quiet_environment(verbose)
    try:
        args = beam_args(engine) + tuple(beam_pipeline_args)
    except ValueError as e:
        raise UsageError(str(e)) from e
    if batch_size < 1:
        raise UsageError(f"predict: batch_size: expected >= 1, got {batch_size}")
    resolved = resolve_input(data, -1 if span is None else span, 1, "predict: --data")
    out = output if "://" in output else os.path.abspath(output)
    model_name = entry.make_config(paths=entry.make_paths(out, data, serving_dir)).model_name
    try:
        model = model_version.resolve(serving_dir, model_name, version, apart=engine == "beam")
        columns = with_id_column(serving_columns(load_schema(entry.schema_path())), id_column)
        check_output(out)
        creatable(out, "predict: --output")
    except (ValueError, OSError) as e:
        raise UsageError(str(e)) from e
    if engine == "local":  # quiet.install imports TensorFlow; the beam engine's launcher never does
        quiet.install(verbose, sys.stderr)
    elif not verbose:  # the workers' log records, relayed by the runner
        logging.getLogger("apache_beam").setLevel(logging.ERROR)
    options = PredictOptions(columns=columns, model=model, batch_size=batch_size, progress_every=progress_every)
    common = {"pipeline": pipeline, "engine": engine, "model_name": model.name, "model_version": model.version,
              "model_path": model.path, "signature": model.signature, "spans": list(resolved.spans),
              "files": len(resolved.files), "output": out, "id_column": id_column,
              "predictions": os.path.join(out, PREDICTIONS_DIR),
              "quarantine_path": os.path.join(out, QUARANTINE_FILE), "counts_path": os.path.join(out, COUNTS_FILE)}
    started = time.monotonic()
    try:
        counts = run(resolved.files, options, out, args)
    except Exception as e:  # a data error comes back from a Beam worker wrapped: reported in one line, else raised
        message = data_error(e)
        if message is None:
            raise
        return PredictResult(**common, elapsed=round(time.monotonic() - started, 1),
                             error=f"predict: {message.removeprefix('ingest: ')}")
    return PredictResult(**common, rows_in=counts[READ], rows_scored=counts[SCORED],
                         rows_quarantined=counts[QUARANTINED], physical_rows=counts[PHYSICAL],
                         elapsed=round(time.monotonic() - started, 1))
