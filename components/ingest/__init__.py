"""Ingest: CSV/Parquet spans -> typed tf.Examples, with a quarantine for rows that do not parse."""

from flywheel.components.ingest import spec

__all__ = ["spec"]
