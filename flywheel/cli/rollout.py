"""`flywheel rollout start | status | promote | rollback | analyze | manifests`: arguments ->
`flywheel.api.rollout` -> text and exit status."""

from __future__ import annotations

from typing import Any

from flywheel.api.rollout import (
    AnalyzeResult,
    ManifestsResult,
    RolloutResult,
    rollout_analyze,
    rollout_manifests,
    rollout_promote,
    rollout_rollback,
    rollout_start,
    rollout_status,
)
from flywheel.cli import exits
from flywheel.cli.text import listing, show
from flywheel.rollout.state import RolloutState

ANALYZE_EXIT = {"promote": exits.OK, "rollback": exits.FAILED}  # otherwise (wait): exits.STOPPED


def rollout_lines(result: RolloutResult) -> list[str]:
    head = f"flywheel rollout {result.action}: {result.model} in {result.serving_dir}"
    if result.state is None:
        served = f"version {result.serving_version}" if result.serving_version is not None else "nothing"
        return [f"{head}: no rollout state; the newest version serves: {served}"]
    found = RolloutState.from_dict(result.state)
    lines = [f"{head}: {found.describe()} (generation {found.generation})",
             f"  served by default: version {result.serving_version}"
             + (f"; rolled back: {listing(found.rolled_back)}" if found.rolled_back else "")]
    for decision in found.decisions[-5:]:
        lines.append(f"  {decision.time}  {decision.action:<8} version {decision.version}"
                     + (f": {decision.reason}" if decision.reason else ""))
    if result.models_config:
        lines.append(f"  TF Serving config: {result.models_config}")
    if result.action != "status":
        lines.append(f"  ML-Metadata: execution {result.execution_id} in {result.metadata}"
                     + (f", linked to PushedModel {result.pushed_model_id}" if result.pushed_model_id else "")
                     if result.metadata else "  ML-Metadata: not recorded (no --metadata): state and models.config "
                                             "only")
    return lines


def manifests_lines(result: ManifestsResult) -> list[str]:
    return ([f"flywheel rollout manifests: {result.model} -> {result.output}"] + [f"  {f}" for f in result.files]
            + [f"  note: {n}" for n in result.notes])


def analyze_lines(result: AnalyzeResult) -> list[str]:
    if result.analysis is None:
        return [f"rollout analyze: {result.idle}"]
    done = {"promote": "applied: the candidate is now stable",
            "rollback": "applied: rolled back, the candidate no longer takes traffic",
            "wait": "applied: recorded, the rollout keeps running",
            None: "not applied (--dry-run)"}[result.applied]
    return result.analysis.lines() + [f"  {done}"]


def cmd_rollout(args: Any) -> int:
    where = {"serving_dir": args.serving_dir, "model": args.model}
    name = args.rollout_command
    if name == "analyze":
        analyzed = rollout_analyze(args.serving_dir, args.model, args.log_dir, labels=args.labels, config=args.config,
                                   report_dir=args.report_dir, apply=not args.dry_run, metadata=args.metadata,
                                   idle_ok=args.scheduled, wait_for_log=args.wait_for_log)
        show(args, analyzed, analyze_lines)
        if args.scheduled and (analyzed.decision is None or analyzed.applied is not None):
            return exits.OK
        return ANALYZE_EXIT.get(analyzed.decision, exits.STOPPED)
    if name == "manifests":
        show(args, rollout_manifests(args.serving_dir, args.output, args.model, storage_uri=args.storage_uri),
             manifests_lines)
        return exits.OK
    if name == "status":
        result = rollout_status(**where)
    elif name == "start":
        mode = "canary" if args.canary_percent is not None else "shadow" if args.shadow else "blue_green"
        result = rollout_start(**where, version=args.version, mode=mode, percent=args.canary_percent,
                               reason=args.reason, metadata=args.metadata)
    else:
        change = rollout_promote if name == "promote" else rollout_rollback
        result = change(**where, reason=args.reason, metadata=args.metadata)
    show(args, result, rollout_lines)
    return exits.OK
