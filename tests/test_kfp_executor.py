"""flywheel.kfp_executor, the compiled spec's container entrypoint: TFX's Kubeflow v2 entrypoint resolves the
KFP UI's types (system.HTML, system.Markdown) and flywheel's own to their classes, which it cannot without it.

The last test runs DataGate's task as the spec says, in a separate process: its own `command` and `args`, an
ExecutorInput built with KFP's protos from its component's input and output definitions.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2
from tensorflow_metadata.proto.v0 import anomalies_pb2, statistics_pb2
from tfx.orchestration.kubeflow.v2 import compiler_utils
from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_entrypoint_utils

from flywheel import kfp_executor
from flywheel.components import data_gate, monitor
from flywheel.components.common import ui_artifacts
from tests.conftest import REPO

SPEC, _ = yaml.safe_load_all(open(os.path.join(REPO, "kubeflow", "taxi_pipeline.yaml"), encoding="utf-8").read())
GATE = SPEC["components"]["DataGate"]


def _artifact_type(definition: dict) -> pipeline_spec_pb2.ArtifactTypeSchema:
    return json_format.ParseDict(definition["artifactType"], pipeline_spec_pb2.ArtifactTypeSchema())


def _outputs(uris: dict[str, str]) -> pipeline_spec_pb2.ExecutorInput:
    """An ExecutorInput whose outputs are DataGate's, typed as the compiled spec declares them."""
    executor_input = pipeline_spec_pb2.ExecutorInput()
    for key, uri in uris.items():
        executor_input.outputs.artifacts[key].artifacts.add(
            name=f"DataGate/{key}", uri=uri, type=_artifact_type(GATE["outputDefinitions"]["artifacts"][key]))
    return executor_input


@pytest.fixture
def tfx_titles_only(monkeypatch):
    """TFX's own title-to-class map, as in a process that never imported flywheel.kfp_executor."""
    own = {k: v for k, v in compiler_utils.TITLE_TO_CLASS_PATH.items() if k not in kfp_executor.CLASS_PATHS}
    monkeypatch.setattr(compiler_utils, "TITLE_TO_CLASS_PATH", own)


def test_without_the_registration_tfx_cannot_resolve_a_system_html_output(tfx_titles_only):
    executor_input = _outputs({data_gate.spec.REPORT_HTML_KEY: "gs://bucket/root/DataGate/report_html"})
    with pytest.raises(ImportError, match="Could not import system.HTML"):
        kubeflow_v2_entrypoint_utils.parse_raw_artifact_dict(executor_input.outputs.artifacts)


def test_the_registration_resolves_the_ui_types_and_ours_to_their_classes(tfx_titles_only):
    uris = {key: f"gs://bucket/root/DataGate/{key}" for key in GATE["outputDefinitions"]["artifacts"]}
    kfp_executor.register_artifact_types()
    parsed = kubeflow_v2_entrypoint_utils.parse_raw_artifact_dict(_outputs(uris).outputs.artifacts)
    assert {key: type(artifacts[0]) for key, artifacts in parsed.items()} == {
        data_gate.spec.REPORT_HTML_KEY: ui_artifacts.HTML, data_gate.spec.SUMMARY_KEY: ui_artifacts.Markdown,
        data_gate.spec.VERDICT_KEY: data_gate.spec.GateVerdict}
    assert {key: artifacts[0].uri for key, artifacts in parsed.items()} == uris
    for title, path in kfp_executor.CLASS_PATHS.items():
        schema = pipeline_spec_pb2.ArtifactTypeSchema(instance_schema=f"title: {title}\ntype: object\n")
        assert kubeflow_v2_entrypoint_utils._retrieve_class_path(schema) == path  # noqa: SLF001
    assert monitor.spec.DriftReport.TYPE_NAME in kfp_executor.CLASS_PATHS
    assert monitor.spec.DataProfile.TYPE_NAME in kfp_executor.CLASS_PATHS


def _split_artifact(root, name: str, filename: str, proto, definition: dict) -> pipeline_spec_pb2.RuntimeArtifact:
    folder = root / name / "Split-eval"
    folder.mkdir(parents=True)
    (folder / filename).write_bytes(proto.SerializeToString())
    artifact = pipeline_spec_pb2.RuntimeArtifact(name=f"upstream/{name}", uri=str(root / name),
                                                 type=_artifact_type(definition))
    artifact.metadata.update({"split_names": '["eval"]'})
    return artifact


@pytest.mark.slow  # a component's Beam job, as its own process
def test_the_data_gate_task_runs_from_its_own_command_and_writes_what_the_ui_shows(tmp_path):
    anomalies = anomalies_pb2.Anomalies()
    reason = anomalies.anomaly_info["payment_type"].reason.add()
    reason.type = anomalies_pb2.AnomalyInfo.ENUM_TYPE_UNEXPECTED_STRING_VALUES
    reason.description = "Examples contain values missing from the schema: Bitcoin (<1%)."
    statistics = statistics_pb2.DatasetFeatureStatisticsList()
    statistics.datasets.add(num_examples=3)
    uris = {key: str(tmp_path / "root" / "DataGate" / key) for key in GATE["outputDefinitions"]["artifacts"]}
    executor_input = _outputs(uris)
    inputs = GATE["inputDefinitions"]["artifacts"]
    for key, filename, proto in (("anomalies", "SchemaDiff.pb", anomalies), ("statistics", "FeatureStats.pb",
                                                                              statistics)):
        executor_input.inputs.artifacts[key].artifacts.append(
            _split_artifact(tmp_path / "upstream", key, filename, proto, inputs[key]))
    executor_input.inputs.parameter_values[data_gate.spec.ALLOWED_ANOMALIES_KEY].string_value = ""
    executor_input.outputs.output_file = str(tmp_path / "root" / "DataGate" / "executor_output.json")

    container = SPEC["deploymentSpec"]["executors"][GATE["executorLabel"]]["container"]
    invocation = json_format.MessageToJson(executor_input)
    command = [sys.executable, *container["command"][1:],
               *(invocation if arg == "{{$}}" else arg for arg in container["args"])]
    assert container["command"][0] == "python" and container["command"][1:] == ["-m", "flywheel.kfp_executor"]
    done = subprocess.run(command, cwd=str(tmp_path), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]

    html = open(uris[data_gate.spec.REPORT_HTML_KEY], encoding="utf-8").read()
    assert "<title>flywheel data validation gate</title>" in html and "Bitcoin" in html
    markdown = open(uris[data_gate.spec.SUMMARY_KEY], encoding="utf-8").read()
    assert markdown.startswith("## Data validation gate: FAILED\n")
    assert "| eval | payment_type | ENUM_TYPE_UNEXPECTED_STRING_VALUES | " in markdown
    verdict = os.path.join(uris[data_gate.spec.VERDICT_KEY], data_gate.spec.VERDICT_FILE)
    assert json.load(open(verdict))["passed"] is False
    output = json_format.Parse(open(executor_input.outputs.output_file).read(), pipeline_spec_pb2.ExecutorOutput())
    assert {key: output.artifacts[key].artifacts[0].uri for key in uris} == uris
    assert output.artifacts[data_gate.spec.VERDICT_KEY].artifacts[0].metadata[data_gate.spec.PASSED] == 0
