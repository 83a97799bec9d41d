"""`flywheel replay | logs join`: arguments -> `flywheel.api.traffic` -> text and exit status."""

from __future__ import annotations

from typing import Any

from flywheel.api.traffic import JoinResult, ReplayResult, logs_join, replay
from flywheel.cli import exits
from flywheel.cli.text import counts, listing, show


def replay_lines(result: ReplayResult) -> list[str]:
    latency = ", ".join(f"{k} {v:.1f}" for k, v in result.latency_ms.items())
    return [f"flywheel replay: {result.requests_sent:,} requests ({result.rows_sent:,} rows) to {result.url} in "
            f"{result.elapsed_s:.1f} s, {result.achieved_rate:,.1f} requests/s: {result.ok:,} ok, {result.failed:,} "
            f"failed (by status {counts(result.by_status, ': ')}); latency ms {latency}; {result.rows_skipped:,} of "
            f"{result.rows_read:,} rows "
            "skipped" + (f" (first: {result.first_skipped[0]})" if result.first_skipped else "")]


def join_lines(result: JoinResult) -> list[str]:
    on = repr(result.key) if result.log_key == result.key else f"labels' {result.key!r} = log's {result.log_key!r}"
    return [f"flywheel logs join: {result.joined_rows:,} of {result.log_rows:,} logged rows joined by {on} "
            f"into {result.output} (spans {listing(sorted(s for s, v in result.spans.items() if v['joined']))}); "
            f"{result.skipped_logs:,} logged rows no client was answered with (failed, shadow) left out, "
            f"{result.unmatched_logs:,} logged rows without a label, {result.unmatched_labels:,} labels without a "
            f"logged row, duplicates: {result.duplicate_logs:,} logged, {result.duplicate_labels:,} labels "
            f"({result.conflicting_labels:,} conflicting)"]


def cmd_replay(args: Any) -> int:
    features = tuple(f for f in (args.features or "").split(",") if f) or None
    result = replay(args.pipeline, args.data, args.url, rate=args.rate, id_column=args.id_column, batch=args.batch,
                    concurrency=args.concurrency, features=features, wait_s=args.wait)
    show(args, result, replay_lines)
    return exits.FAILED if result.failed else exits.OK


def cmd_logs(args: Any) -> int:
    result = logs_join(args.logs, args.labels, args.key, args.output, pipeline=args.pipeline,
                       label_column=args.label_column, log_key=args.log_key, span=args.span)
    show(args, result, join_lines)
    return exits.OK
