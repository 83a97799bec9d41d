"""Ingest: CSV/Parquet spans -> typed tf.Examples, with a quarantine for rows that do not parse."""
