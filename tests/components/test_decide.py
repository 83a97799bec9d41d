"""The continuous-training decision (`retraining.plan`) and the Decide component's execution on real spans."""

from __future__ import annotations

import json
import shutil

import pytest
from tfx.types import standard_artifacts

from flywheel import retraining, schemas
from flywheel.components import ingest
from flywheel.components.decide import executor, spec
from flywheel.components.ingest import executor as ingest_executor
from flywheel.data import inputs, parsing
from flywheel.monitoring import profile
from tests.components.test_ingest_executor import TESTDATA

SCHEMA = schemas.schema_path("taxi")


def _serve(serving_dir, version: int, fingerprint: str | None, baseline: profile.DatasetProfile | None = None):
    folder = serving_dir / "taxi" / str(version)
    folder.mkdir(parents=True)
    manifest = {"version": version}
    if fingerprint is not None:
        manifest["data_fingerprint"] = fingerprint
    if baseline is not None:
        (folder / "baseline_profile.json").write_text(baseline.to_json())
        manifest["baseline_profile"] = "baseline_profile.json"
    (folder / "push.json").write_text(json.dumps(manifest))
    (folder / "saved_model.pb").write_bytes(b"")


def _span_profile(data, span: int) -> profile.DatasetProfile:
    from flywheel.monitoring import monitor

    return monitor.profile_span(str(data), span, SCHEMA)[0]


def _ui(tmp_path):
    from flywheel.components.common import ui_artifacts

    html, markdown = ui_artifacts.HTML(), ui_artifacts.Markdown()
    html.uri, markdown.uri = str(tmp_path / "ui" / "report.html"), str(tmp_path / "ui" / "summary.md")
    return html, markdown


def _outputs(tmp_path):
    decision = spec.RetrainDecision()
    decision.uri = str(tmp_path / "decision")
    values = []
    for name, cls in (("span", standard_artifacts.Integer), ("fingerprint", standard_artifacts.String),
                      ("serving_version", standard_artifacts.Integer)):
        artifact = cls()
        artifact.uri = str(tmp_path / name / "value")
        (tmp_path / name).mkdir()
        values.append(artifact)
    return decision, values


def test_no_model_in_serving_retrains_on_the_window(tmp_path):
    plan = retraining.plan(TESTDATA, str(tmp_path / "serving"), "taxi", 2, SCHEMA, if_drift=True)
    assert plan.retrain and plan.verdict == retraining.RETRAIN and plan.new_data
    assert plan.window == (1, 2) and plan.span == 2 and plan.serving_version is None
    assert plan.fingerprint == inputs.resolve_input(TESTDATA, 2, 2).fingerprint
    assert plan.drift_decision["drift_detected"] is None and "no baseline" in plan.reason


def test_serving_trained_on_this_data_is_nothing_new_and_skips_the_drift_check(tmp_path, monkeypatch):
    serving = tmp_path / "serving"
    _serve(serving, 4, inputs.resolve_input(TESTDATA, 2, 2).fingerprint)
    from flywheel.monitoring import monitor

    monkeypatch.setattr(monitor, "profile_span", lambda *a: pytest.fail("nothing new must not profile the span"))
    plan = retraining.plan(TESTDATA, str(serving), "taxi", 2, SCHEMA)
    assert not plan.retrain and plan.verdict == retraining.NOTHING_NEW and not plan.new_data
    assert plan.serving_version == 4 and "nothing new: serving version 4 was trained on spans 1, 2 " in plan.reason
    monkeypatch.undo()  # a different window is different data
    assert retraining.plan(TESTDATA, str(serving), "taxi", 1, SCHEMA).verdict == retraining.RETRAIN


def test_new_data_without_drift_waits_only_when_asked_to(tmp_path):
    data = tmp_path / "data"
    shutil.copytree(TESTDATA, data)
    serving = tmp_path / "serving"
    _serve(serving, 1, inputs.resolve_input(str(data), 1, 1).fingerprint, _span_profile(data, 2))
    gated = retraining.plan(str(data), str(serving), "taxi", 2, SCHEMA, if_drift=True)
    assert gated.new_data and gated.drift_decision["drift_detected"] is False and gated.verdict == retraining.NO_DRIFT
    assert not gated.retrain and gated.reason == "new data in span 2 did not drift (no drift): serving keeps version 1"
    eager = retraining.plan(str(data), str(serving), "taxi", 2, SCHEMA, if_drift=False)
    assert eager.retrain and eager.reason.startswith("retrain on spans 1, 2: new data")


def test_drifted_new_span_retrains(tmp_path):
    data = tmp_path / "data"
    shutil.copytree(TESTDATA, data)
    csv = data / "span-2" / "part-0.csv"
    header, *rows = csv.read_text().splitlines()
    fare = header.split(",").index("fare")
    shifted = []
    for row in rows:
        cells = row.split(",")
        cells[fare] = str(round(float(cells[fare] or 0) * 5 + 40, 2))
        shifted.append(",".join(cells))
    csv.write_text("\n".join([header, *shifted]) + "\n")
    serving = tmp_path / "serving"
    _serve(serving, 3, "an older fingerprint", _span_profile(TESTDATA, 2))
    plan = retraining.plan(str(data), str(serving), "taxi", 2, SCHEMA, report_dir=str(tmp_path / "r"), if_drift=True)
    assert plan.retrain and plan.drift_decision["drift_detected"] is True and "fare" in plan.reason
    assert plan.drift_decision["report"] == str(tmp_path / "r" / "span-2" / "report.html")


def test_a_folder_without_spans_is_span_0(tmp_path):
    flat = tmp_path / "flat"
    shutil.copytree(TESTDATA + "/span-1", flat)
    plan = retraining.plan(str(flat), str(tmp_path / "serving"), "taxi", 3, SCHEMA)
    assert plan.span == 0 and plan.window == (0,) and plan.retrain and plan.drift["rows"]["current"] > 0


def test_window_below_one_is_refused(tmp_path):
    with pytest.raises(inputs.InputError, match="window: expected >= 1 span, got 0"):
        retraining.plan(TESTDATA, str(tmp_path), "taxi", 0, SCHEMA)


def test_decide_records_the_plan_for_the_condition_and_the_training_branch(tmp_path):
    decision, (span, fingerprint, serving_version) = _outputs(tmp_path)
    result = executor.run_decide(decision, span, fingerprint, serving_version, TESTDATA, str(tmp_path / "serving"),
                                 "taxi", 2, True, SCHEMA)
    assert decision.get_int_custom_property(spec.RETRAIN) == 1
    assert decision.get_string_custom_property(spec.VERDICT) == "retrain"
    assert decision.get_string_custom_property(spec.SPANS) == "1,2"
    assert decision.get_int_custom_property(spec.SERVING_VERSION) == 0
    assert not decision.mlmd_artifact.custom_properties.get(spec.DRIFT_DETECTED)  # no baseline: not drift
    assert json.loads((tmp_path / "decision" / spec.DECISION_FILE).read_text()) == result
    # the value artifacts are files TFX's Kubeflow entrypoint reads back as output parameters
    assert (span.read(), serving_version.read()) == (2, 0)
    assert fingerprint.read() == inputs.resolve_input(TESTDATA, 2, 2).fingerprint == result["fingerprint"]
    reread = standard_artifacts.Integer()
    reread.uri = span.uri
    assert reread.read() == 2


def test_decide_says_nothing_new_when_serving_has_this_data(tmp_path):
    serving = tmp_path / "serving"
    _serve(serving, 7, inputs.resolve_input(TESTDATA, 2, 2).fingerprint)
    decision, (span, fingerprint, serving_version) = _outputs(tmp_path)
    html, markdown = _ui(tmp_path)
    executor.run_decide(decision, span, fingerprint, serving_version, TESTDATA, str(serving), "taxi", 2, False,
                        SCHEMA, html, markdown)
    assert decision.get_int_custom_property(spec.RETRAIN) == 0
    assert decision.get_string_custom_property(spec.VERDICT) == "nothing_new"
    assert serving_version.read() == 7
    page, summary = (tmp_path / "ui" / "report.html").read_text(), (tmp_path / "ui" / "summary.md").read_text()
    assert "nothing_new" in page and "serving version 7 was trained on spans 1, 2 " in page
    assert summary.startswith("# Continuous training: no retraining (nothing new)") and "Drift monitor" not in summary


def test_decide_shows_the_drift_report_in_the_kfp_ui_when_drift_was_checked(tmp_path):
    data = tmp_path / "data"
    shutil.copytree(TESTDATA, data)
    serving = tmp_path / "serving"
    _serve(serving, 1, "older data", _span_profile(data, 2))
    decision, (span, fingerprint, serving_version) = _outputs(tmp_path)
    html, markdown = _ui(tmp_path)
    result = executor.run_decide(decision, span, fingerprint, serving_version, str(data), str(serving), "taxi", 2,
                                 True, SCHEMA, html, markdown)
    assert result["verdict"] == "no_drift" and result["report"].endswith("span-2/report.html")
    assert (tmp_path / "ui" / "report.html").read_text() == open(result["report"]).read()
    summary = (tmp_path / "ui" / "summary.md").read_text()
    assert summary.startswith("# Continuous training: no retraining (no drift)")
    assert "## Drift monitor: NO DRIFT" in summary and "| fare | numeric | ok |" in summary


def test_ingest_refuses_data_that_changed_after_the_decision(tmp_path):
    resolved = inputs.resolve_input(TESTDATA, 2, 2)
    props = {ingest.spec.INPUT_BASE_KEY: TESTDATA, ingest.spec.EXPECTED_FINGERPRINT_KEY: resolved.fingerprint}
    ingest_executor.check_expected_fingerprint(resolved, props)
    ingest_executor.check_expected_fingerprint(resolved, {ingest.spec.INPUT_BASE_KEY: TESTDATA})
    props[ingest.spec.EXPECTED_FINGERPRINT_KEY] = "0" * 64
    with pytest.raises(parsing.IngestError, match=r"expected data fingerprint 000000000000…, but spans \[1, 2\]"):
        ingest_executor.check_expected_fingerprint(resolved, props)

