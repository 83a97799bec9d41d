"""What produced a model in serving, from ML-Metadata: data -> validation -> training -> evaluation -> push."""

from __future__ import annotations

import datetime
from typing import Any, Optional

from flywheel.components.common import serving
from flywheel.pipelines import run_record


def _time(ms: int) -> str:
    return datetime.datetime.fromtimestamp(ms / 1000).isoformat(timespec="seconds") if ms else "?"


def _node(store, execution) -> str:
    ctx = [c for c in store.get_contexts_by_execution(execution.id) if c.type == "node"]
    return ctx[0].name.split(".", 1)[-1] if ctx else execution.type


def trace(metadata_path: str, model_uri: str) -> list[dict[str, Any]]:
    """The executions upstream and downstream of the model artifact at model_uri, in time order."""
    from ml_metadata.proto import metadata_store_pb2

    store = run_record.open_store(metadata_path)
    models = [a for a in store.get_artifacts_by_uri(model_uri)]
    if not models:
        raise LookupError(f"lineage: no artifact with uri {model_uri} in {metadata_path}")
    inputs = (metadata_store_pb2.Event.INPUT,)
    outputs = (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)
    seen: dict[int, Any] = {}

    def producers(artifact_ids):
        events = [e for e in store.get_events_by_artifact_ids(artifact_ids) if e.type in outputs]
        return store.get_executions_by_id({e.execution_id for e in events})

    def upstream(artifact_ids):
        for execution in producers(artifact_ids):
            if execution.id in seen:
                continue
            seen[execution.id] = execution
            ins = [e.artifact_id for e in store.get_events_by_execution_ids([execution.id]) if e.type in inputs]
            if ins:
                upstream(ins)

    model_ids = [m.id for m in models]
    upstream(model_ids)
    examples_ids = [e.artifact_id for ex in list(seen.values()) if _node(store, ex) == "Ingest"
                    for e in store.get_events_by_execution_ids([ex.id]) if e.type in outputs]
    for start in (model_ids, examples_ids):
        consumers = [e.execution_id for e in store.get_events_by_artifact_ids(start) if e.type in inputs]
        frontier = list(store.get_executions_by_id(set(consumers)))
        while frontier:
            execution = frontier.pop()
            if execution.id in seen:
                continue
            seen[execution.id] = execution
            outs = [e.artifact_id for e in store.get_events_by_execution_ids([execution.id]) if e.type in outputs]
            nxt = [e.execution_id for e in store.get_events_by_artifact_ids(outs) if e.type in inputs]
            frontier.extend(x for x in store.get_executions_by_id(set(nxt)) if _node(store, x) != "Trainer")
    steps = []
    for execution in sorted(seen.values(), key=lambda e: (e.create_time_since_epoch, e.id)):
        outs = [e.artifact_id for e in store.get_events_by_execution_ids([execution.id]) if e.type in outputs]
        arts = store.get_artifacts_by_id(outs)
        steps.append({"node": _node(store, execution), "execution": execution.id,
                      "state": metadata_store_pb2.Execution.State.Name(execution.last_known_state),
                      "time": _time(execution.create_time_since_epoch),
                      "outputs": [{"uri": a.uri, **run_record.artifact_props(a)} for a in arts]})
    return steps


_SHOW = ("spans", "data_fingerprint", "rows_read", "rows_quarantined", "passed", "drift_detected", "auc",
         "blessed", "pushed", "pushed_version")


def describe(metadata_path: str, serving_dir: str, model_name: str, version: Optional[str]) -> dict[str, Any]:
    if version in (None, "latest"):
        served = serving.latest(serving_dir, model_name)
        if served is None:
            raise LookupError(f"lineage: no model in serving under {serving_dir}/{model_name}")
    else:
        import os

        path = os.path.join(serving_dir, model_name, str(version))
        if not os.path.exists(os.path.join(path, serving.MANIFEST_FILE)):
            raise LookupError(f"lineage: no version {version} under {serving_dir}/{model_name}; "
                              f"versions: {serving.versions(serving_dir, model_name)}")
        served = serving.ServedVersion(int(version), path, serving.read_manifest(os.path.join(path,
                                                                                              serving.MANIFEST_FILE)))
    steps = trace(metadata_path, served.manifest["model_uri"])
    return {"model_name": model_name, "version": served.version, "path": served.path,
            "pushed_at": served.manifest.get("pushed_at"), "spans": served.manifest.get("spans"),
            "data_fingerprint": served.manifest.get("data_fingerprint"), "steps": steps}


def render(lineage: dict[str, Any]) -> str:
    lines = [f"model {lineage['model_name']} version {lineage['version']} ({lineage['path']}), pushed "
             f"{lineage['pushed_at']}; trained on spans {lineage['spans']}, data {lineage['data_fingerprint'][:12]}"]
    for step in lineage["steps"]:
        facts = {k: v for o in step["outputs"] for k, v in o.items() if k in _SHOW}
        shown = ", ".join(f"{k}={v}" for k, v in facts.items())
        lines.append(f"  {step['time']}  {step['node']:<17} {step['state']:<9} {shown}")
    return "\n".join(lines)
