"""Monitoring passes over `drift.decide`: the CLI's (`run_monitor`), the component's and the retraining plan's.

All three go through `check`: the same decision, the same result shape, thresholds from the schema,
drift.json + report.html written beside it.
"""

from __future__ import annotations

import json
import os
from typing import Any, Collection, Optional

import numpy as np

from flywheel import storage
from flywheel.data import inputs, parsing
from flywheel.monitoring import drift, profile, report

# A drift check's files, written side by side: the result (the DriftReport's custom properties and more) and
# the report people read
RESULT_FILE = "drift.json"
REPORT_FILE = "report.html"


def load_baseline(path: str, absent_reason: str = "no model in serving"
                  ) -> tuple[Optional[profile.DatasetProfile], str]:
    """The baseline profile, or (None, why) when there is none to compare with (that is not drift).

    A path that is given but does not exist is an error; a profile in an older format counts as no baseline
    (the retrained model's push writes a new one).
    """
    if not path:
        return None, absent_reason
    if not storage.exists(path):
        raise profile.MonitorError(f"monitor: baseline profile {path} does not exist")
    text = storage.read_text(path)
    try:
        return profile.DatasetProfile.from_json(text, path), ""
    except profile.ProfileFormatError as e:
        return None, str(e).removeprefix("monitor: ")


def write_report(result: dict[str, Any], out_dir: str) -> str:
    """drift.json and report.html into out_dir (any filesystem tfx.dsl.io supports); returns the HTML's path."""
    storage.makedirs(out_dir)
    html_path = os.path.join(out_dir, REPORT_FILE)
    storage.write_text(os.path.join(out_dir, RESULT_FILE), json.dumps(dict(result, report=html_path), indent=2))
    storage.write_text(html_path, report.render(result))
    return html_path


def check(baseline: Optional[profile.DatasetProfile], current: profile.DatasetProfile, schema_path: str = "",
          no_baseline: str = "no model in serving", report_dir: Optional[str] = None,
          policy: Optional[drift.Policy] = None, extra: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """The drift decision (`drift.decide`) with the schema's policy; writes the report when report_dir is given.

    Returns the result without chart data; `report` is the HTML report's path (None without report_dir).
    """
    result = drift.decide(baseline, current, policy or drift.Policy.from_schema(schema_path), no_baseline)
    result.update(extra or {})
    perf = result.get("performance") or {}
    if perf.get("drift"):
        result["drift_detected"] = True
        result["reason"] += f"; AUC dropped by {perf['drop']:.3f} (more than {perf['threshold']:g})"
    result["report"] = write_report(result, report_dir) if report_dir else None
    return drift.without_charts(result)


def profile_span(data_root: str, span: int, schema_path: str) -> tuple[profile.DatasetProfile, dict[str, Any]]:
    """The profile of one span's rows as Ingest types them: quarantined rows are left out and counted."""
    if not schema_path:
        raise profile.MonitorError("monitor: profiling a span needs the schema Ingest types rows with")
    columns = parsing.columns_from_schema(parsing.load_schema(schema_path))
    files = inputs.data_files(data_root, (span,) if inputs.available_spans(data_root) else None)
    if not files:
        raise inputs.InputError(f"monitor: span {span} under {data_root!r} has no data files")
    builder = profile.Builder(profile.schema_kinds(columns))
    read, rejected = 0, []
    for path in files:
        for row in parsing.file_rows(path, columns, (), (("all", 1),)):
            read += 1
            if isinstance(row, parsing.Rejected):
                rejected.append(row)
            else:
                builder.add(row.values)
    quality = {"rows_read": read, "rows_quarantined": len(rejected),
               "first_quarantined": [f"{r.file} line {r.line}: {r.reason}" for r in rejected[:3]]}
    return builder.result(f"span {span}"), quality


# ---- performance decay (the CLI, when the current data has labels and predictions) -------------------------

def reference_auc(path: str) -> float:
    """AUC from a metrics JSON: {"auc": x}, or a push.json manifest ({"metrics": {"auc": x}})."""
    expected = f"monitor: --reference-metrics {path}: expected JSON with 'auc' (or 'metrics.auc', as in a push.json)"
    try:
        data = json.loads(storage.read_file(path, "monitor: --reference-metrics"))
    except json.JSONDecodeError as e:
        raise profile.MonitorError(f"{expected}, found text that is not JSON ({e})") from None
    data = data if isinstance(data, dict) else {}
    metrics = data.get("metrics") if isinstance(data.get("metrics"), dict) else {}
    value = data.get("auc", metrics.get("auc"))
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise profile.MonitorError(f"{expected}, found {'none' if value is None else repr(value)}")
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


def performance(current: str, reference: Optional[float], label_column: str, max_drop: float,
                prediction_column: str = "prediction", present: Optional[Collection[str]] = None
                ) -> Optional[dict[str, Any]]:
    """AUC of the prediction column against the labels in the current data, vs the reference AUC.

    None when nothing asks for it (no reference, no label and prediction columns); {"skipped": why} when a
    reference was given but the AUC cannot be computed. `present`: the current data's columns when already known
    (its profile's), so data without the two columns is not read again.
    """
    import pyarrow as pa  # pyarrow: only a check of labelled rows needs it here (profile loads it for data files)

    if current.lower().endswith(".json"):
        why = f"the current data {current} is a saved profile; the AUC needs rows with labels and predictions"
        return {"skipped": why} if reference is not None else None
    wanted = [label_column, prediction_column]
    known = present is not None and not all(c in present for c in wanted)
    table = pa.table({}) if known else profile.read_table(current, wanted)
    absent = [c for c in wanted if c not in (present if known else table.column_names)]
    if absent:
        why = (f"the current data {current} has no {' or '.join(repr(c) for c in absent)} column "
               f"(label column {label_column!r}, set with --label-column; predictions in {prediction_column!r})")
        return {"skipped": why} if reference is not None else None
    frame = table.select([label_column, prediction_column]).drop_null()
    labels = frame.column(label_column).cast(pa.int64()).to_numpy()
    value = auc(labels, frame.column(prediction_column).cast(pa.float64()).to_numpy())
    result: dict[str, Any] = {"metric": "auc", "value": round(value, 6), "rows": frame.num_rows}
    if not np.isfinite(value):
        result["skipped"] = f"the labels in {label_column!r} hold one class only: the AUC is undefined"
    elif reference is not None:
        result.update(reference=reference, threshold=max_drop, drop=round(reference - value, 6),
                      drift=bool(reference - value > max_drop))
    return result


def run_monitor(baseline: str, current: str, schema_path: Optional[str] = None, report_dir: Optional[str] = None,
                save_profile: Optional[str] = None, reference_metrics: Optional[str] = None,
                label_column: str = "label", max_auc_drop: float = 0.05,
                reference_predictions: Optional[str] = None) -> dict[str, Any]:
    """`flywheel monitor`: profiles (or loads) both sides, decides, adds performance decay when it can.

    reference_predictions: data with a prediction column (a request-log span from when the model was deployed,
    or its saved profile) whose predictions stand for the baseline's, for prediction drift against a training
    profile, which has none.
    """
    policy = drift.Policy.from_schema(schema_path or "", labels=(label_column,))
    columns = None
    if policy.features is not None:
        columns = [*policy.features, *policy.labels, policy.prediction_column]
    saved_first = current.lower().endswith(".json") and not baseline.lower().endswith(".json")
    first = profile.load(current if saved_first else baseline, columns, policy.kinds)
    # Without a schema, the side that is a saved profile says which columns are numeric (an all-empty
    # column is read by pyarrow as numbers).
    kinds = policy.kinds or {name: column.kind for name, column in first.columns.items()}
    second = profile.load(baseline if saved_first else current, columns, kinds)
    base, cur = (second, first) if saved_first else (first, second)
    if reference_predictions:
        name = policy.prediction_column
        reference = profile.load(reference_predictions, [name], {name: profile.NUMERIC})
        if name not in reference.columns:
            raise profile.MonitorError(f"monitor: reference predictions {reference_predictions} have no {name!r} "
                                       f"column; they have {sorted(reference.columns)}")
        base.columns[name] = reference.columns[name]
    perf = performance(current, reference_auc(reference_metrics) if reference_metrics else None, label_column,
                       max_auc_drop, policy.prediction_column, present=cur.columns)
    extra: dict[str, Any] = {}
    if perf is not None:
        extra["performance"] = perf
    result = check(base, cur, report_dir=report_dir, policy=policy, extra=extra)
    if save_profile:
        storage.write_text(save_profile, cur.to_json())
    return result
