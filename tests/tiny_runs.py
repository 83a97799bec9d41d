"""Tiny real runs of the taxi pipeline (a few hundred rows, a few train steps), made once per test session.

The executor and lineage tests read their real artifacts and ML-Metadata store.
"""

from __future__ import annotations

import csv
import dataclasses
import os
from typing import Optional

from flywheel.pipelines.taxi.config import Paths, TaxiConfig, shipped_data

ROWS = 600
TRAIN_STEPS = 20
_cache: dict[str, str] = {}


def write_sample(folder: str, start: int, rows: int = ROWS) -> str:
    """Rows [start, start + rows) of the shipped taxi CSV as folder/data.csv (header kept)."""
    os.makedirs(folder, exist_ok=True)
    with open(shipped_data(), newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        body = [row for i, row in enumerate(reader) if start <= i < start + rows]
    with open(os.path.join(folder, "data.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(body)
    return folder


def config(output_dir: str, data_dir: str, **overrides) -> TaxiConfig:
    """A taxi config for a few steps that blesses any model (min AUC 0.01, any drop against serving)."""
    cfg = TaxiConfig(paths=Paths.under(output_dir, data_dir), train_steps=TRAIN_STEPS, eval_steps=5,
                     min_auc=0.01, max_auc_drop=1.0)
    return dataclasses.replace(cfg, **overrides)


def run(cfg: TaxiConfig) -> None:
    from flywheel.pipelines.taxi import local_runner

    local_runner.run(cfg)


def two_runs(root: str) -> str:
    """Output dir holding two runs of the taxi pipeline on different rows (both pushed), once per session."""
    if "two_runs" not in _cache:
        out = os.path.join(root, "out")
        run(config(out, write_sample(os.path.join(root, "data_a"), 0)))
        run(config(out, write_sample(os.path.join(root, "data_b"), ROWS)))
        _cache["two_runs"] = out
    return _cache["two_runs"]


def latest(output_dir: str) -> Optional[str]:
    return _cache.get(output_dir)
