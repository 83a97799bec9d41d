"""DataGate: the thin component. Its verdict's `passed` property guards downstream stages via tfx.dsl.Cond."""

from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import standard_artifacts

from flywheel.components.data_gate import spec


@component
def DataGate(  # noqa: N802 - TFX component names are classes
    anomalies: InputArtifact[standard_artifacts.ExampleAnomalies],
    statistics: InputArtifact[standard_artifacts.ExampleStatistics],
    verdict: OutputArtifact[spec.GateVerdict],
    allowed_anomalies: Parameter[str] = "",
) -> None:
    """Passes when every anomaly is in the allow-list ('TYPE', 'feature:TYPE' or 'feature:*', comma-separated)."""
    from flywheel.components.data_gate import executor

    executor.run_gate(anomalies, statistics, verdict, allowed_anomalies)
