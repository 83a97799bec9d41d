"""The rollout state on disk: the only reader and writer of `<serving_dir>/<model>/rollout.json` (its format and
transitions: `flywheel.rollout.state`) and of its TF Serving mirror `<serving_dir>/models.config`.

A change takes two locks, the model's and then the serving folder's (`publish.serving_lock`: Push holds the
model's, so a Push and a rollout command never interleave), reads the state, applies a transition, writes the
state and then the mirror, and only then lets go. Every writer of a state holds the serving folder's lock while it
writes both, so two models' rollouts changed at once leave `models.config` matching both states. Each write
increments `generation`, so a server polling the file can tell a change.

Writes are atomic (`storage.write_whole`): locally a temporary file, fsynced and renamed over the old one; on
object storage (gs://, s3://) a single object write, which readers see whole or not at all. Object storage has
no lock: there, writes are not serialized.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import os
from typing import Any, Callable, Iterator, Optional

from flywheel import storage
from flywheel.rollout import models_config, state
from flywheel.store import layout, publish


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def load(serving_dir: str, model: str) -> Optional[state.RolloutState]:
    """The model's rollout state, or None when it has none (the newest version serves)."""
    path = state.path(serving_dir, model)
    if not storage.filesystem(path).exists(path):
        return None
    try:
        text = storage.read_text(path)
    except Exception as e:  # each filesystem raises its own not-found and I/O errors; re-raised, named
        raise state.RolloutError(f"rollout: cannot read {path}: {type(e).__name__}: {e}") from e
    return state.parse(text, path, model)


def _models(serving_dir: str) -> list[str]:
    """Model folders that hold a version or a rollout state, sorted."""
    return sorted(name for name in storage.listdir(serving_dir)
                  if layout.numeric_folders(serving_dir, name) or storage.exists(state.path(serving_dir, name)))


def _base_path(serving_dir: str, model: str) -> str:
    root = os.path.join(serving_dir, model)
    return os.path.abspath(root) if storage.is_local(root) else root


def models_config_text(serving_dir: str) -> str:
    """TF Serving's model config for every model under serving_dir, each with its rollout state (if any)."""
    return models_config.render([models_config.Model(name, _base_path(serving_dir, name), load(serving_dir, name))
                                 for name in _models(serving_dir)])


@contextlib.contextmanager
def _locked(serving_dir: str, model: str) -> Iterator[None]:
    """The model's lock (Push holds it while it publishes), then the serving folder's (models.config's writers)."""
    with publish.serving_lock(os.path.join(serving_dir, model)), publish.serving_lock(serving_dir):
        yield


def _update(serving_dir: str, model: str,
            change: Callable[[Optional[state.RolloutState]], state.RolloutState]) -> state.RolloutState:
    """Lock, read, change, write the state, then mirror every model's state into models.config, under the locks."""
    with _locked(serving_dir, model):
        before = load(serving_dir, model)
        after = dataclasses.replace(change(before), generation=(before.generation if before else 0) + 1)
        storage.write_whole(os.path.join(serving_dir, model), state.FILE_NAME,
                            state.serialize(after).encode("utf-8"))
        storage.write_whole(serving_dir, models_config.FILE_NAME, models_config_text(serving_dir).encode("utf-8"))
    return after


def _versions(serving_dir: str, model: str) -> state.Versions:
    served = layout.latest(serving_dir, model)
    return state.Versions(folder=f"{serving_dir}/{model}", served=served.version if served else None,
                             complete=tuple(layout.versions(serving_dir, model)),
                             complete_file=layout.SAVED_MODEL_FILE)


def start(serving_dir: str, model: str, version: int, mode: str, percent: Optional[float] = None, reason: str = "",
          evidence: Optional[dict[str, Any]] = None) -> state.RolloutState:
    """Starts rolling out `version` as the candidate (`state.start`)."""
    state.check_mode(mode, percent)  # refused before any lock is taken
    return _update(serving_dir, model, lambda before: state.start(
        before, model, version, mode, percent, versions=_versions(serving_dir, model), at=_now(), reason=reason,
        evidence=evidence))


def promote(serving_dir: str, model: str, reason: str = "", evidence: Optional[dict[str, Any]] = None
            ) -> state.RolloutState:
    """The candidate becomes stable (`state.promote`)."""
    return _update(serving_dir, model, lambda before: state.promote(before, model, at=_now(), reason=reason,
                                                                    evidence=evidence))


def rollback(serving_dir: str, model: str, reason: str = "", evidence: Optional[dict[str, Any]] = None
             ) -> state.RolloutState:
    """The candidate stops taking traffic (`state.rollback`)."""
    return _update(serving_dir, model, lambda before: state.rollback(before, model, at=_now(), reason=reason,
                                                                     evidence=evidence))


def record_analysis(serving_dir: str, model: str, reason: str, evidence: dict[str, Any]) -> state.RolloutState:
    """Appends an `analyze` decision to the running rollout (`state.record_analysis`)."""
    return _update(serving_dir, model, lambda before: state.record_analysis(before, model, at=_now(),
                                                                            reason=reason, evidence=evidence))


def apply_decision(serving_dir: str, model: str, decision: str, reason: str, evidence: dict[str, Any]
                   ) -> state.RolloutState:
    """An analysis's decision carried out: promote, rollback, or (wait) an `analyze` decision recorded while the
    rollout keeps running; the reason and the evidence go into the decision."""
    change = {state.PROMOTE: promote, state.ROLLBACK: rollback}.get(decision, record_analysis)
    return change(serving_dir, model, reason, evidence)


def pin(serving_dir: str, model: str) -> Optional[state.RolloutState]:
    """Makes sure a rollout state exists, pinning the version served now as stable (no decision is recorded):
    from then on a newly pushed version is not served by default until a rollout promotes it. None when
    nothing is in serving (there is nothing to pin: the first model is released directly)."""
    existing = load(serving_dir, model)
    if existing is not None:
        return existing
    if layout.latest(serving_dir, model) is None:
        return None
    return _update(serving_dir, model, lambda before: state.pin(before, model, versions=_versions(serving_dir, model)))


def release(serving_dir: str, model: str, version: int, reason: str = "",
            evidence: Optional[dict[str, Any]] = None) -> state.RolloutState:
    """A direct release with a rollout state: `version` becomes stable at once (`state.release`)."""
    return _update(serving_dir, model, lambda before: state.release(
        before, model, version, versions=_versions(serving_dir, model), at=_now(), reason=reason, evidence=evidence))
