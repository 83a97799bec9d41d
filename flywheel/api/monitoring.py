"""Drift between two datasets (or saved profiles), with a model in serving standing for its training profile."""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Optional

from flywheel import storage
from flywheel.api.errors import UsageError, file_argument, folder_argument
from flywheel.monitoring.monitor import REPORT_FILE, run_monitor
from flywheel.pipelines import registry
from flywheel.store import layout


@dataclasses.dataclass(frozen=True)
class MonitorResult:
    """The drift monitor's verdict: per-feature checks with values and thresholds, row counts, and the
    report's path when one was written."""

    drift_detected: bool
    features: dict[str, Any]
    rows: dict[str, int]
    report: Optional[str]
    details: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {**self.details, "drift_detected": self.drift_detected, "features": self.features, "rows": self.rows,
                "report": self.report}

    @property
    def drifted(self) -> list[str]:
        return [name for name, f in self.features.items() if f.get("drift")]


def _served_baseline(baseline: str) -> tuple[str, str]:
    """A model's folder in serving (`<serving>/<model>`) stands for the training profile of the version it serves
    by default (the stable one of a rollout, else the newest): (that profile's path, where it came from). Any
    other path is returned as it is, with ""."""

    serving_dir, model = os.path.split(baseline.rstrip("/"))
    if not storage.filesystem(baseline).isdir(baseline):
        return baseline, ""
    if layout.is_complete(baseline) or storage.exists(os.path.join(baseline, layout.MANIFEST_FILE)):
        return _version_baseline(baseline)
    if not layout.versions(serving_dir, model):
        return baseline, ""
    try:
        served = layout.current(serving_dir, model)
    except layout.ManifestError as e:
        raise UsageError(f"monitor: --baseline {baseline}: {e}") from e
    name = served.manifest.get("baseline_profile") if served else None
    if not name:
        raise UsageError(f"monitor: --baseline {baseline}: expected the version it serves by default "
                         f"({served.version if served else 'none'}) to keep a training profile "
                         "(baseline_profile.json, named in its push.json), found none")
    path = os.path.join(served.path, name)
    return path, f"{path}, the training profile of version {served.version}, which {model} serves by default"


def _version_baseline(version_path: str) -> tuple[str, str]:
    """A version folder (`<serving>/<model>/<version>`) stands for its own training profile (the
    baseline_profile.json its push.json names)."""
    try:
        name = layout.version_manifest(version_path).get("baseline_profile")
    except layout.ManifestError as e:
        raise UsageError(f"monitor: --baseline {version_path}: {e}") from e
    if not name:
        raise UsageError(f"monitor: --baseline {version_path}: expected a version folder that keeps a training "
                         f"profile (baseline_profile.json, named in its {layout.MANIFEST_FILE}), found none")
    path = os.path.join(version_path, name)
    return path, f"{path}, the training profile of version {os.path.basename(version_path.rstrip('/'))}"


def _schema_beside(baseline: str) -> tuple[Optional[str], str]:
    """The schema of the pipeline that pushed a `baseline_profile.json` (the push.json beside it names the model,
    and a registered pipeline of that name has the schema), with where it came from; (None, "") otherwise."""

    folder = os.path.dirname(baseline)
    manifest_path = os.path.join(folder, layout.MANIFEST_FILE)
    if not baseline.lower().endswith(".json") or not storage.filesystem(manifest_path).exists(manifest_path):
        return None, ""
    try:
        name = layout.read_manifest(manifest_path).get("model_name")
        path = registry.get(name).schema_path() if isinstance(name, str) else None
    except (layout.ManifestError, registry.UnknownPipelineError):
        return None, ""
    if path is None:
        return None, ""
    return path, f"{path}, the schema of pipeline {name!r} (named by {manifest_path})"


def monitor(baseline: str, current: str, *, schema: Optional[str] = None, report_dir: Optional[str] = None,
            save_profile: Optional[str] = None, reference_metrics: Optional[str] = None,
            label_column: str = "label", reference_predictions: Optional[str] = None) -> MonitorResult:
    """Drift between two datasets (CSV/Parquet file or folder, or a saved profile .json); reference_predictions:
    data with a `prediction` column (a request-log span) that stands for the baseline's predictions. Without a
    schema, a model's own `baseline_profile.json` brings its pipeline's (see `_schema_beside`)."""
    folder_argument(report_dir, "monitor: --report")
    file_argument(save_profile, "monitor: --save-profile")
    baseline, baseline_from = _served_baseline(baseline)
    schema_from = ""
    if not schema:
        schema, schema_from = _schema_beside(baseline)
    try:
        found = run_monitor(baseline, current, schema_path=schema, report_dir=report_dir, save_profile=save_profile,
                            reference_metrics=reference_metrics, label_column=label_column,
                            reference_predictions=reference_predictions)
    except (ValueError, OSError) as e:
        raise UsageError(str(e)) from e
    details = {k: v for k, v in found.items() if k not in ("drift_detected", "features", "rows")}
    if schema_from:
        details["schema_from"] = schema_from
    if baseline_from:
        details["baseline_from"] = baseline_from
    return MonitorResult(drift_detected=bool(found["drift_detected"]), features=found["features"],
                         rows=found["rows"], report=os.path.join(report_dir, REPORT_FILE) if report_dir else None,
                         details=details)
