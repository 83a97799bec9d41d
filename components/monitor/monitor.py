"""One monitoring pass, as used by `flywheel monitor`: load, compare, write JSON + HTML."""

from __future__ import annotations

import json
import os
from typing import Any, Optional

from components.monitor import drift, profile, report


def thresholds_from_schema(schema_path: str, default: drift.Thresholds) -> tuple[list[str], dict[str, drift.Thresholds]]:
    """Features named in the schema, with TFDV drift_comparator thresholds where the schema sets them."""
    import dataclasses

    from components.ingest import parsing

    schema = parsing.load_schema(schema_path)
    names, per_feature = [], {}
    for feature in schema.feature:
        names.append(feature.name)
        comparator = feature.drift_comparator
        changes = {}
        if comparator.HasField("infinity_norm"):
            changes["linf"] = comparator.infinity_norm.threshold
        if comparator.HasField("jensen_shannon_divergence"):
            changes["js_categorical"] = changes["js_numeric"] = comparator.jensen_shannon_divergence.threshold
        if changes:
            per_feature[feature.name] = dataclasses.replace(default, **changes)
    return names, per_feature


def run_monitor(baseline: str, current: str, schema_path: Optional[str] = None, report_dir: Optional[str] = None,
                save_profile: Optional[str] = None) -> dict[str, Any]:
    default = drift.Thresholds()
    columns, per_feature = (thresholds_from_schema(schema_path, default) if schema_path else (None, {}))
    if columns is not None:
        columns = columns + ["prediction"]
    base = profile.load(baseline, columns)
    cur = profile.load(current, columns)
    if columns is not None:
        absent = sorted(set(columns) - set(base.columns) - {"prediction"})
        if absent:
            raise profile.MonitorError(f"monitor: baseline {baseline} lacks schema column(s) {absent}")
    result = drift.compare(base, cur, per_feature, default)
    if save_profile:
        with open(save_profile, "w", encoding="utf-8") as f:
            f.write(cur.to_json())
    if report_dir:
        os.makedirs(report_dir, exist_ok=True)
        with open(os.path.join(report_dir, "drift.json"), "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
        with open(os.path.join(report_dir, "report.html"), "w", encoding="utf-8") as f:
            f.write(report.render(result))
    for feature in result["features"].values():
        feature.pop("baseline", None)
        feature.pop("current", None)
        feature.pop("severity", None)
    return result
