"""Runs the taxi pipeline on TFX's LocalDagRunner with an embedded SQLite ML-Metadata store.

Also the file the TFX CLI takes:
    tfx pipeline create --engine local --pipeline_path pipelines/taxi/local_runner.py
    tfx run create --engine local --pipeline_name taxi
FLYWHEEL_OUTPUT_DIR, FLYWHEEL_DATA, FLYWHEEL_SERVING_DIR and FLYWHEEL_TRAIN_STEPS override the defaults there.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os

from flywheel.pipelines.taxi.config import Paths, TaxiConfig


def config_from_env(**overrides) -> TaxiConfig:
    paths = Paths.under(os.environ.get("FLYWHEEL_OUTPUT_DIR", "flywheel_output"), os.environ.get("FLYWHEEL_DATA"),
                        os.environ.get("FLYWHEEL_SERVING_DIR"))
    cfg = TaxiConfig(paths=paths)
    if os.environ.get("FLYWHEEL_TRAIN_STEPS"):
        cfg = dataclasses.replace(cfg, train_steps=int(os.environ["FLYWHEEL_TRAIN_STEPS"]))
    return dataclasses.replace(cfg, **overrides)


def pin_schema(schema_path: str, output_dir: str) -> str:
    """A content-addressed copy of the schema: an edited schema is a new path, so never a stale cache hit."""
    with open(schema_path, "rb") as f:
        content = f.read()
    pinned = os.path.join(output_dir, "schemas", hashlib.sha256(content).hexdigest()[:16], "schema.pbtxt")
    if not os.path.exists(pinned):
        os.makedirs(os.path.dirname(pinned), exist_ok=True)
        with open(pinned + ".tmp", "wb") as f:
            f.write(content)
        os.replace(pinned + ".tmp", pinned)
    return pinned


def build(cfg: TaxiConfig):
    """The pipeline with its SQLite metadata store; fails at build time on a missing schema file."""
    from tfx.orchestration.metadata import sqlite_metadata_connection_config

    from flywheel.pipelines.taxi.pipeline import create_pipeline

    if "://" not in cfg.schema_path and not os.path.exists(cfg.schema_path):
        raise FileNotFoundError(f"TaxiConfig.schema_path: file {cfg.schema_path!r} does not exist")
    cfg = dataclasses.replace(cfg, schema_path=pin_schema(cfg.schema_path, cfg.paths.output_dir))
    return create_pipeline(cfg, sqlite_metadata_connection_config(cfg.paths.metadata_path))


def compile_ir(pipeline):
    """The pipeline's IR, with caching off for the nodes that must look every run (UNCACHED_NODES: Decide).

    TFX's DSL sets caching for the whole pipeline; the IR holds it per node.
    """
    from tfx.dsl.compiler import compiler

    from flywheel.pipelines.taxi.config import UNCACHED_NODES

    ir = compiler.Compiler().compile(pipeline)
    for node in ir.nodes:
        if node.pipeline_node.node_info.id in UNCACHED_NODES:
            node.pipeline_node.execution_options.caching_options.enable_cache = False
    return ir


def run(cfg: TaxiConfig) -> None:
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner

    LocalDagRunner().run_with_ir(compile_ir(build(cfg)))


if __name__ == "__main__":
    run(config_from_env())
