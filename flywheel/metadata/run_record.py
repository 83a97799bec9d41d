"""What a run did, read back from ML-Metadata: each node's state and outputs, for summaries and tests."""

from __future__ import annotations

import dataclasses
from typing import Any, Optional


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


def open_store(metadata_path: str):
    from ml_metadata.metadata_store import metadata_store  # ML-Metadata: only the commands that read a store need it
    from ml_metadata.proto import metadata_store_pb2  # (its native library loads with it)

    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = metadata_path
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return metadata_store.MetadataStore(config)


def pipeline_runs(store, pipeline_name: str) -> list:
    """This pipeline's pipeline_run contexts only (TFX makes each a child of its pipeline context), oldest first."""
    pipeline = store.get_context_by_type_and_name("pipeline", pipeline_name)
    if pipeline is None:
        return []
    runs = [c for c in store.get_children_contexts_by_context(pipeline.id) if c.type == "pipeline_run"]
    return sorted(runs, key=lambda c: (c.create_time_since_epoch, c.id))


def node_id(store, execution) -> str:
    """The pipeline node an execution ran for ('Ingest'), from its node context ('taxi.Ingest')."""
    ctx = [c for c in store.get_contexts_by_execution(execution.id) if c.type == "node"]
    return ctx[0].name.split(".", 1)[-1] if ctx else execution.type


def latest_run(metadata_path: str, pipeline_name: str) -> dict[str, NodeRecord]:
    """The nodes of this pipeline's newest run: state (COMPLETE, CACHED, FAILED, ...) and output artifacts.

    Other pipelines sharing the metadata store are ignored; {} when this pipeline never ran.
    """
    from ml_metadata.proto import metadata_store_pb2  # ML-Metadata: only the commands that read a store need it

    store = open_store(metadata_path)
    runs = pipeline_runs(store, pipeline_name)
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
