"""The scheduled retraining job: the continuous-training decision, then (when it says so) the pipeline on the
newest spans, Evaluate against serving, Push if blessed, and the release of what was pushed."""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Optional, TextIO

from flywheel import lock, quiet
from flywheel.api.errors import UsageError, resolve_input, spans_argument
from flywheel.api.pipeline import RunResult, check_metadata, execute_run, pipeline_config
from flywheel.api.results import as_dict
from flywheel.pipelines import registry, stamp
from flywheel.pipelines.retrain import finish_release, prepare_release, summary_from_records
from flywheel.retraining import plan
from flywheel.rollout.state import RolloutError, parse_release


@dataclasses.dataclass(frozen=True)
class RetrainResult:
    """One pass of the scheduled job. drift_detected is None when there was no baseline (nothing in
    serving, or a model without a training profile): not drift, and the job trains. retrained is true
    only when the Trainer executed in this run (not a cache hit). status: nothing_new (serving was trained
    on exactly this data; nothing run), no_drift (with if_drift; nothing run) or the pipeline run's status.
    decision: the decision in words. model_version: the version served by default after the job (the stable one
    while a rollout releases the new one); pushed_version: the version Push published in this run (None: none).
    release: how a pushed version was released (direct, canary:P, shadow, blue-green); rollout: the model's
    rollout state after the job, in words (None: it has none)."""

    pipeline: str
    span: int
    window: tuple[int, ...]
    drift_detected: Optional[bool]
    drift_reason: str
    drift_report: Optional[str]
    retrained: bool
    blessed: Optional[bool]
    pushed: bool
    model_version: Optional[int]
    previous_version: Optional[int]
    status: str
    decision: str = ""
    pushed_version: Optional[int] = None
    release: str = "direct"
    rollout: Optional[str] = None
    run: Optional[RunResult] = dataclasses.field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        out = as_dict(self)
        out["window"] = list(self.window)
        return out


DRIFT_DIR = "drift"  # <output_dir>/drift/span-<N>/: the retraining job's drift decisions (drift.json, report.html)


def retrain(pipeline: str, data: str, output_dir: str = "flywheel_output", *, serving_dir: Optional[str] = None,
            metadata: Optional[str] = None, if_drift: bool = False, window: int = 3, train_steps: Optional[int] = None,
            release: str = "direct", progress: Optional[TextIO] = None, verbose: bool = False) -> RetrainResult:
    """The scheduled job: newest span of `data` -> the continuous-training decision -> (new data that drifted,
    no baseline, or new data without if_drift) the pipeline on the last `window` spans -> Evaluate against
    serving -> Push if blessed.

    The decision is `flywheel.retraining.plan`'s (the compiled Kubeflow pipeline's Decide task takes the
    same one), computed once before anything runs; the pipeline does not monitor again. Holds the output
    directory's lock throughout and invalidates `run`'s up-to-date stamp when it runs the pipeline.

    release: direct (the pushed version serves at once), or canary:P, shadow, blue-green: the pushed version
    becomes the candidate of a new rollout (`flywheel.rollout`), the version served now staying stable; the
    state is pinned before the pipeline runs (`flywheel.pipelines.retrain.prepare_release`), so Push never makes
    it served in between, and the decision is recorded in the run's ML-Metadata store.

    metadata: that store, a SQLite file or mysql://USER@HOST[:PORT]/DATABASE shared by the jobs of several machines
    (`flywheel.metadata.connection`; the password from the environment); None: <output_dir>/metadata.sqlite.
    """
    entry = registry.get(pipeline)
    if window < 1:
        raise UsageError(f"retrain: window: expected >= 1 span, got {window}")
    try:
        parse_release(release)
    except RolloutError as e:
        raise UsageError(f"retrain: {e}") from e
    spans_argument(data, "retrain: --data")
    quiet.quiet_environment(verbose)
    base = pipeline_config(pipeline, output_dir, data=data, serving_dir=serving_dir, metadata=metadata,
                           **({"train_steps": train_steps} if train_steps is not None else {}))
    os.makedirs(base.paths.output_dir, exist_ok=True)
    with lock.exclusive(base.paths.output_dir):
        try:
            decided = plan(data, base.paths.serving_dir, base.model_name, window, entry.schema_path(),
                           report_dir=os.path.join(base.paths.output_dir, DRIFT_DIR), if_drift=if_drift)
        except (ValueError, OSError) as e:
            raise UsageError(str(e)) from e
        drift = decided.drift_decision
        common = {"pipeline": pipeline, "span": decided.span, "window": tuple(decided.window),
                  "drift_detected": drift["drift_detected"], "drift_reason": drift["reason"],
                  "drift_report": drift["report"], "previous_version": decided.serving_version,
                  "decision": decided.reason}
        if not decided.retrain:
            return RetrainResult(**common, retrained=False, blessed=None, pushed=False,
                                 model_version=decided.serving_version, status=decided.verdict)
        check_metadata(base)
        try:
            pinned = prepare_release(base.paths.serving_dir, base.model_name, release)
        except (ValueError, OSError) as e:
            raise UsageError(str(e)) from e
        stamp.clear(base.paths.output_dir)
        cfg = dataclasses.replace(base, span=decided.span, num_spans=len(decided.window))
        resolved = resolve_input(data, decided.span, len(decided.window))
        run = execute_run(cfg, pipeline, "local", entry.runner("local"), resolved, progress, verbose)
        after = finish_release(base.paths.serving_dir, base.model_name, release,
                               run.pushed_version if run.pushed else None, pinned,
                               f"flywheel retrain: {decided.reason}", cfg.paths.metadata_path)
        summary = summary_from_records(run.records, decided.span, base.paths.serving_dir, base.model_name, drift)
    return RetrainResult(**{**common, **summary, "status": run.status, "run": run, "release": release,
                            "pushed_version": run.pushed_version if run.pushed else None,
                            "rollout": after.describe() if after is not None else None})
