"""What serves now: a model's versions in a serving folder with their rollout roles, what Push recorded of each
(when, the AUC, the spans, the evaluation report, the baseline profile), the rollout and, from a running server,
its own model status. Read only; nothing is written.
"""

from __future__ import annotations

import os
from typing import Any, Optional

from flywheel import storage
from flywheel.rollout import state, store
from flywheel.store import layout
from flywheel.traffic import replay

EVALUATION_REPORT = "report.html"  # the Evaluate artifact's HTML report, in the folder push.json names


def _existing(path: Optional[str]) -> Optional[str]:
    return path if path and storage.filesystem(path).exists(path) else None


def _role(version: int, found: Optional[state.RolloutState], default: Optional[int]) -> str:
    if found is None:
        return "serves by default (the newest version)" if version == default else ""
    if version == found.stable:
        return "stable, serves by default"
    if version == found.candidate:
        return {state.CANARY: f"canary, {found.percent:g}% of requests",
                state.SHADOW: "shadow candidate, sees copies of requests",
                state.BLUE_GREEN: "blue/green candidate, answers every request"}[found.mode]
    if version in found.rolled_back:
        return "rolled back, never served by default again"
    return ""


def version_record(serving_dir: str, model: str, version: int, role: str) -> dict[str, Any]:
    """One version: its folder, role, and what its push.json recorded (an unreadable one is named, not fatal)."""
    path = layout.version_path(serving_dir, model, version)
    record: dict[str, Any] = {"version": version, "path": path, "role": role}
    manifest_path = os.path.join(path, layout.MANIFEST_FILE)
    if not storage.filesystem(manifest_path).exists(manifest_path):
        record["manifest"] = f"no {layout.MANIFEST_FILE}: not published by flywheel's Push"
        return record
    try:
        manifest = layout.read_manifest(manifest_path)
    except layout.ManifestError as e:
        record["manifest"] = str(e)
        return record
    metrics = manifest.get("metrics") if isinstance(manifest.get("metrics"), dict) else {}
    evaluation = manifest.get("evaluation_uri")
    profile = manifest.get("baseline_profile")
    record.update(
        pushed_at=manifest.get("pushed_at"), auc=metrics.get("auc"), spans=manifest.get("spans"),
        blessed=(manifest.get("blessing") or {}).get("blessed"),
        evaluation_report=_existing(os.path.join(evaluation, EVALUATION_REPORT)) if evaluation else None,
        baseline_profile=_existing(os.path.join(path, profile)) if profile else None)
    return record


def describe(serving_dir: str, model: str) -> dict[str, Any]:
    """The model's versions (oldest first) with roles and records, the version served by default, the rollout."""
    found = store.load(serving_dir, model)
    served = layout.current(serving_dir, model)
    default = served.version if served else None
    versions = [version_record(serving_dir, model, v, _role(v, found, default))
                for v in layout.versions(serving_dir, model)]
    rollout = None
    if found is not None:
        last = found.decisions[-1] if found.decisions else None
        rollout = {"state": found.describe(), "running": found.running, "generation": found.generation,
                   "last_decision": last.to_dict() if last else None}
        if last is not None:
            rollout["last_decision"].pop("evidence", None)
    return {"model": model, "serving_dir": serving_dir, "serving_version": default, "versions": versions,
            "rollout": rollout}


def server_status(url: str, timeout: float = 5.0) -> dict[str, Any]:
    """A running server's own model status (TF Serving's `GET /v1/models/<model>`), or why there is none."""
    import httpx  # httpx: only asking a running server needs it

    try:
        answer = httpx.get(url, timeout=timeout)
    except httpx.HTTPError as e:
        return {"url": url, "error": f"no answer: {replay.no_answer(e)}"}
    try:
        body = answer.json()
    except ValueError:
        body = {}
    if answer.is_error or not isinstance(body, dict) or "model_version_status" not in body:
        error = body.get("error") if isinstance(body, dict) else None
        return {"url": url, "error": f"answered {answer.status_code}" + (f": {error}" if error else "")
                                     + ("" if answer.is_error else ", without model_version_status")}
    try:
        versions = [{"version": int(v.get("version", -1)), "state": v.get("state"),
                     "error": (v.get("status") or {}).get("error_message") or None}
                    for v in body["model_version_status"]]
    except (AttributeError, TypeError, ValueError):
        return {"url": url, "error": f"answered {answer.status_code} with a model_version_status that is not TF "
                                     "Serving's (a list of objects with a numeric version)"}
    return {"url": url, "versions": versions}
