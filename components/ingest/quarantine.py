"""The quarantine: reading its first rows, enforcing the limit, keeping it when an execution fails."""

from __future__ import annotations

import json
import os

from tfx.dsl.io import fileio

from flywheel.components.ingest import beam_ingest, spec
from flywheel.data import parsing


def first_quarantined(quarantine_uri: str, n: int = 3) -> list[dict]:
    path = os.path.join(quarantine_uri, spec.QUARANTINE_FILE)
    if not fileio.exists(path):
        return []
    rows = []
    with fileio.open(path, "r") as f:
        for line in f:
            rows.append(json.loads(line))
            if len(rows) >= n:
                break
    return rows


def check_quarantine_limit(counts: beam_ingest.IngestCounts, limit: float, quarantine_uri: str, kept_at: str) -> None:
    """Raises IngestError (naming the first rows and where all of them are) above the limit."""
    if counts.rows_read == 0:
        raise parsing.IngestError("ingest: no data rows in the input (files hold a header only)")
    share = counts.rows_quarantined / counts.rows_read
    if share <= limit:
        return
    examples = "; ".join(f"{r['file']} line {r['line']}: {r['reason']}" for r in first_quarantined(quarantine_uri))
    raise parsing.IngestError(
        f"ingest: {counts.rows_quarantined:,} of {counts.rows_read:,} rows quarantined ({share:.2%}), "
        f"above the limit of {limit:.2%}. First: {examples}. All quarantined rows: {kept_at}")


def preserve_quarantine(quarantine_uri: str, destination: str) -> str:
    """Copies the quarantine somewhere a failed execution's clean-up does not reach."""
    fileio.makedirs(destination)
    for name in fileio.listdir(quarantine_uri):
        fileio.copy(os.path.join(quarantine_uri, name), os.path.join(destination, name), overwrite=True)
    return os.path.join(destination, spec.QUARANTINE_FILE)
