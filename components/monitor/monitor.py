"""One monitoring pass, as used by `flywheel monitor`: load, compare, write JSON + HTML."""

from __future__ import annotations

import json
import os
from typing import Any, Optional

import numpy as np
import pyarrow as pa

from flywheel.components.monitor import drift, profile, report


def thresholds_from_schema(schema_path: str, default: drift.Thresholds
                           ) -> tuple[list[str], dict[str, drift.Thresholds]]:
    """Features named in the schema, with TFDV drift_comparator thresholds where the schema sets them."""
    import dataclasses

    from flywheel.components.ingest import parsing

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


def thresholds(schema_path: str) -> tuple[dict[str, drift.Thresholds], drift.Thresholds]:
    """Per-feature thresholds from the schema's drift_comparator fields, and the defaults."""
    default = drift.Thresholds()
    if not schema_path:
        return {}, default
    return thresholds_from_schema(schema_path, default)[1], default


def reference_auc(path: str) -> float:
    """AUC from a metrics JSON: {"auc": x}, or a push.json manifest ({"metrics": {"auc": x}})."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    value = data.get("auc", data.get("metrics", {}).get("auc"))
    if value is None:
        raise profile.MonitorError(f"monitor: {path}: no 'auc' (or 'metrics.auc') in the reference metrics")
    return float(value)


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve by ranks (ties averaged); nan when one class is absent."""
    positives = labels == 1
    n_pos, n_neg = int(positives.sum()), int((~positives).sum())
    if not n_pos or not n_neg:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    average = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(average, counts)
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def performance(current: str, reference: Optional[float], label_column: str, max_drop: float
                ) -> Optional[dict[str, Any]]:
    """AUC of the `prediction` column against labels in the current data, vs the reference AUC."""
    if current.lower().endswith(".json"):
        return None
    table = profile.read_table(current)
    if label_column not in table.column_names or "prediction" not in table.column_names:
        return None
    frame = table.select([label_column, "prediction"]).drop_null()
    labels = frame.column(label_column).cast(pa.int64()).to_numpy()
    value = auc(labels, frame.column("prediction").cast(pa.float64()).to_numpy())
    result: dict[str, Any] = {"metric": "auc", "value": round(value, 6), "rows": frame.num_rows}
    if reference is not None:
        result.update(reference=reference, threshold=max_drop, drop=round(reference - value, 6),
                      drift=bool(reference - value > max_drop))
    return result


def run_monitor(baseline: str, current: str, schema_path: Optional[str] = None, report_dir: Optional[str] = None,
                save_profile: Optional[str] = None, reference_metrics: Optional[str] = None,
                label_column: str = "label", max_auc_drop: float = 0.05) -> dict[str, Any]:
    default = drift.Thresholds()
    columns, per_feature = (thresholds_from_schema(schema_path, default) if schema_path else (None, {}))
    if columns is not None:
        columns = columns + ["prediction", label_column]
    base = profile.load(baseline, columns)
    cur = profile.load(current, columns)
    if columns is not None:
        absent = sorted(set(columns) - set(base.columns) - {"prediction", label_column})
        if absent:
            raise profile.MonitorError(f"monitor: baseline {baseline} lacks schema column(s) {absent}")
    result = drift.compare(base, cur, per_feature, default)
    perf = performance(current, reference_auc(reference_metrics) if reference_metrics else None, label_column,
                       max_auc_drop)
    if perf is not None:
        result["performance"] = perf
        result["drift_detected"] = result["drift_detected"] or bool(perf.get("drift"))
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
