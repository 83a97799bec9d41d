"""`flywheel ingest`: arguments -> `flywheel.api.ingestion.ingest` -> text and exit status."""

from __future__ import annotations

from typing import Any

from flywheel.api.ingestion import IngestResult, ingest
from flywheel.cli import exits
from flywheel.cli.text import counts, err, show


def ingest_lines(result: IngestResult) -> list[str]:
    return [f"flywheel ingest: {result.physical_rows:,} physical rows, {result.rows_read:,} rows read, "
            f"written {sum(result.rows_written.values()):,} ({counts(result.rows_written)}), "
            f"{result.rows_quarantined:,} quarantined ({result.quarantine_path}); span {result.span}, "
            f"fingerprint {result.fingerprint[:12]}; examples in {result.examples_path}"]


def cmd_ingest(args: Any) -> int:
    result = ingest(args.data, args.schema, args.output_dir, span=args.span, num_spans=args.num_spans,
                    quarantine_limit=args.quarantine_limit,
                    split_key=tuple(c for c in args.split_key.split(",") if c), verbose=args.verbose,
                    beam_pipeline_args=args.beam_pipeline_args)
    if result.error:  # a refused file: the one line on stderr, no summary of rows never read (--json: the result)
        if args.json:
            show(args, result, ingest_lines)
        err(result.error)
        return exits.FAILED
    show(args, result, ingest_lines)
    return exits.OK
