"""The rollout state of a served model, pure: the `RolloutState` of `<serving_dir>/<model>/rollout.json`, its
transitions and what a server must do for it. No I/O here: `flywheel.rollout.store` reads and writes the file.

One file says which version is stable (served by default), which one is the candidate, how the candidate takes
traffic (canary share, shadow copies, blue/green switch) and every decision taken, with its evidence. This module
owns the file's format (`parse`, `serialize`); every reader goes through it, `layout.current` too. `rollout.json` is
not a numeric folder, so TF Serving and `layout.versions` pass over it; once it exists, `layout.current` (what
serves) is its stable version, not the newest folder.

A transition (`start`, `promote`, `rollback`, `record_analysis`, `pin`, `release`) takes the state before it (None:
no rollout.json yet) and returns the state after it, or raises RolloutError naming the rule it breaks. What it
needs from the serving folder (`Versions`) and the time (`at`) come in as arguments.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Optional

from flywheel import storage

SCHEMA_VERSION = 1
FILE_NAME = "rollout.json"
CANARY, SHADOW, BLUE_GREEN = "canary", "shadow", "blue_green"
MODES = (CANARY, SHADOW, BLUE_GREEN)
START, PROMOTE, ROLLBACK, ANALYZE = "start", "promote", "rollback", "analyze"
ACTIONS = (START, PROMOTE, ROLLBACK, ANALYZE)
DIRECT = "direct"


class RolloutError(ValueError):
    """A rollout command that breaks a rule (the message names the rule, what was expected and what was found)."""


def path(serving_dir: str, model: str) -> str:
    """Where a model's rollout state lives: `<serving_dir>/<model>/rollout.json`."""
    return os.path.join(serving_dir, model, FILE_NAME)


@dataclasses.dataclass(frozen=True)
class Decision:
    """One decision: when, what (start | promote | rollback | analyze), on which version, why, and the evidence."""

    time: str
    action: str
    version: int
    reason: str = ""
    evidence: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"time": self.time, "action": self.action, "version": self.version, "reason": self.reason,
                "evidence": dict(self.evidence)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Decision":
        if data.get("action") not in ACTIONS:
            raise RolloutError(f"rollout: decision action: expected one of {list(ACTIONS)}, got {data.get('action')!r}")
        return cls(time=str(data["time"]), action=data["action"], version=int(data["version"]),
                   reason=str(data.get("reason") or ""), evidence=dict(data.get("evidence") or {}))


@dataclasses.dataclass(frozen=True)
class RolloutState:
    """stable: the version served by default; candidate: the version being rolled out (None: no rollout runs);
    mode: canary | shadow | blue_green (None without a candidate); percent: the candidate's share of answered
    requests (canary: P, blue_green: 100, shadow: 0, its answers are never returned); rolled_back: versions
    that are never served by default again (their folders stay on disk); generation: how many times the file
    was written (a server polling it can tell a change)."""

    model: str
    stable: int
    candidate: Optional[int] = None
    mode: Optional[str] = None
    percent: float = 0.0
    started: Optional[str] = None
    generation: int = 0
    decisions: tuple[Decision, ...] = ()
    rolled_back: tuple[int, ...] = ()
    schema_version: int = SCHEMA_VERSION

    @property
    def running(self) -> bool:
        return self.candidate is not None

    def describe(self) -> str:
        """The rollout in words: 'canary 10% of version 7 against stable 5' or 'no rollout: stable 5'."""
        if not self.running:
            return f"no rollout: stable {self.stable}"
        how = {CANARY: f"canary {self.percent:g}%", SHADOW: "shadow", BLUE_GREEN: "blue/green"}[self.mode]
        return f"{how} of version {self.candidate} against stable {self.stable}, started {self.started}"

    def to_dict(self) -> dict[str, Any]:
        return {"schema_version": self.schema_version, "model": self.model, "stable": self.stable,
                "candidate": self.candidate, "mode": self.mode, "percent": self.percent, "started": self.started,
                "generation": self.generation, "decisions": [d.to_dict() for d in self.decisions],
                "rolled_back": list(self.rolled_back)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = FILE_NAME) -> "RolloutState":
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise RolloutError(f"rollout: {where}: schema_version: expected {SCHEMA_VERSION}, got {version!r}")
        try:
            state = cls(model=str(data["model"]), stable=int(data["stable"]),
                        candidate=None if data.get("candidate") is None else int(data["candidate"]),
                        mode=data.get("mode"), percent=float(data.get("percent") or 0.0),
                        started=data.get("started"), generation=int(data["generation"]),
                        decisions=tuple(Decision.from_dict(d) for d in data.get("decisions") or ()),
                        rolled_back=tuple(int(v) for v in data.get("rolled_back") or ()))
        except (KeyError, TypeError, ValueError) as e:
            if isinstance(e, RolloutError):
                raise RolloutError(f"{e} (in {where})") from e
            raise RolloutError(f"rollout: {where}: expected the rollout state's fields (model, stable, generation, "
                               f"...): {type(e).__name__}: {e}") from e
        if (state.mode is None) != (state.candidate is None) or (state.mode is not None and state.mode not in MODES):
            raise RolloutError(f"rollout: {where}: mode {state.mode!r} with candidate {state.candidate!r}: expected "
                               f"a mode in {list(MODES)} exactly when there is a candidate")
        return state


# ---- the file format ---------------------------------------------------------------------------------------------


def parse(text: str, where: str = FILE_NAME, model: Optional[str] = None) -> RolloutState:
    """rollout.json's text -> its state; RolloutError naming `where` when it is not JSON (truncated by a crash, or
    edited by hand), not an object, not a rollout state, or (given `model`) another model's state."""
    try:
        data = storage.json_object(text, where)
    except storage.JSONObjectError as e:
        raise RolloutError(f"rollout: {e}") from e
    state = RolloutState.from_dict(data, where)
    if model is not None and state.model != model:
        raise RolloutError(f"rollout: {where}: model: expected {model!r}, got {state.model!r}")
    return state


def serialize(state: RolloutState) -> str:
    """A state as rollout.json's text."""
    return json.dumps(state.to_dict(), indent=2) + "\n"


# ---- what a server does ------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Routes:
    """What a server must do for a state: load `load`, answer by default with `stable` except for the candidate's
    `candidate_percent` share of requests; with `mirror`, send the candidate a copy of every request and never
    return its answer. labels: TF Serving's version labels (stable, and canary while a candidate runs)."""

    stable: int
    candidate: Optional[int]
    mode: Optional[str]
    candidate_percent: float
    mirror: bool
    load: tuple[int, ...]
    labels: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def routes(state: RolloutState) -> Routes:
    if not state.running:
        return Routes(state.stable, None, None, 0.0, False, (state.stable,), {"stable": state.stable})
    return Routes(state.stable, state.candidate, state.mode, 0.0 if state.mode == SHADOW else state.percent,
                  state.mode == SHADOW, (state.stable, state.candidate),
                  {"stable": state.stable, "canary": state.candidate})


# ---- the transitions ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Versions:
    """A model's versions in the serving folder, as the transitions that choose a version need them.

    folder: `<serving_dir>/<model>`; served: the version served without a rollout state (the newest complete one
    with a readable push.json; None: nothing in serving); complete: every complete version, oldest first;
    complete_file: the file that makes a version complete (named in errors)."""

    folder: str
    served: Optional[int]
    complete: tuple[int, ...]
    complete_file: str


def check_mode(mode: str, percent: Optional[float]) -> float:
    """The candidate's share for a mode: canary needs 0 < percent < 100; shadow and blue_green take none."""
    if mode not in MODES:
        raise RolloutError(f"rollout: mode: expected one of {list(MODES)}, got {mode!r}")
    if mode == CANARY:
        if percent is None or not 0.0 < float(percent) < 100.0:
            raise RolloutError(f"rollout: canary percent: expected a number in (0, 100), got {percent!r}")
        return float(percent)
    if percent is not None:
        raise RolloutError(f"rollout: {mode} takes no percent (it sends the candidate "
                           f"{'a copy of every request' if mode == SHADOW else 'all requests'}), got {percent!r}")
    return 0.0 if mode == SHADOW else 100.0


def _check_version(versions: Versions, version: int) -> None:
    if version not in versions.complete:
        raise RolloutError(f"rollout: version {version}: expected a complete version in {versions.folder} "
                           f"({versions.complete_file}); complete versions: {list(versions.complete)}")


def _served_now(versions: Versions) -> int:
    if versions.served is None:
        raise RolloutError(f"rollout: no model in serving under {versions.folder}: a rollout needs a stable "
                           "version to compare the candidate with (push one first)")
    return versions.served


def _running(state: Optional[RolloutState], model: str, action: str) -> RolloutState:
    if state is None or not state.running:
        now = "no rollout state" if state is None else state.describe()
        raise RolloutError(f"rollout: {model}: cannot {action}: expected a running rollout, found {now} "
                           "(start one with `flywheel rollout start`)")
    return state


def start(state: Optional[RolloutState], model: str, version: int, mode: str, percent: Optional[float], *,
          versions: Versions, at: str, reason: str = "", evidence: Optional[dict[str, Any]] = None) -> RolloutState:
    """`version` becomes the candidate, taking traffic as `mode` says. The first start (no state) pins the version
    served now (the newest) as stable. One rollout at a time."""
    share = check_mode(mode, percent)
    version = int(version)
    if state is not None and state.running:
        raise RolloutError(f"rollout: {model}: a rollout is already running ({state.describe()}): promote or "
                           "roll it back before starting another")
    stable = state.stable if state is not None else _served_now(versions)
    _check_version(versions, version)
    if version == stable:
        raise RolloutError(f"rollout: candidate version {version}: expected a version other than the stable "
                           f"one, got the stable version {stable}")
    decision = Decision(at, START, version, reason, dict(evidence or {}, mode=mode, percent=share, stable=stable))
    base = state if state is not None else RolloutState(model=model, stable=stable)
    return dataclasses.replace(base, candidate=version, mode=mode, percent=share, started=at,
                               decisions=base.decisions + (decision,))


def promote(state: Optional[RolloutState], model: str, *, at: str, reason: str = "",
            evidence: Optional[dict[str, Any]] = None) -> RolloutState:
    """The candidate becomes stable; no rollout runs afterwards."""
    state = _running(state, model, PROMOTE)
    decision = Decision(at, PROMOTE, state.candidate, reason,
                        dict(evidence or {}, previous_stable=state.stable, mode=state.mode))
    return dataclasses.replace(state, stable=state.candidate, candidate=None, mode=None, percent=0.0, started=None,
                               decisions=state.decisions + (decision,),
                               rolled_back=tuple(v for v in state.rolled_back if v != state.candidate))


def rollback(state: Optional[RolloutState], model: str, *, at: str, reason: str = "",
             evidence: Optional[dict[str, Any]] = None) -> RolloutState:
    """The candidate stops taking traffic and is recorded in rolled_back (its folder stays, never served by
    default again); stable is unchanged."""
    state = _running(state, model, ROLLBACK)
    decision = Decision(at, ROLLBACK, state.candidate, reason, dict(evidence or {}, stable=state.stable,
                                                                    mode=state.mode))
    return dataclasses.replace(state, candidate=None, mode=None, percent=0.0, started=None,
                               decisions=state.decisions + (decision,),
                               rolled_back=tuple(sorted(set(state.rolled_back) | {state.candidate})))


def record_analysis(state: Optional[RolloutState], model: str, *, at: str, reason: str,
                    evidence: dict[str, Any]) -> RolloutState:
    """An `analyze` decision (an analysis that kept the rollout waiting) appended to the running rollout."""
    state = _running(state, model, ANALYZE)
    return dataclasses.replace(state, decisions=state.decisions + (
        Decision(at, ANALYZE, state.candidate, reason, dict(evidence)),))


def pin(state: Optional[RolloutState], model: str, *, versions: Versions) -> RolloutState:
    """A state pinning the version served now as stable (no decision is recorded), or the state there is."""
    return state if state is not None else RolloutState(model=model, stable=_served_now(versions))


def release(state: Optional[RolloutState], model: str, version: int, *, versions: Versions, at: str,
            reason: str = "", evidence: Optional[dict[str, Any]] = None) -> RolloutState:
    """A direct release: `version` becomes stable at once (a `promote` decision). Refused while a rollout runs."""
    version = int(version)
    if state is not None and state.running:
        raise RolloutError(f"rollout: {model}: cannot release version {version} directly while a rollout is "
                           f"running ({state.describe()}): promote or roll it back first")
    _check_version(versions, version)
    base = state if state is not None else RolloutState(model=model, stable=version)
    decision = Decision(at, PROMOTE, version, reason or "direct release",
                        dict(evidence or {}, previous_stable=base.stable, mode=DIRECT))
    return dataclasses.replace(base, stable=version, decisions=base.decisions + (decision,),
                               rolled_back=tuple(v for v in base.rolled_back if v != version))


def parse_release(text: str) -> tuple[str, Optional[float]]:
    """`--release`: 'canary:P', 'shadow', 'blue-green' or 'direct' -> (mode, percent); mode 'direct' is today's
    behaviour (the pushed version serves at once)."""
    name, _, value = text.partition(":")
    name = name.strip().replace("-", "_")
    if name == CANARY:
        try:
            percent = float(value)
        except ValueError:
            raise RolloutError(f"--release {text}: expected canary:P with P a number in (0, 100)") from None
        check_mode(CANARY, percent)
        return CANARY, percent
    if name in (SHADOW, BLUE_GREEN, DIRECT) and not value:
        return name, None
    raise RolloutError(f"--release: expected canary:P, shadow, blue-green or direct, got {text!r}")
