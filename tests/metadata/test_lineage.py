"""Lineage through ML-Metadata's lineage subgraph, and the latest-run lookup, on one store shared by several runs.

The checked-in taxi runs (tests/fixtures): two taxi runs on different rows (each pushes a version) and then a run of
another pipeline ("other", one ImportSchemaGen) wrote one store.
"""

from __future__ import annotations

import os

import pytest

from flywheel.metadata import lineage, run_record
from flywheel.store import layout

NODES = ["ImportSchemaGen", "Ingest", "StatisticsGen", "ExampleValidator", "DataGate", "Transform", "Trainer",
         "Evaluate", "Push"]


@pytest.fixture(scope="module")
def store(taxi_runs):
    metadata = os.path.join(taxi_runs, "metadata.sqlite")
    mlmd = run_record.open_store(metadata)
    runs = run_record.pipeline_runs(mlmd, "taxi")
    return {"out": taxi_runs, "metadata": metadata, "serving": os.path.join(taxi_runs, "serving"),
            "runs": [{e.id for e in mlmd.get_executions_by_context(r.id)} for r in runs]}


def _lineage(store, version):
    return lineage.describe(store["metadata"], store["serving"], "taxi", str(version))


def test_first_model_lineage_excludes_the_later_run(store):
    first_run, second_run = store["runs"]
    first, second = layout.versions(store["serving"], "taxi")
    found = _lineage(store, first)
    assert [s["node"] for s in found["steps"]] == NODES
    ids = {s["execution"] for s in found["steps"]}
    assert ids <= first_run and not ids & second_run
    [ingest] = [s for s in found["steps"] if s["node"] == "Ingest"]
    [examples] = [o for o in ingest["outputs"] if o["key"] == "examples"]
    assert examples["data_fingerprint"] == found["data_fingerprint"]
    [push] = [s for s in found["steps"] if s["node"] == "Push"]
    assert [o["pushed_version"] for o in push["outputs"] if o["key"] == "pushed_model"] == [str(first)]
    times = [s["time"] for s in found["steps"]]
    assert times == sorted(times)


def test_second_model_lineage_is_its_own_run_and_the_schema_it_reused(store):
    first_run, second_run = store["runs"]
    _, second = layout.versions(store["serving"], "taxi")
    found = _lineage(store, second)
    assert [s["node"] for s in found["steps"]] == NODES
    by_node = {s["node"]: s for s in found["steps"]}
    assert {s["execution"] for n, s in by_node.items() if n != "ImportSchemaGen"} <= second_run
    # The second run replayed the schema import from the cache: shown by the execution that produced it.
    assert by_node["ImportSchemaGen"]["state"] == "COMPLETE"
    assert by_node["ImportSchemaGen"]["execution"] in first_run | second_run
    assert _lineage(store, layout.versions(store["serving"], "taxi")[0])["data_fingerprint"] != found[
        "data_fingerprint"]
    text = lineage.render(found)
    assert all(node in text for node in NODES) and f"version {second}" in text


def test_latest_run_filters_by_pipeline(store):
    taxi = run_record.latest_run(store["metadata"], "taxi")
    other = run_record.latest_run(store["metadata"], "other")
    assert set(other) == {"ImportSchemaGen"}
    assert set(NODES) <= set(taxi)
    _, second = layout.versions(store["serving"], "taxi")
    assert taxi["Push"].output("pushed_model")["pushed_version"] == str(second)
    assert run_record.latest_run(store["metadata"], "no_such_pipeline") == {}
