"""DriftMonitor: the thin component. Its report's `drift_detected` property can guard retraining via tfx.dsl.Cond."""

from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component

from flywheel.components.monitor import spec


@component
def DriftMonitor(  # noqa: N802 - TFX component names are classes
    profile: InputArtifact[spec.DataProfile],
    drift_report: OutputArtifact[spec.DriftReport],
    baseline_profile: Parameter[str] = "",
    schema_path: Parameter[str] = "",
) -> None:
    """Compares the newest span's profile with the serving model's training profile.

    Args:
      profile: Ingest's per-span profiles (flywheel.DataProfile); the newest span is the current data.
      baseline_profile: path of the serving model's training profile ('' = no model in serving yet).
      schema_path: the TFDV schema whose drift_comparator thresholds apply ('' = defaults).

    Outputs:
      drift_report: drift.json + report.html; custom properties `drift_detected` (1/0) and `reason`.
    """
    from flywheel.components.monitor import executor

    executor.run_drift_monitor(profile, drift_report, baseline_profile, schema_path)
