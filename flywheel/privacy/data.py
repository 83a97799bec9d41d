"""The columns a privacy measurement needs, read from a data file or folder as Ingest finds its files (.csv,
.csv.gz, .parquet; span-N folders; any filesystem `flywheel.storage` reaches), typed the way the measurement
compares them: binned quasi-identifiers as float64, every other column as text (an empty CSV cell is missing)."""

from __future__ import annotations

import csv

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from flywheel.data import inputs
from flywheel.privacy.policy import Policy


class DataError(ValueError):
    """Data that cannot be read for a measurement; the message names the file and what is wrong."""


def wanted_types(policy: Policy) -> dict[str, pa.DataType]:
    """The measured columns and the type each is read as."""
    types = {c.name: pa.float64() if c.bin is not None else pa.string() for c in policy.quasi_identifiers}
    types.update({name: pa.string() for name in policy.sensitive})
    return types


def _header(f) -> list[str]:
    header = [h.strip() for h in next(csv.reader([f.readline().decode("utf-8-sig", errors="replace")]), [])]
    f.seek(0)
    return header


def _read_file(name: str, types: dict[str, pa.DataType]) -> pa.Table:
    with inputs.open_data(name) as f:
        if inputs.is_parquet(name):
            present = [c for c in types if c in pq.ParquetFile(f).schema_arrow.names]
            table = pq.read_table(f, columns=present)
        else:
            present = [c for c in types if c in _header(f)]
            table = pcsv.read_csv(f, convert_options=pcsv.ConvertOptions(
                include_columns=present, column_types={c: types[c] for c in present}, strings_can_be_null=True))
    missing = [c for c in types if c not in present]
    if missing:
        raise DataError(f"privacy: {name}: no column {missing[0]!r}: expected every quasi-identifier and sensitive "
                        f"attribute the policy declares ({', '.join(types)})")
    return pa.table({c: table.column(c).cast(types[c]) for c in types})


def read(path: str, policy: Policy) -> tuple[pa.Table, list[str]]:
    """(the measured columns of every data file under `path` as one table, the files read)."""
    try:
        files = inputs.files_under(path)
    except inputs.InputError as e:
        raise DataError(e.for_command("privacy")) from None
    types = wanted_types(policy)
    tables = []
    for name in files:
        try:
            tables.append(_read_file(name, types))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as e:
            raise DataError(f"privacy: {name}: cannot read: {e}") from None
    return pa.concat_tables(tables), files

