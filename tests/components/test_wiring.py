"""Component constructors refuse wrong channel types and bad parameters at pipeline-build time, naming them."""

from __future__ import annotations

import pytest
import tensorflow_model_analysis as tfma
from tfx.orchestration import data_types
from tfx.types import channel_utils, standard_artifacts

from flywheel.components import data_gate, monitor
from flywheel.components.common import ui_artifacts
from flywheel.components.data_gate.component import DataGate
from flywheel.components.evaluate.component import Evaluate
from flywheel.components.ingest.component import Ingest
from flywheel.components.monitor.component import DriftMonitor
from flywheel.components.push.component import Push


def ch(kind):
    return channel_utils.as_channel([kind()])


def _gate(anomalies=standard_artifacts.ExampleAnomalies, statistics=standard_artifacts.ExampleStatistics, **kw):
    return DataGate(anomalies=ch(anomalies), statistics=ch(statistics), **kw)


def _evaluate(examples=standard_artifacts.Examples, model=standard_artifacts.Model, **kw):
    args = {"eval_config": tfma.EvalConfig(model_specs=[tfma.ModelSpec(label_key="y")]), "serving_dir": "/srv",
            "model_name": "taxi", **kw}
    return Evaluate(examples=ch(examples), model=ch(model), **args)


def _push(model=standard_artifacts.Model, blessing=standard_artifacts.ModelBlessing, profile=None, **kw):
    args = {"serving_dir": "/srv", "model_name": "taxi", **kw}
    return Push(model=ch(model), model_blessing=ch(blessing), evaluation=ch(standard_artifacts.ModelEvaluation),
                examples=ch(standard_artifacts.Examples), profile=ch(profile or monitor.spec.DataProfile), **args)


def test_well_wired_components_build_with_their_outputs():
    assert _gate().outputs["verdict"].type is data_gate.spec.GateVerdict
    assert set(_evaluate().outputs) == {"evaluation", "blessing", "report_html", "summary"}
    assert _push().outputs["pushed_model"].type is standard_artifacts.PushedModel
    ingest = Ingest(input_base="/data", schema=ch(standard_artifacts.Schema))
    assert set(ingest.outputs) == {"examples", "quarantine", "profile"}
    assert ingest.outputs["profile"].type is monitor.spec.DataProfile
    assert "drift_report" in DriftMonitor(profile=ch(monitor.spec.DataProfile)).outputs


def test_gate_evaluate_and_monitor_declare_the_reports_the_kfp_ui_renders():
    for component in (_gate(), _evaluate(), DriftMonitor(profile=ch(monitor.spec.DataProfile))):
        outputs = component.outputs
        assert outputs["report_html"].type is ui_artifacts.HTML and outputs["summary"].type is ui_artifacts.Markdown
    assert (ui_artifacts.HTML.TYPE_NAME, ui_artifacts.Markdown.TYPE_NAME) == ("system.HTML", "system.Markdown")


def _model_name_parameter(default="taxi", ptype=str):
    return data_types.RuntimeParameter(name="model-name", ptype=ptype, default=default)


def test_evaluate_and_push_take_the_model_name_as_a_run_parameter():
    parameter = _model_name_parameter()
    assert _evaluate(model_name=parameter).exec_properties["model_name"] is parameter
    assert _push(model_name=parameter).exec_properties["model_name"] is parameter


@pytest.mark.parametrize("build,error,message", [
    (lambda: _gate(anomalies=standard_artifacts.ExampleStatistics), TypeError,
     r"anomalies should be a Channel of type .*ExampleAnomalies.* \(got .*ExampleStatistics"),
    (lambda: _gate(statistics=standard_artifacts.Examples), TypeError,
     r"statistics should be a Channel of type .*ExampleStatistics.* \(got .*Examples"),
    (lambda: _gate(allowed_anomalies="payment_type:ENUM_TYPE_UNEXPECTED"), ValueError,
     r"DataGate: allowed_anomalies entry 'payment_type:ENUM_TYPE_UNEXPECTED': unknown anomaly type .*did you mean"),
    (lambda: _gate(allowed_anomalies=["SCHEMA_NEW_COLUMN"]), TypeError,
     r"DataGate: allowed_anomalies: expected a comma-separated str, got list"),
    (lambda: _evaluate(examples=standard_artifacts.Model), TypeError,
     r"examples should be a Channel of type .*Examples.* \(got .*Model"),
    (lambda: _evaluate(model=standard_artifacts.PushedModel), TypeError,
     r"model should be a Channel of type .*Model.* \(got .*PushedModel"),
    (lambda: _evaluate(eval_config=tfma.EvalConfig(model_specs=[tfma.ModelSpec(name="candidate")])), ValueError,
     r"Evaluate: eval_config must hold exactly one unnamed model spec .*\['candidate'\]"),
    (lambda: _evaluate(model_name=""), ValueError, r"Evaluate: model_name: expected a non-empty name"),
    (lambda: _evaluate(model_name=_model_name_parameter("a/b")), ValueError,
     r"Evaluate: model_name \(runtime parameter 'model-name', its default\): expected a non-empty name without '/', "
     r"got 'a/b'"),
    (lambda: _evaluate(model_name=_model_name_parameter(3, int)), TypeError,
     r"Evaluate: model_name: expected a str runtime parameter, got 'model-name' of type int"),
    (lambda: _evaluate(serving_dir=""), ValueError, r"Evaluate: serving_dir: expected the serving folder"),
    (lambda: _evaluate(example_splits=()), ValueError, r"Evaluate: example_splits: expected a non-empty tuple"),
    (lambda: _evaluate(example_splits="eval"), ValueError, r"Evaluate: example_splits: .*got 'eval'"),
    (lambda: _push(model=standard_artifacts.Examples), TypeError,
     r"model should be a Channel of type .*Model.* \(got .*Examples"),
    (lambda: _push(blessing=standard_artifacts.ModelEvaluation), TypeError,
     r"model_blessing should be a Channel of type .*ModelBlessing"),
    (lambda: _push(num_check_examples="8"), TypeError,
     r"Expected type <class 'int'> for parameter 'num_check_examples'"),
    (lambda: Ingest(input_base="/data", schema=ch(standard_artifacts.Examples)), TypeError,
     r"schema should be a Channel of type .*Schema.* \(got .*Examples"),
    (lambda: Ingest(input_base="/data", schema=ch(standard_artifacts.Schema), quarantine_limit=2.0), ValueError,
     r"Ingest: quarantine_limit must be within \[0, 1\], got 2.0"),
    (lambda: Ingest(input_base="/data", schema=ch(standard_artifacts.Schema), num_spans=0), ValueError,
     r"Ingest: num_spans must be >= 1, got 0"),
    (lambda: DriftMonitor(profile=ch(standard_artifacts.Examples)), TypeError,
     r"profile should be a Channel of type .*DataProfile.* \(got .*Examples"),
    (lambda: _push(profile=standard_artifacts.ExampleStatistics), TypeError,
     r"profile should be a Channel of type .*DataProfile.* \(got .*ExampleStatistics"),
])
def test_construction_errors(build, error, message):
    with pytest.raises(error, match=message):
        build()


def test_push_without_a_blessing_channel_names_the_input():
    with pytest.raises(ValueError, match=r"Push expects input 'model_blessing' to be a Channel of type .*Blessing"):
        Push(model=ch(standard_artifacts.Model), evaluation=ch(standard_artifacts.ModelEvaluation),
             examples=ch(standard_artifacts.Examples), profile=ch(monitor.spec.DataProfile), serving_dir="/srv",
             model_name="taxi")
