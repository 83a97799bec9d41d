"""DataGate: the thin component. Its verdict's `passed` property guards downstream stages via tfx.dsl.Cond."""

from typing import Optional

from tfx import types
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import standard_artifacts

from flywheel.components.common import ui_artifacts
from flywheel.components.data_gate import executor, gate, spec
from flywheel.components.ingest.spec import Quarantine


@component
def DataGate(  # noqa: N802 - TFX component names are classes
    anomalies: InputArtifact[standard_artifacts.ExampleAnomalies],
    statistics: InputArtifact[standard_artifacts.ExampleStatistics],
    verdict: OutputArtifact[spec.GateVerdict],
    report_html: OutputArtifact[ui_artifacts.HTML],
    summary: OutputArtifact[ui_artifacts.Markdown],
    quarantine: InputArtifact[Quarantine] = None,
    allowed_anomalies: Parameter[str] = "",
) -> None:
    """Passes when every anomaly is in the allow-list ('TYPE', 'feature:TYPE' or 'feature:*', comma-separated)."""
    executor.run_gate(anomalies, statistics, verdict, allowed_anomalies, report_html, summary, quarantine)


class DataGate(DataGate):  # noqa: F811 - the decorator's class, checked at construction; same executor path
    """Reads ExampleValidator's `anomalies` and StatisticsGen's `statistics`; outputs `verdict` (GateVerdict),
    `report_html` and `summary` (what the KFP UI shows).

    Args:
        anomalies: ExampleAnomalies channel.
        statistics: ExampleStatistics channel.
        quarantine: Ingest's flywheel.Quarantine channel (optional): the report says how many rows were
            quarantined, of how many read, and where they are.
        allowed_anomalies: 'TYPE', 'feature:TYPE' or 'feature:*' entries, comma-separated; an unknown anomaly
            type is a ValueError here, when the pipeline is built.

    Outputs:
        verdict: flywheel.GateVerdict with `verdict.json` and `report.html`; custom properties `passed` (1/0,
            what tfx.dsl.Cond tests), `num_anomalies`, `num_blocking`, `report`.
        report_html: the same report as a system.HTML artifact (the file at its uri), shown in the KFP UI.
        summary: the verdict and the anomalies table as a system.Markdown artifact, shown in the KFP UI.
    """

    def __init__(self, anomalies: types.BaseChannel, statistics: types.BaseChannel, allowed_anomalies: str = "",
                 quarantine: Optional[types.BaseChannel] = None):
        if not isinstance(allowed_anomalies, str):
            raise TypeError(f"DataGate: allowed_anomalies: expected a comma-separated str, got "
                            f"{type(allowed_anomalies).__name__} {allowed_anomalies!r}")
        gate.parse_allow_list(allowed_anomalies)
        super().__init__(anomalies=anomalies, statistics=statistics, allowed_anomalies=allowed_anomalies,
                         **({"quarantine": quarantine} if quarantine is not None else {}))
