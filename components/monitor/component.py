"""DriftMonitor: the thin component. Its report's `drift_detected` property can guard retraining via tfx.dsl.Cond."""

from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import standard_artifacts

from flywheel.components.monitor import spec


@component
def DriftMonitor(  # noqa: N802 - TFX component names are classes
    examples: InputArtifact[standard_artifacts.Examples],
    drift_report: OutputArtifact[spec.DriftReport],
    baseline_profile: Parameter[str] = "",
    schema_path: Parameter[str] = "",
) -> None:
    """Compares the newest span of `examples` with the serving model's training profile ('' = none: drift)."""
    from flywheel.components.monitor import executor

    executor.run_drift_monitor(examples, drift_report, baseline_profile, schema_path)
