"""Per-span profiles of the raw rows (for the drift monitor), written into the DataProfile artifact."""

from __future__ import annotations

import os

from tfx.dsl.io import fileio

from flywheel.components.ingest import inputs


def write_span_profiles(resolved: inputs.ResolvedInput, profile_uri: str, input_base: str) -> dict[int, str]:
    """A compact profile (for the drift monitor) of each span's raw rows, into the DataProfile artifact.

    Returns {span: path}; a span whose files pyarrow cannot read as a table gets no profile.
    """
    import pyarrow as pa

    from flywheel.components.monitor import profile
    from flywheel.components.monitor.spec import profile_file

    by_span: dict[int, list[str]] = {}
    for path in resolved.files:
        by_span.setdefault(inputs.span_of(path, input_base), []).append(path)
    written = {}
    for span, files in sorted(by_span.items()):
        try:
            tables = [profile.read_table(f) for f in files]
            table = tables[0] if len(tables) == 1 else pa.concat_tables(tables, promote=True)
        except (profile.MonitorError, pa.ArrowInvalid):
            continue
        fileio.makedirs(profile_uri)
        path = os.path.join(profile_uri, profile_file(span))
        with fileio.open(path, "w") as f:
            f.write(profile.profile_table(table, f"span {span}").to_json())
        written[span] = path
    return written
