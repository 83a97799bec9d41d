"""Curated TFDV schemas and configs, shipped as package data."""

import os

_HERE = os.path.dirname(__file__)


def known() -> list[str]:
    """The pipelines with a curated schema here."""
    return sorted(d for d in os.listdir(_HERE) if os.path.isdir(os.path.join(_HERE, d)) and not d.startswith("_"))


def schema_path(pipeline_name: str) -> str:
    """Returns the curated schema file of a pipeline, e.g. schema_path("taxi")."""
    path = os.path.join(_HERE, pipeline_name, "schema.pbtxt")
    if not os.path.exists(path):
        raise FileNotFoundError(f"schemas: no schema for pipeline {pipeline_name!r} at {path}; known: {known()}")
    return path
