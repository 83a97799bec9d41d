"""`flywheel retrain`: arguments -> `flywheel.api.retraining` -> text and exit status."""

from __future__ import annotations

from typing import Any

from flywheel.api.retraining import RetrainResult, retrain
from flywheel.cli import exits
from flywheel.cli.pipeline import RUN_EXIT, report_run
from flywheel.cli.text import listing, progress, show
from flywheel.retraining import NO_DRIFT, NOTHING_NEW

RETRAIN_EXIT = {**RUN_EXIT, NO_DRIFT: exits.OK, NOTHING_NEW: exits.OK}


def retrain_lines(result: RetrainResult) -> list[str]:
    drift = {None: "no baseline", True: "DRIFT", False: "no drift"}[result.drift_detected]
    head = f"flywheel retrain {result.pipeline}: span {result.span}, window of spans {listing(result.window)}: "
    if result.status == NOTHING_NEW:
        return [head + result.decision, f"  nothing to do: serving keeps version {result.model_version}"]
    verdict = result.drift_reason if result.drift_detected is None else f"{drift} ({result.drift_reason})"
    lines = [head + verdict
             + (f"; report {result.drift_report}" if result.drift_report else "")]
    if result.status == NO_DRIFT:
        lines.append(f"  nothing to do: serving keeps version {result.model_version}")
        return lines
    pushed = f" (version {result.pushed_version})" if result.pushed_version is not None else ""
    lines.append(f"  retrained: {result.retrained}, blessed: {result.blessed}, pushed: {result.pushed}{pushed}; "
                 f"serving version {result.model_version} (before: {result.previous_version}); run {result.status}")
    if result.rollout:
        lines.append(f"  release {result.release}: {result.rollout}")
    return lines


def cmd_retrain(args: Any) -> int:
    result = retrain(args.pipeline, args.data, args.output_dir, serving_dir=args.serving_dir, metadata=args.metadata,
                     if_drift=args.if_drift, window=args.window, train_steps=args.train_steps, release=args.release,
                     progress=progress(args), verbose=args.verbose)
    show(args, result, retrain_lines)
    if result.run is not None:
        report_run(result.run)
    return RETRAIN_EXIT[result.status]
