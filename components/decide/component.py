"""Decide: the thin component. Its decision's `retrain` property guards the training branch via tfx.dsl.Cond."""

from tfx.dsl.component.experimental.annotations import OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import standard_artifacts

from flywheel.components.common import ui_artifacts
from flywheel.components.decide import executor, spec


@component
def Decide(  # noqa: N802 - TFX component names are classes
    decision: OutputArtifact[spec.RetrainDecision],
    span: OutputArtifact[standard_artifacts.Integer],
    fingerprint: OutputArtifact[standard_artifacts.String],
    serving_version: OutputArtifact[standard_artifacts.Integer],
    report_html: OutputArtifact[ui_artifacts.HTML],
    summary: OutputArtifact[ui_artifacts.Markdown],
    data_root: Parameter[str],
    serving_dir: Parameter[str],
    model_name: Parameter[str] = "taxi",
    window: Parameter[int] = 3,
    if_drift: Parameter[int] = 1,
    schema_path: Parameter[str] = "",
) -> None:
    """Whether to retrain: new data (the training window's fingerprint is not the serving model's) that
    drifted from the serving model's training profile, or no model to compare with.

    The decision is `flywheel.retraining.plan`'s, the one `flywheel retrain` takes. It reads the data
    and the serving folder every time: a recurring run must not take it from a cache.

    Args:
      data_root: a folder of span-N folders (a folder or file without them is span 0).
      serving_dir, model_name: where the serving model and its push.json are.
      window: how many spans, ending at the newest, the model trains on.
      if_drift: 1: retrain only when the new data drifted (or nothing is in serving); 0: on any new data.
      schema_path: the TFDV schema (rows are typed as Ingest types them; its drift thresholds).

    Outputs:
      decision: decision.json and, when drift was checked, the drift report under span-N/; custom
        properties `retrain` (1/0), `verdict` (retrain | no_drift | nothing_new), `reason`, `new_data`,
        `drift_detected` (absent with no baseline), `spans`, `serving_version`, `report`.
      span, fingerprint: what Ingest must read (its `span` and the fingerprint it checks).
      serving_version: the version in serving (0: none), which Evaluate and Push are keyed on.
      report_html, summary: system.HTML / system.Markdown for the KFP UI: the drift report (or the decision,
        when drift was not checked) and the decision with the drift table.
    """
    executor.run_decide(decision, span, fingerprint, serving_version, data_root, serving_dir, model_name,
                        window, bool(if_drift), schema_path, report_html, summary)
