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


def _drift(table: pa.Table, draws: np.ndarray) -> pa.Table:
    """The drifted rows; `draws` holds one uniform draw per row (which card payments turn to cash)."""

    def replace(name, values):
        return table.set_column(table.column_names.index(name), name, values)

    table = replace("fare", pc.multiply(table.column("fare").cast(pa.float64()), 1.35))
    table = replace("trip_miles", pc.multiply(table.column("trip_miles").cast(pa.float64()), 1.3))
    hours = table.column("trip_start_hour").to_numpy()
    table = replace("trip_start_hour", pa.array((hours + 3) % 24))
    payment = table.column("payment_type")
    card = pc.fill_null(pc.equal(payment, "Credit Card"), False).to_numpy()
    switch = card & (draws < 0.4)
    table = replace("payment_type", pc.if_else(pa.array(switch), pa.scalar("Cash", payment.type), payment))
    tips = table.column("tips").cast(pa.float64()).to_numpy().copy()
    tips[card & ~switch] *= 0.5
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


CHUNK_ROWS = 1 << 20  # rows taken, drifted and written at a time: memory stays flat whatever the span's size


@dataclasses.dataclass(frozen=True)
class SimulationConfig:
    spans: int = 4
    drift_from: int | None = 3
    rows: int = 5000
    seed: int = 0
    files: int = 1  # files per span; their rows, in file order, are the rows of one file


def span_file_names(files: int) -> list[str]:
    """A span's file names: `data.csv` alone, or `part-00000-of-00008.csv` ... in row order."""
    if files == 1:
        return ["data.csv"]
    return [f"part-{k:05d}-of-{files:05d}.csv" for k in range(files)]


def _span_rows(base: pa.Table, picks: np.ndarray, draws: np.ndarray | None, span: int, start: int) -> pa.Table:
    """Rows `start` .. `start + len(picks)` of a span: the picked source rows, drifted when `draws` is given,
    with their `trip_id`s first."""
    table = base.take(pa.array(picks))
    if draws is not None:
        table = _drift(table, draws)
    numbers = pa.array(np.arange(start, start + len(picks))).cast(pa.string())
    return table.add_column(0, ID_COLUMN, pc.binary_join_element_wise(str(span), numbers, "-"))


def _write_span(base: pa.Table, picks: np.ndarray, draws: np.ndarray | None, span: int, folder: str,
                files: int) -> list[str]:
    """Writes a span's rows into `files` CSV files (each complete under its name or absent), CHUNK_ROWS at a time."""
    os.makedirs(folder, exist_ok=True)
    bounds = [len(picks) * k // files for k in range(files + 1)]
    written = []
    for name, first, end in zip(span_file_names(files), bounds[:-1], bounds[1:], strict=True):
        path = os.path.join(folder, name)
        with open(path + ".tmp", "wb") as sink:
            writer = None
            for start in range(first, end, CHUNK_ROWS):  # never empty: files <= rows
                stop = min(start + CHUNK_ROWS, end)
                table = _span_rows(base, picks[start:stop], None if draws is None else draws[start:stop], span, start)
                if writer is None:
                    # The header unquoted, as the shipped file's: stock CsvExampleGen keeps quotes in column names.
                    sink.write((",".join(table.column_names) + "\n").encode())
                    writer = pcsv.CSVWriter(sink, table.schema, write_options=pcsv.WriteOptions(include_header=False))
                writer.write_table(table)
            writer.close()
        os.replace(path + ".tmp", path)
        written.append(path)
    return written


def simulate(source: str, out_dir: str, cfg: SimulationConfig) -> list[str]:
    """Writes `cfg.spans` new spans, `<out_dir>/span-K/data.csv ...`, after the span-N folders out_dir already holds
    (K = 1 in a new folder), drifting from span number `cfg.drift_from` on; returns the files. Nothing existing is
    overwritten, and a span's rows depend on the seed and its number only (not on `cfg.files`): two calls write
    what one would."""
    if cfg.spans < 1 or cfg.rows < 1:
        raise ValueError(f"simulate: spans and rows must be >= 1, got spans={cfg.spans}, rows={cfg.rows}")
    if not 1 <= cfg.files <= cfg.rows:
        raise ValueError(f"simulate: --files: expected 1 to --rows ({cfg.rows:,}) files per span, got {cfg.files}")
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
        picks = rng.integers(0, base.num_rows, cfg.rows)
        drifted = cfg.drift_from is not None and span >= cfg.drift_from
        draws = rng.random(cfg.rows) if drifted else None
        files += _write_span(base, picks, draws, span, os.path.join(out_dir, f"span-{span}"), cfg.files)
    return files


def simulate_spans(out_dir: str, spans: int, drift_from: int | None, rows: int, seed: int, files: int = 1) -> list[str]:
    """simulate() from the taxi data shipped in the tfx wheel (the pipeline registry's simulator)."""
    return simulate(shipped_data(), out_dir, SimulationConfig(spans, drift_from, rows, seed, files))
