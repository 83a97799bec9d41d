"""The retraining job's steps around a pipeline run: a rollout release pinned before it and started after it,
and the job's answer read from the run's ML-Metadata records.

The decision whether to retrain at all is `flywheel.retraining.plan`'s, taken before anything runs.
"""

from __future__ import annotations

from typing import Any, Optional

from flywheel.components.push.spec import PUSHED_MODEL_KEY
from flywheel.metadata import artifacts
from flywheel.rollout import mlmd, state, store
from flywheel.store import layout


def summary_from_records(records: dict, span: int, serving_dir: str, model_name: str,
                         drift: dict[str, Any]) -> dict[str, Any]:
    """The job's answer from a retraining run's ML-Metadata records and the plan's drift decision.

    retrained: the Trainer executed in this run (COMPLETE), not a cache hit; model_version: the version served by
    default after the run (`layout.current`: the stable one while a rollout releases the new one).
    """
    # TFX's keys (the Trainer's, and the blessing the Evaluate component writes as the stock Evaluator does):
    # importing TFX imports TensorFlow, which a job that finds nothing new never needs
    from tfx.components.evaluator.constants import ARTIFACT_PROPERTY_BLESSED_KEY
    from tfx.types.standard_component_specs import BLESSING_KEY, MODEL_KEY  # (TFX: see above)

    trainer = records.get("Trainer")
    retrained = bool(trainer and trainer.state == "COMPLETE" and trainer.output(MODEL_KEY))
    evaluate = records.get("Evaluate")
    blessing = evaluate.output(BLESSING_KEY) if evaluate else None
    push = records.get("Push")
    pushed = push.output(PUSHED_MODEL_KEY) if push else None
    served = layout.current(serving_dir, model_name)
    return {
        "span": span,
        "drift_detected": drift.get("drift_detected"),
        "drift_reason": drift.get("reason"),
        "drift_report": drift.get("report"),
        "retrained": retrained,
        "blessed": bool(blessing.get(ARTIFACT_PROPERTY_BLESSED_KEY)) if blessing else None,
        "pushed": bool(pushed.get(artifacts.PUSHED)) if pushed else False,
        "model_version": served.version if served else None,
    }


def prepare_release(serving_dir: str, model_name: str, release: str) -> Optional[state.RolloutState]:
    """Before the pipeline runs, so that Push never makes the new version served by default in between: with a
    rollout release (canary:P, shadow, blue-green), pins the version served now as stable in rollout.json.

    Returns the model's rollout state (None when it has none: a direct release, or nothing in serving yet).
    RolloutError when a rollout is already running (one at a time) or `release` is not a release.
    """
    mode, _ = state.parse_release(release)
    found = store.load(serving_dir, model_name)
    if found is not None and found.running:
        raise state.RolloutError(f"retrain --release {release}: a rollout of {model_name} is running "
                                 f"({found.describe()}): promote or roll it back before releasing another")
    return found if mode == state.DIRECT else store.pin(serving_dir, model_name)


def finish_release(serving_dir: str, model_name: str, release: str, pushed_version: Optional[int],
                   pinned: Optional[state.RolloutState], reason: str = "",
                   metadata_path: Optional[str] = None) -> Optional[state.RolloutState]:
    """After a run that pushed `pushed_version`: a rollout release starts a rollout with it as the candidate;
    a direct release with a rollout state makes it stable at once. Without a state before the run (`pinned`
    None: a direct release as today, or the first model, which has no stable to compare with) nothing is
    written and the newest version serves. With metadata_path, the decision is recorded in ML-Metadata."""
    mode, percent = state.parse_release(release)
    if pushed_version is None or pinned is None:
        return store.load(serving_dir, model_name)
    if mode == state.DIRECT:
        after = store.release(serving_dir, model_name, pushed_version, reason)
    else:
        after = store.start(serving_dir, model_name, pushed_version, mode, percent, reason)
    if metadata_path:
        mlmd.record(metadata_path, after, after.decisions[-1])
    return after
