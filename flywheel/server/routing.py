"""Rollout routing: which loaded version answers a request, following `<serving_dir>/<model>/rollout.json`.

The registry (`models.ModelRegistry`) calls `follow(registry)` at the start of every poll:
- no rollout.json: it returns False and the registry keeps TF Serving's default policy (the newest version);
- a state: exactly `routes(state).load` is loaded (TF Serving's `specific` version policy: a version pushed
  meanwhile is not loaded until a rollout names it), each new version loaded and warmed up first; only when
  every version of the new routing is AVAILABLE does the registry switch to it (a `Router` and the state's
  `stable`/`canary` labels), so no request is ever routed to a version that is still loading. A version that
  leaves the routing is kept loaded one more poll (a request that chose it just before the switch still finds
  it), then unloaded; a request holding it finishes on the reference it holds.

`route(registry, model, version, label, key)` answers one predict request: an explicit `/versions/N` or
`/labels/L` request bypasses the split; a default request goes to stable, except the candidate's share
(canary: its percent; blue/green: all). The share is drawn per request, or, with a rollout key (the
`X-Rollout-Key` header), from a hash of the key, so one key always gets the same version under one state.
Shadow: stable answers, and `shadow.Shadow` sends the candidate a copy of the request after the answer is sent
(one background thread, a bounded queue, dropped and counted when full), logging its answer with role
`shadow`; it is never returned.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import random
from typing import Any, Callable, Optional

from flywheel.rollout import state, store
from flywheel.server.errors import NotFound
from flywheel.server.log_columns import CANARY, LABEL_ROUTE, SHADOW, STABLE, VERSION_ROUTE

logger = logging.getLogger(__name__)

ROLLOUT_KEY_HEADER = "X-Rollout-Key"
VERSION_HEADER = "X-Model-Version"
ROLES = (STABLE, CANARY, SHADOW)


def key_share(key: str) -> float:
    """A rollout key as a number in [0, 1): the first 8 bytes of sha256('rollout:' + key), as a fraction."""
    digest = hashlib.sha256(b"rollout:" + key.encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


@dataclasses.dataclass(frozen=True)
class Router:
    """The routing of one rollout state: stable answers by default, the candidate its `candidate_percent`
    (canary: P, blue/green: 100); with `mirror` (shadow) the candidate gets copies and never answers."""

    generation: int
    stable: int
    candidate: Optional[int] = None
    candidate_percent: float = 0.0
    mirror: bool = False
    labels: dict[str, int] = dataclasses.field(default_factory=dict)

    @classmethod
    def of(cls, rollout: state.RolloutState) -> "Router":
        """The router of a rollout state."""
        r = state.routes(rollout)
        return cls(rollout.generation, r.stable, r.candidate, r.candidate_percent, r.mirror, dict(r.labels))

    @property
    def versions(self) -> tuple[int, ...]:
        return (self.stable,) if self.candidate is None else (self.stable, self.candidate)

    def role(self, version: int) -> Optional[str]:
        """`stable` or `canary` for a version of a running rollout; None without one or for another version."""
        if self.candidate is None:
            return None
        return STABLE if version == self.stable else CANARY if version == self.candidate else None

    def choose(self, key: Optional[str] = None, draw: Callable[[], float] = random.random) -> tuple[int, Optional[int]]:
        """(the version that answers a default request, the version that gets a shadow copy or None)."""
        if self.candidate is None:
            return self.stable, None
        if self.mirror:
            return self.stable, self.candidate
        share = key_share(key) if key is not None else draw()
        return (self.candidate if share * 100.0 < self.candidate_percent else self.stable), None


@dataclasses.dataclass(frozen=True)
class Route:
    """One predict request's route: the servable that answers, its rollout role, and the shadow's servable."""

    servable: Any
    role: Optional[str] = None
    shadow: Any = None


def named(version: Optional[int], label: Optional[str]) -> Optional[str]:
    """`version` or `label` for a request that named one (`/versions/N`, `/labels/L`); None for the default route."""
    return VERSION_ROUTE if version is not None else LABEL_ROUTE if label is not None else None


def route(registry: Any, model: str, version: Optional[int], label: Optional[str], key: Optional[str]) -> Route:
    """The route of a predict request (TF Serving's NotFound / InvalidArgument as `registry.get` raises them)."""
    router = registry.router
    if router is None or model != registry.model:
        return Route(registry.get(model, version, label))
    if version is not None or label is not None:
        servable = registry.get(model, version, label)
        return Route(servable, router.role(servable.version))
    chosen, shadow = router.choose(key)
    servable = registry.get(model, chosen)
    copy = None
    if shadow is not None:
        try:
            copy = registry.get(model, shadow)
        except NotFound:  # the candidate left between the choice and now: no copy
            copy = None
    return Route(servable, router.role(chosen), copy)


# ---- following the state (the registry's poll) ---------------------------------------------------------------


def follow(registry: Any) -> bool:
    """One poll of a `models.ModelRegistry` under a rollout state; False (nothing done) when the model has no
    rollout.json. A damaged state raises RolloutError naming the file (at start the server refuses to start;
    later polls log it and keep the routing they have)."""
    rollout = store.load(registry.serving_dir, registry.model)
    if rollout is None:
        if registry.router is not None:
            logger.info("serve: %s: rollout state removed: the newest version serves by default", registry.model)
            registry.follow(None)
        return False
    wanted = state.routes(rollout).load
    before = registry.load_versions(wanted)
    loaded = set(registry.loaded_versions())
    current, grace = registry.router, set()
    if current is None or current.generation != rollout.generation:
        missing = [v for v in wanted if v not in loaded]
        if missing:
            logger.warning("serve: %s: rollout generation %d waits for version(s) %s to be AVAILABLE; %s keeps "
                           "serving", registry.model, rollout.generation, ", ".join(map(str, missing)),
                           "the newest version" if current is None else f"the routing of generation "
                                                                         f"{current.generation}")
        else:
            new = Router.of(rollout)
            grace = set(current.versions) if current is not None else set(before)
            registry.follow(new)
            logger.info("serve: %s: routing follows rollout generation %d (stable %d, %s)", registry.model,
                        rollout.generation, new.stable, "no candidate" if new.candidate is None
                        else f"candidate {new.candidate}, {rollout.mode}")
            current = new
    keep = set(wanted) | (set(current.versions) if current is not None else set())
    leaving = sorted(loaded - keep - grace)
    for version in leaving:
        registry.unload(version, f" (not in rollout generation {rollout.generation})")
    if leaving or loaded - before:
        registry.changed()
    return True
