"""`flywheel predict`: arguments -> `flywheel.api.batch` -> text and exit status."""

from __future__ import annotations

from typing import Any

from flywheel.api.batch import PredictResult, predict
from flywheel.cli import exits
from flywheel.cli.text import err, listing, show

PREDICT_PROGRESS_ROWS = 100_000  # flywheel predict: a progress line per file every that many rows


def predict_lines(result: PredictResult) -> list[str]:
    return [f"flywheel predict: {result.rows_in:,} rows in, {result.rows_scored:,} scored, "
            f"{result.rows_quarantined:,} quarantined ({result.quarantine_path}); model {result.model_name} version "
            f"{result.model_version} (signature {result.signature}); spans {listing(result.spans)}, {result.files} "
            f"file(s), {result.elapsed:.1f} s",
            f"  predictions: {result.predictions}/part-*.parquet (source_file and source_line key each row"
            + (f"; {result.id_column} carried" if result.id_column else "") + ")",
            f"  counts: {result.counts_path}"]


def cmd_predict(args: Any) -> int:
    result = predict(args.pipeline, args.data, args.serving_dir, args.output,
                     span=None if args.span == -1 else args.span, version=args.version, engine=args.engine,
                     progress_every=0 if args.json or args.quiet else PREDICT_PROGRESS_ROWS, verbose=args.verbose,
                     id_column=args.id_column, beam_pipeline_args=args.beam_pipeline_args)
    if result.error:  # a refused file: the one line on stderr, no summary of rows never scored (--json: the result)
        if args.json:
            show(args, result, predict_lines)
        err(result.error)
        return exits.FAILED
    show(args, result, predict_lines)
    return exits.OK
