"""DriftMonitor: the thin component. Its report's `retrain` property guards retraining via tfx.dsl.Cond."""

from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component

from flywheel.components.common import ui_artifacts
from flywheel.components.monitor import executor, spec


@component
def DriftMonitor(  # noqa: N802 - TFX component names are classes
    profile: InputArtifact[spec.DataProfile],
    drift_report: OutputArtifact[spec.DriftReport],
    report_html: OutputArtifact[ui_artifacts.HTML],
    summary: OutputArtifact[ui_artifacts.Markdown],
    baseline_profile: Parameter[str] = "",
    schema_path: Parameter[str] = "",
) -> None:
    """Compares the newest span's profile with the serving model's training profile (`monitor.check`).

    Args:
      profile: Ingest's per-span profiles (flywheel.DataProfile); the newest span is the current data.
      baseline_profile: path of the serving model's training profile ('' = no model in serving yet).
      schema_path: the TFDV schema: its features, its label sources (not in the SERVING environment; compared
        as label drift) and its drift_comparator thresholds ('' = every column, default thresholds).

    Outputs:
      drift_report: drift.json + report.html; custom properties `retrain` (1 on drift or no baseline, else 0),
        `drift_detected` (1/0, absent without a baseline), `reason`, `report` (the HTML's path) and `span`.
      report_html: the same report as a system.HTML artifact (the file at its uri), shown in the KFP UI.
      summary: the verdict, its reason and a table of the features as a system.Markdown artifact, shown in the
        KFP UI.
    """
    executor.run_drift_monitor(profile, drift_report, baseline_profile, schema_path, report_html, summary)
