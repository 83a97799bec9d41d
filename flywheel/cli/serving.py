"""`flywheel serve | status`: arguments -> `flywheel.api.serving` -> the server's events, or text, and exit
status."""

from __future__ import annotations

import sys
from typing import Any

from flywheel.api.errors import UsageError
from flywheel.api.serving import StatusResult, serve, status
from flywheel.cli import exits
from flywheel.cli.text import listing, show
from flywheel.server.connections import ConnectionLimits
from flywheel.server.models import LoadRetries


def status_lines(result: StatusResult) -> list[str]:
    served = f"version {result.serving_version} serves by default" if result.serving_version is not None else \
        "no complete version: nothing serves"
    out = [f"flywheel status: {result.model} in {result.serving_dir}: {served}; "
           f"{result.rollout['state'] if result.rollout else 'no rollout state'}"]
    for v in result.versions:
        out.append(f"  version {v['version']}" + (f": {v['role']}" if v["role"] else ""))
        if "manifest" in v:
            out.append(f"    {v['manifest']}")
            continue
        auc = f"AUC {v['auc']:.4f}" if isinstance(v.get("auc"), (int, float)) else "AUC not recorded"
        spans = f"spans {listing(v['spans'])}" if v.get("spans") is not None else "spans not recorded"
        out.append(f"    pushed {v.get('pushed_at') or 'at an unrecorded time'}, {auc}, trained on {spans}")
        out.append(f"    evaluation report: {v.get('evaluation_report') or 'none recorded (or no longer there)'}")
        out.append(f"    baseline profile: {v.get('baseline_profile') or 'none'}")
    if result.rollout and result.rollout.get("last_decision"):
        d = result.rollout["last_decision"]
        out.append(f"  last rollout decision: {d['action']} version {d['version']} at {d['time']}"
                   + (f": {d['reason']}" if d.get("reason") else ""))
    if result.server:
        if "error" in result.server:
            out.append(f"  server {result.server['url']}: {result.server['error']}")
        else:
            states = "; ".join(f"version {v['version']} {v['state']}" + (f" ({v['error']})" if v["error"] else "")
                               for v in result.server["versions"])
            out.append(f"  server {result.server['url']}: {states or 'no versions'}")
    return out


def cmd_serve(args: Any) -> int:
    try:
        limits = ConnectionLimits(args.max_connections, args.keep_alive_timeout, args.read_timeout,
                                  args.max_header_bytes)
        load_retries = LoadRetries(args.max_load_retries, args.load_retry_interval)
    except ValueError as e:
        raise UsageError(str(e)) from None
    serve(args.serving_dir, args.model, args.host, args.port, max_batch_size=args.max_batch_size,
          batch_timeout_ms=args.batch_timeout_ms, log_dir=args.log_dir, log_sample=args.log_sample,
          log_max_pending_mb=args.log_max_pending_mb, rollout_key_header=args.rollout_key_header, limits=limits,
          verbose=args.verbose, events=sys.stderr, load_retries=load_retries)
    return exits.OK


def cmd_status(args: Any) -> int:
    show(args, status(args.serving_dir, args.model, url=args.url), status_lines)
    return exits.OK
