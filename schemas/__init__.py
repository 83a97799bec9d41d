"""Curated TFDV schemas and configs, shipped as package data."""

import os


def schema_path(pipeline_name: str) -> str:
    """Returns the curated schema file of a pipeline, e.g. schema_path("taxi")."""
    path = os.path.join(os.path.dirname(__file__), pipeline_name, "schema.pbtxt")
    if not os.path.exists(path):
        known = sorted(d for d in os.listdir(os.path.dirname(__file__)) if os.path.isdir(os.path.join(os.path.dirname(__file__), d)) and not d.startswith("_"))
        raise FileNotFoundError(f"schemas: no schema for pipeline {pipeline_name!r} at {path}; known: {known}")
    return path
