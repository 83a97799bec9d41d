"""Rollout decisions in the pipeline's ML-Metadata store, where `flywheel lineage` reads them.

Each decision is an Execution of type `flywheel.Rollout` (properties: model, action, version, stable,
candidate, mode, percent, reason, evidence as JSON, time, generation), with an INPUT event from the PushedModel
artifact that published the decision's version when the store has it (a version pushed by another pipeline's
store has none: the execution is recorded without the link).
"""

from __future__ import annotations

import json
import os
from typing import Any, Optional

from flywheel.metadata import artifacts, connection, run_record
from flywheel.rollout import state

ROLLOUT_TYPE = "flywheel.Rollout"
_PROPERTIES = {"model": "STRING", "action": "STRING", "version": "INT", "stable": "INT", "candidate": "INT",
               "mode": "STRING", "percent": "DOUBLE", "reason": "STRING", "evidence": "STRING", "time": "STRING",
               "generation": "INT"}


def _type_id(store) -> int:
    # ML-Metadata: its protos and native library take a second to import; only commands given --metadata need them
    from ml_metadata.proto import metadata_store_pb2

    execution_type = metadata_store_pb2.ExecutionType(name=ROLLOUT_TYPE)
    for name, kind in _PROPERTIES.items():
        execution_type.properties[name] = getattr(metadata_store_pb2, kind)
    return store.put_execution_type(execution_type, can_add_fields=True)


def pushed_model(store, version: int):
    """The PushedModel artifact that published `version` (the first one, as lineage does), or None."""
    found = [a for a in store.get_artifacts_by_type(artifacts.PUSHED_MODEL_TYPE)
             if run_record.artifact_props(a).get(artifacts.PUSHED)
             and str(run_record.artifact_props(a).get(artifacts.PUSHED_VERSION)) == str(version)]
    return min(found, key=lambda a: a.id) if found else None


def record(metadata_path: str, rollout: state.RolloutState, decision: state.Decision) -> tuple[int, Optional[int]]:
    """Records one decision of `rollout`; returns (execution id, linked PushedModel artifact id or None).

    The store must exist (a pipeline run made it): a rollout never creates a SQLite store of its own. A MySQL/MariaDB
    location (`flywheel.metadata.connection`) is connected to as it is.
    """
    from ml_metadata.proto import metadata_store_pb2  # heavy (see _type_id)

    if connection.local_file(metadata_path) and not os.path.isfile(metadata_path):
        raise state.RolloutError(f"rollout: --metadata {metadata_path}: expected the ML-Metadata store of a "
                                 "pipeline run (metadata.sqlite), found no file")
    store = connection.open_store(metadata_path, writable=True)
    execution = metadata_store_pb2.Execution(type_id=_type_id(store),
                                             last_known_state=metadata_store_pb2.Execution.COMPLETE)
    values = {"model": rollout.model, "action": decision.action, "version": decision.version,
              "stable": rollout.stable, "candidate": rollout.candidate,
              "mode": rollout.mode or decision.evidence.get("mode"), "percent": rollout.percent,
              "reason": decision.reason, "evidence": json.dumps(decision.evidence, sort_keys=True, default=str),
              "time": decision.time, "generation": rollout.generation}
    for name, value in values.items():
        if value is None:
            continue
        kind = _PROPERTIES[name]
        field = {"STRING": "string_value", "INT": "int_value", "DOUBLE": "double_value"}[kind]
        setattr(execution.properties[name], field, value)
    artifact = pushed_model(store, decision.version)
    links = []
    if artifact is not None:
        event = metadata_store_pb2.Event(type=metadata_store_pb2.Event.INPUT)
        event.path.steps.add().key = "pushed_model"
        links.append((artifact, event))
    execution_id, _, _ = store.put_execution(execution, links, [])
    return execution_id, artifact.id if artifact is not None else None


def decisions(metadata_path: str, model: str) -> list[dict[str, Any]]:
    """Every recorded decision for `model`, oldest first, with the PushedModel it is linked to (uri, or None)."""
    store = connection.open_store(metadata_path)
    try:
        executions = store.get_executions_by_type(ROLLOUT_TYPE)
    except Exception as e:  # MLMD raises its own NotFoundError when no rollout was ever recorded in this store
        if type(e).__name__ != "NotFoundError":
            raise
        return []
    mine = [e for e in executions if e.properties["model"].string_value == model]
    events = store.get_events_by_execution_ids([e.id for e in mine]) if mine else []
    artifact_of = {e.execution_id: e.artifact_id for e in events}
    artifacts = {a.id: a for a in store.get_artifacts_by_id(sorted(set(artifact_of.values())))} if events else {}
    out = []
    for execution in sorted(mine, key=lambda e: e.id):
        props = execution.properties
        linked = artifacts.get(artifact_of.get(execution.id))
        out.append({"execution": execution.id, "time": props["time"].string_value,
                    "action": props["action"].string_value, "version": props["version"].int_value,
                    "stable": props["stable"].int_value,
                    "candidate": props["candidate"].int_value if "candidate" in props else None,
                    "mode": props["mode"].string_value if "mode" in props else None,
                    "percent": props["percent"].double_value, "reason": props["reason"].string_value,
                    "evidence": json.loads(props["evidence"].string_value or "{}"),
                    "pushed_model": linked.uri if linked is not None else None})
    return out
