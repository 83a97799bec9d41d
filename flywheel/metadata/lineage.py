"""What produced a model in serving, from ML-Metadata: data -> validation -> training -> evaluation -> push, and the
rollout decisions (`flywheel.rollout.mlmd`) that say which version served when and why."""

from __future__ import annotations

import datetime
import os
from typing import Any, Optional

from flywheel.metadata import artifacts, run_record
from flywheel.rollout import mlmd
from flywheel.store import layout


def _time(ms: int) -> str:
    return datetime.datetime.fromtimestamp(ms / 1000).isoformat(timespec="seconds") if ms else "?"


# Enough hops for Push <- model <- Trainer <- Transform <- examples <- Ingest <- schema <- ImportSchemaGen and the
# gate (Cond makes DataGate's verdict an input of every guarded node), with room for longer pipelines.
MAX_HOPS = 40


def _is_output(event) -> bool:
    from ml_metadata.proto import metadata_store_pb2  # ML-Metadata: only the commands that read a store need it

    return event.type in (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)


def push_execution(store, served: layout.ServedVersion):
    """The Push execution that published this version: the first producer of the PushedModel artifact naming it.

    Later runs with nothing new replay that execution from the cache, producing the same artifact again.
    """
    pushed = [a for a in store.get_artifacts_by_type(artifacts.PUSHED_MODEL_TYPE)
              if run_record.artifact_props(a).get(artifacts.PUSHED)
              and (str(run_record.artifact_props(a).get(artifacts.PUSHED_VERSION)) == str(served.version)
                   or run_record.artifact_props(a).get(artifacts.PUSHED_DESTINATION) == served.path)]
    events = [e for e in store.get_events_by_artifact_ids([a.id for a in pushed]) if _is_output(e)]
    executions = store.get_executions_by_id({e.execution_id for e in events})
    if not executions:
        raise LookupError(f"lineage: no Push execution in the metadata store published version {served.version} "
                          f"({served.path})")
    return min(executions, key=lambda e: (e.create_time_since_epoch, e.id))


def upstream(store, execution_id: int):
    """The lineage subgraph upstream of one execution (its executions, artifacts, events, contexts), from MLMD."""
    from ml_metadata.proto import metadata_store_pb2  # ML-Metadata: only the commands that read a store need it

    options = metadata_store_pb2.LineageSubgraphQueryOptions(
        starting_executions=metadata_store_pb2.LineageSubgraphQueryOptions.StartingNodes(
            filter_query=f"id = {int(execution_id)}"),
        max_num_hops=MAX_HOPS, direction=metadata_store_pb2.LineageSubgraphQueryOptions.UPSTREAM)
    return store.get_lineage_subgraph(options, ["executions", "artifacts", "events", "contexts", "associations"])


def _output_key(event) -> str:
    """The output channel an event wrote (e.g. 'examples', 'profile')."""
    return event.path.steps[0].key if event.path.steps else ""


def trace(metadata_path: str, served: layout.ServedVersion) -> list[dict[str, Any]]:
    """The executions that produced a served version, one per pipeline node, in time order, up to its Push.

    Everything upstream of the Push that published it, as ML-Metadata's lineage subgraph gives it; a node
    whose output was also replayed from the cache (in this run or a later one) is shown by the execution that
    really produced it, and nothing after the Push is included.
    """
    from ml_metadata.proto import metadata_store_pb2  # ML-Metadata: only the commands that read a store need it

    store = run_record.open_store(metadata_path)
    push = push_execution(store, served)
    graph = upstream(store, push.id)
    node_of_context = {c.id: c.name.split(".", 1)[-1] for c in graph.contexts if c.type == "node"}
    node_of = {a.execution_id: node_of_context[a.context_id] for a in graph.associations
               if a.context_id in node_of_context}
    cutoff = (push.create_time_since_epoch, push.id)
    chosen: dict[str, Any] = {}
    for execution in sorted(graph.executions, key=lambda e: (e.create_time_since_epoch, e.id)):
        if (execution.create_time_since_epoch, execution.id) > cutoff:
            continue
        node = node_of.get(execution.id, execution.type)
        current = chosen.get(node)
        if current is None or (current.last_known_state == metadata_store_pb2.Execution.CACHED
                               and execution.last_known_state == metadata_store_pb2.Execution.COMPLETE):
            chosen[node] = execution
    artifacts = {a.id: a for a in graph.artifacts}
    steps = []
    for node, execution in sorted(chosen.items(), key=lambda kv: (kv[1].create_time_since_epoch, kv[1].id)):
        events = [e for e in graph.events if e.execution_id == execution.id and _is_output(e)
                  and e.artifact_id in artifacts]
        if execution.id == push.id:
            events = [e for e in store.get_events_by_execution_ids([push.id]) if _is_output(e)]
            artifacts.update({a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in events])})
        outputs = [{"key": _output_key(e), "uri": artifacts[e.artifact_id].uri,
                    **run_record.artifact_props(artifacts[e.artifact_id])} for e in events]
        steps.append({"node": node, "execution": execution.id,
                      "state": metadata_store_pb2.Execution.State.Name(execution.last_known_state),
                      "time": _time(execution.create_time_since_epoch),
                      "outputs": sorted(outputs, key=lambda o: o["key"])})
    return steps


_SHOW = ("spans", "data_fingerprint", "rows_read", "rows_quarantined", "passed", "drift_detected", "auc",
         "blessed", "pushed", "pushed_version")


def describe(metadata_path: str, serving_dir: str, model_name: str, version: Optional[str]) -> dict[str, Any]:
    if version in (None, "latest"):
        served = layout.current(serving_dir, model_name)
        if served is None:
            raise LookupError(f"lineage: no model in serving under {serving_dir}/{model_name}")
    else:
        path = os.path.join(serving_dir, model_name, str(version))
        if not os.path.exists(os.path.join(path, layout.MANIFEST_FILE)):
            raise LookupError(f"lineage: no version {version} under {serving_dir}/{model_name}; "
                              f"versions: {layout.versions(serving_dir, model_name)}")
        served = layout.ServedVersion(int(version), path, layout.read_manifest(os.path.join(path,
                                                                                              layout.MANIFEST_FILE)))
    steps = trace(metadata_path, served)
    return {"model_name": model_name, "version": served.version, "path": served.path,
            "pushed_at": served.manifest.get("pushed_at"), "spans": served.manifest.get("spans"),
            "data_fingerprint": served.manifest.get("data_fingerprint"), "steps": steps,
            "rollouts": mlmd.decisions(metadata_path, model_name)}


def render(lineage: dict[str, Any]) -> str:
    lines = [f"model {lineage['model_name']} version {lineage['version']} ({lineage['path']}), pushed "
             f"{lineage['pushed_at']}; trained on spans {', '.join(map(str, lineage['spans'] or ())) or 'none'}, "
             f"data {lineage['data_fingerprint'][:12]}"]
    for step in lineage["steps"]:
        facts = {k: v for o in step["outputs"] for k, v in o.items() if k in _SHOW}
        shown = ", ".join(f"{k}={v}" for k, v in facts.items())
        lines.append(f"  {step['time']}  {step['node']:<17} {step['state']:<9} {shown}")
    if lineage.get("rollouts"):
        lines.append(f"rollouts of {lineage['model_name']} (which version served when, and why):")
    for decision in lineage.get("rollouts") or ():
        lines.append(f"  {decision['time']}  {decision['action']:<8} version {decision['version']} (stable "
                     f"{decision['stable']}, candidate {decision['candidate']}, {decision['mode'] or 'no rollout'}"
                     f"{' ' + format(decision['percent'], 'g') + '%' if decision['mode'] == 'canary' else ''})"
                     + (f": {decision['reason']}" if decision['reason'] else ""))
    return "\n".join(lines)
