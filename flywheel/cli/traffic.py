"""`flywheel replay | logs join`: arguments -> `flywheel.api.traffic` -> text and exit status."""

from __future__ import annotations

import os
from typing import Any

from flywheel.api.traffic import JoinResult, ReplayResult, logs_join, replay
from flywheel.cli import exits
from flywheel.cli.text import counts, err, listing, show


def replay_lines(result: ReplayResult) -> list[str]:
    latency = ", ".join(f"{k} {v:.1f}" for k, v in result.latency_ms.items())
    return [f"flywheel replay: {result.requests_sent:,} requests ({result.rows_sent:,} rows) to {result.url} in "
            f"{result.elapsed_s:.1f} s, {result.achieved_rate:,.1f} requests/s: {result.ok:,} ok, {result.failed:,} "
            f"failed (by status {counts(result.by_status, ': ')}); latency ms {latency}; {result.rows_skipped:,} of "
            f"{result.rows_read:,} rows "
            "skipped" + (f" (first: {result.first_skipped[0]})" if result.first_skipped else "")]


def written_into(result: JoinResult) -> str:
    """The span folders the join wrote, `tour/spans/span-4`, and the log's spans they came from when --span
    renumbered them (`from the log's span 20795`)."""
    written = {s: os.path.basename(os.path.dirname(v["path"])) for s, v in sorted(result.spans.items())
               if v.get("path")}
    if not written:
        return f"nothing written into {result.output}"
    folders = list(dict.fromkeys(written.values()))
    renumbered = any(folder != f"span-{s}" for s, folder in written.items())
    return (f"into {', '.join(os.path.join(result.output, f) for f in folders)}"
            + (f" (from the log's span {listing(list(written))})" if renumbered else ""))


def join_lines(result: JoinResult) -> list[str]:
    on = repr(result.key) if result.log_key == result.key else f"labels' {result.key!r} = log's {result.log_key!r}"
    return [f"flywheel logs join: {result.joined_rows:,} of {result.log_rows:,} logged rows joined by {on} "
            f"{written_into(result)}; "
            f"{result.skipped_logs:,} logged rows left out because no client got their answer (failed requests, "
            "shadow copies), "
            f"{result.unmatched_logs:,} logged rows without a label, {result.unmatched_labels:,} labels without a "
            f"logged row, duplicates: {result.duplicate_logs:,} logged, {result.duplicate_labels:,} labels "
            f"({result.conflicting_labels:,} conflicting)"]


def cmd_replay(args: Any) -> int:
    features = tuple(f for f in (args.features or "").split(",") if f) or None
    result = replay(args.pipeline, args.data, args.url, rate=args.rate, id_column=args.id_column, batch=args.batch,
                    concurrency=args.concurrency, features=features, wait_s=args.wait)
    show(args, result, replay_lines)
    return exits.FAILED if result.failed else exits.OK


def fresh_log_warning(result: JoinResult) -> str:
    """The one line saying the join may have missed the server's last requests (empty when the log had settled)."""
    if not result.log_maybe_incomplete:
        return ""
    fresh = result.log_freshness
    return (f"logs join: warning: the request log's newest row was {fresh['age_s']:,.1f} s old and flywheel serve "
            f"writes its log every {fresh['flush_interval_s']:g} s, so requests it answered last may not be joined: "
            "stop the server first (it writes its log as it stops), or join with --wait-for-log 60")


def cmd_logs(args: Any) -> int:
    result = logs_join(args.logs, args.labels, args.key, args.output, pipeline=args.pipeline,
                       label_column=args.label_column, log_key=args.log_key, span=args.span,
                       wait_for_log=args.wait_for_log)
    show(args, result, join_lines)
    if fresh_log_warning(result):
        err(fresh_log_warning(result))
    return exits.OK
