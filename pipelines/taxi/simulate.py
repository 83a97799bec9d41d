"""Production data for the taxi model: spans resampled from the shipped data, with a realistic drift.

From span `drift_from` on, several things move at once: fares rise 35% and trips get 30% longer
(numeric location/scale), card payments give way to cash (category shares), trips shift three hours
later (a categorical-like integer), and the tipping behaviour itself changes (card riders tip half as
much: the relation between features and label shifts). Labelled (`tips` is there), deterministic for
a seed. numpy + pyarrow only.

Every row has a unique `trip_id` (`<span>-<row>`, first column), the key a production system would log
its requests under (`flywheel replay --id-column trip_id` sends it as `X-Request-Id`) and join the labels
that arrive later by (`flywheel logs join --key trip_id`). It is not a schema column: Ingest passes over it.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from flywheel.pipelines.taxi.config import shipped_data

ID_COLUMN = "trip_id"


@dataclasses.dataclass(frozen=True)
class SimulationConfig:
    spans: int = 4
    drift_from: int | None = 3
    rows: int = 5000
    seed: int = 0


def _drift(table: pa.Table, rng: np.random.Generator) -> pa.Table:
    n = table.num_rows

    def replace(name, values):
        return table.set_column(table.column_names.index(name), name, values)

    table = replace("fare", pc.multiply(table.column("fare").cast(pa.float64()), 1.35))
    table = replace("trip_miles", pc.multiply(table.column("trip_miles").cast(pa.float64()), 1.3))
    hours = table.column("trip_start_hour").to_numpy()
    table = replace("trip_start_hour", pa.array((hours + 3) % 24))
    payment = np.array(table.column("payment_type").to_pylist(), dtype=object)
    switch = (payment == "Credit Card") & (rng.random(n) < 0.4)
    payment[switch] = "Cash"
    table = replace("payment_type", pa.array(payment.tolist()))
    tips = table.column("tips").cast(pa.float64()).to_numpy().copy()
    tips[payment == "Credit Card"] *= 0.5
    tips[switch] = 0.0
    return replace("tips", pa.array(tips))


def next_span(out_dir: str) -> int:
    """The span number after the `span-N` folders already in out_dir (1 when there are none); ValueError when
    out_dir is a file."""
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ValueError(f"simulate: --out {out_dir}: expected a folder (new, or holding span-N folders), found a file")
    found = [int(name[5:]) for name in (os.listdir(out_dir) if os.path.isdir(out_dir) else ())
             if name.startswith("span-") and name[5:].isdigit()]
    return max(found, default=0) + 1


def simulate(source: str, out_dir: str, cfg: SimulationConfig) -> list[str]:
    """Writes `cfg.spans` new spans, `<out_dir>/span-K/data.csv ...`, after the span-N folders out_dir already holds
    (K = 1 in a new folder), drifting from span number `cfg.drift_from` on; returns the files. Nothing existing is
    overwritten, and a span's rows depend on the seed and its number only: two calls write what one would."""
    if cfg.spans < 1 or cfg.rows < 1:
        raise ValueError(f"simulate: spans and rows must be >= 1, got spans={cfg.spans}, rows={cfg.rows}")
    first = next_span(out_dir)
    last = first + cfg.spans - 1
    if cfg.drift_from is not None and not 1 <= cfg.drift_from <= last:
        after = f" (after the span-1 to span-{first - 1} already in {out_dir})" if first > 1 else ""
        raise ValueError(f"simulate: --drift-from: expected a span number from 1 to {last}, the last span this "
                         f"writes{after}, got {cfg.drift_from}")
    base = pcsv.read_csv(source)
    files = []
    for span in range(first, last + 1):
        rng = np.random.default_rng([cfg.seed, span])
        table = base.take(pa.array(rng.integers(0, base.num_rows, cfg.rows)))
        if cfg.drift_from is not None and span >= cfg.drift_from:
            table = _drift(table, rng)
        table = table.add_column(0, ID_COLUMN, pa.array([f"{span}-{row}" for row in range(table.num_rows)]))
        folder = os.path.join(out_dir, f"span-{span}")
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, "data.csv")
        pcsv.write_csv(table, path + ".tmp")
        os.replace(path + ".tmp", path)
        files.append(path)
    return files


def simulate_spans(out_dir: str, spans: int, drift_from: int | None, rows: int, seed: int) -> list[str]:
    """simulate() from the taxi data shipped in the tfx wheel (the pipeline registry's simulator)."""
    return simulate(shipped_data(), out_dir, SimulationConfig(spans, drift_from, rows, seed))
