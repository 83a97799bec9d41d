"""What a run did, read back from ML-Metadata: each node's state and outputs, for summaries and tests.

A run's id names the pipeline root it writes to (`run_id`), so that in a store several machines share, each finds
its own run among the others' of the same pipeline."""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
from typing import Any, Optional

from flywheel.metadata import connection


@dataclasses.dataclass
class NodeRecord:
    node_id: str
    state: str
    outputs: dict[str, list[dict[str, Any]]]

    def output(self, key: str) -> Optional[dict[str, Any]]:
        found = self.outputs.get(key) or []
        return found[0] if found else None


def artifact_props(artifact) -> dict[str, Any]:
    out = {}
    for name, value in list(artifact.properties.items()) + list(artifact.custom_properties.items()):
        kind = value.WhichOneof("value")
        if kind in ("int_value", "double_value", "string_value"):
            out[name] = getattr(value, kind)
    return out


def open_store(metadata: str):
    """The store at a metadata location (`flywheel.metadata.connection`: a SQLite file, read-only, or MySQL)."""
    return connection.open_store(metadata)


def root_tag(pipeline_root: str) -> str:
    """What a run id says about the pipeline root a run writes to: 12 hex digits of its sha256."""
    return hashlib.sha256(str(pipeline_root).encode()).hexdigest()[:12]


def run_id(pipeline_root: str, now: Optional[datetime.datetime] = None) -> str:
    """A run's id (its pipeline_run context's name): the time it started, '@', the tag of its pipeline root."""
    return f"{(now or datetime.datetime.now()).isoformat()}@{root_tag(pipeline_root)}"


def pipeline_runs(store, pipeline_name: str, pipeline_root: Optional[str] = None) -> list:
    """This pipeline's pipeline_run contexts only (TFX makes each a child of its pipeline context), oldest first;
    with `pipeline_root`, only the runs that wrote there (`run_id`)."""
    pipeline = store.get_context_by_type_and_name("pipeline", pipeline_name)
    if pipeline is None:
        return []
    runs = [c for c in store.get_children_contexts_by_context(pipeline.id) if c.type == "pipeline_run"
            and (pipeline_root is None or c.name.endswith("@" + root_tag(pipeline_root)))]
    return sorted(runs, key=lambda c: (c.create_time_since_epoch, c.id))


def node_id(store, execution) -> str:
    """The pipeline node an execution ran for ('Ingest'), from its node context ('taxi.Ingest')."""
    ctx = [c for c in store.get_contexts_by_execution(execution.id) if c.type == "node"]
    return ctx[0].name.split(".", 1)[-1] if ctx else execution.type


def latest_run(metadata: str, pipeline_name: str, pipeline_root: Optional[str] = None) -> dict[str, NodeRecord]:
    """The nodes of this pipeline's newest run: state (COMPLETE, CACHED, FAILED, ...) and output artifacts.

    Other pipelines sharing the metadata store are ignored, and with `pipeline_root` the runs of this pipeline
    that wrote elsewhere (another machine's, sharing a MySQL store); {} when there is no such run.
    """
    from ml_metadata.proto import metadata_store_pb2  # ML-Metadata: only the commands that read a store need it

    store = open_store(metadata)
    runs = pipeline_runs(store, pipeline_name, pipeline_root)
    if not runs:
        return {}
    records: dict[str, NodeRecord] = {}
    for execution in store.get_executions_by_context(runs[-1].id):
        node = node_id(store, execution)
        outputs: dict[str, list[dict[str, Any]]] = {}
        events = [e for e in store.get_events_by_execution_ids([execution.id])
                  if e.type in (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)]
        artifacts = {a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in events])}
        for event in events:
            key = event.path.steps[0].key if event.path.steps else "output"
            artifact = artifacts[event.artifact_id]
            outputs.setdefault(key, []).append({"uri": artifact.uri, "id": artifact.id, **artifact_props(artifact)})
        records[node] = NodeRecord(node, metadata_store_pb2.Execution.State.Name(execution.last_known_state), outputs)
    return records
