"""The harness that runs a compiled Kubeflow spec the way KFP v2 runs it (tests/kfp_harness.py), its own pieces:
small specs written here, whose tasks are `python -c` scripts, so that each rule of the harness is shown to fail
when it should. tests/e2e/test_kfp_nights.py runs the taxi spec over recurring nights.
"""

from __future__ import annotations

import dataclasses
import os

import pytest
import yaml

from flywheel.pipelines.taxi import kubeflow_runner as kr
from tests import kfp_harness as h
from tests.conftest import REPO

VERDICT = "inputs.artifacts['_DataGate.verdict'].artifacts[0].metadata['passed']"


def compile_for_test(folder: str) -> str:
    """The current spec, blessing any model (min AUC 0.01, any drop) so that a few train steps push."""
    cfg = dataclasses.replace(kr.kubeflow_config(), min_auc=0.01, max_auc_drop=1.0, eval_steps=5)
    return kr.compile_pipeline(os.path.join(folder, "taxi_pipeline.yaml"), cfg=cfg)


# --- CEL ------------------------------------------------------------------------------------------------------

def _inputs(passed, uri="/pipeline-root/verdict"):
    return {"_DataGate.verdict": [{"uri": uri, "metadata": {"passed": passed}}]}


@pytest.mark.parametrize("expression, passed, expected", [
    (f"({VERDICT} == 1.0)", 1.0, True),
    (f"({VERDICT} == 1.0)", 0.0, False),
    (f"int({VERDICT}) == 1", 1.0, True),
    (f"int({VERDICT}) == 1", 0.0, False),
    (f"!(({VERDICT} == 1.0))", 0.0, True),
    (f"(({VERDICT} > 0.5) && "
     f"(inputs.artifacts['_DataGate.verdict'].artifacts[0].uri == '/pipeline-root/verdict'))", 1.0, True),
    (f"(({VERDICT} < 0.5) || (({VERDICT} + 1.0) == 3.0))", 2.0, True),
    (f"(({VERDICT} == 1.0)) && (({VERDICT} == 1.0))", 0.0, False),
])
def test_cel_evaluates_tfx_expressions(expression, passed, expected):
    assert h.evaluate_condition(expression, _inputs(passed)) is expected


def test_cel_evaluates_the_conditions_of_the_compiled_spec(tmp_path):
    spec = h.load_spec(compile_for_test(str(tmp_path)))
    conditions = {task.trigger_policy.condition for task in spec.pipeline.root.dag.tasks.values()
                  if task.trigger_policy.condition}
    assert conditions
    for condition in conditions:
        inputs = {key: [{"uri": "/v", "metadata": {"passed": 1.0, "retrain": 1.0}}]
                  for key in ("_DataGate.verdict", "_Decide.decision")}
        assert h.evaluate_condition(condition, inputs) is True, condition


@pytest.mark.parametrize("expression, message", [
    ("inputs.parameter_values['x'] == 1.0", "expected artifacts, got 'parameter_values'"),
    (f"size({VERDICT}) > 0", "unsupported 'size'"),
    (f"{VERDICT} >= 1.0", "expected a value, got '='|unsupported text"),
    (f"{VERDICT} != 1.0", "unsupported text"),
    (f"{VERDICT}", "evaluates to 1.0, not a boolean"),
    (f"{VERDICT} == 'yes'", "cannot compare 1.0 == 'yes'"),
    ("inputs.artifacts['_DataGate.verdict'].artifacts[0].metadata['blessed'] == 1.0", "has no metadata 'blessed'"),
    ("inputs.artifacts['model'].artifacts[0].uri == ''", "no input artifact 'model'"),
    ("inputs.artifacts['_DataGate.verdict'].artifacts[1].uri == ''", "no index 1"),
])
def test_cel_fails_loudly_outside_tfx_grammar(expression, message):
    with pytest.raises(h.ConditionError, match=message):
        h.evaluate_condition(expression, _inputs(1.0))


# --- small specs whose tasks are python -c scripts --------------------------------------------------------------

STEP = """
import json, os, sys
executor_input = json.loads(sys.argv[1])
with open(sys.argv[2], "a") as log:
    log.write(sys.argv[3] + "\\n")
for path in sys.argv[4:]:
    if not os.path.isdir(path):
        sys.exit(f"{path}: no such directory")
x = executor_input["inputs"].get("parameterValues", {}).get("x", 1.0)
outputs = executor_input["outputs"]
output = {"artifacts": {key: {"artifacts": [{"metadata": {"passed": x}}]} for key in outputs.get("artifacts", {})},
          "parameterValues": {key: x for key in outputs.get("parameters", {})}}
with open(outputs["outputFile"], "w") as f:
    json.dump(output, f)
"""


def small_spec(folder, tasks, platform=None) -> str:
    """A PipelineSpec of STEP tasks. tasks: name -> dict(inputs=TaskInputsSpec dict, cache=bool, condition=str,
    after=[names], reads=[paths the script checks], container=dict(command, args) instead of STEP); each task
    has output artifact `out`, output parameter `y`."""
    components, executors, dag = {}, {}, {}
    log = os.path.join(folder, "executions.log")
    for name, task in tasks.items():
        inputs = task.get("inputs", {})
        components[name] = {
            "executorLabel": f"{name}_executor",
            "inputDefinitions": {
                "parameters": {k: {"parameterType": "NUMBER_DOUBLE"} for k in inputs.get("parameters", {})},
                "artifacts": {k: {"artifactType": {"schemaTitle": "system.Artifact"}}
                              for k in inputs.get("artifacts", {})}},
            "outputDefinitions": {"artifacts": {"out": {"artifactType": {"schemaTitle": "system.Artifact"}}},
                                  "parameters": {"y": {"parameterType": "NUMBER_DOUBLE"}}}}
        executors[f"{name}_executor"] = {"container": {
            "image": "python:3.10", **task.get("container", {
                "command": ["python", "-c", STEP], "args": ["{{$}}", log, name, *task.get("reads", [])]})}}
        dag[name] = {"componentRef": {"name": name}, "taskInfo": {"name": name}, "inputs": inputs,
                     "dependentTasks": task.get("after", []),
                     "cachingOptions": {"enableCache": task.get("cache", True)}}
        if task.get("condition"):
            dag[name]["triggerPolicy"] = {"condition": task["condition"]}
    spec = {"pipelineInfo": {"name": "small"}, "schemaVersion": "2.1.0", "components": components,
            "deploymentSpec": {"executors": executors},
            "root": {"dag": {"tasks": dag}, "inputDefinitions": {"parameters": {
                "x": {"parameterType": "NUMBER_DOUBLE", "defaultValue": 1.0}}}}}
    path = os.path.join(folder, "small.yaml")
    with open(path, "w") as f:
        yaml.safe_dump_all([spec] + ([platform] if platform else []), f)
    return path


def executions(folder) -> list[str]:
    with open(os.path.join(folder, "executions.log")) as f:
        return f.read().split()


def cluster(folder, spec_path, volumes=None) -> h.Cluster:
    return h.Cluster(spec_path, os.path.join(folder, "root"), volumes or {},
                     image_root=(kr.IMAGE_ROOT, REPO))


FROM_RUN = {"parameters": {"x": {"componentInputParameter": "x"}}}


def test_a_task_reading_a_missing_producer_fails_naming_it(tmp_path):
    spec = small_spec(str(tmp_path), {
        "Decide": {"inputs": FROM_RUN},
        "Ingest": {"inputs": {"parameters": {"x": {"taskOutputParameter": {
            "producerTask": "Decide_task", "outputParameterKey": "y"}}}}, "after": ["Decide"]}})
    with pytest.raises(h.HarnessError, match="task Ingest: depends on or reads from Decide_task, which is not a task "
                                             r"of the DAG \(tasks: \['Decide', 'Ingest'\]\)"):
        cluster(str(tmp_path), spec).run()
    assert not os.path.exists(tmp_path / "executions.log")


def test_output_parameters_flow_and_a_false_condition_skips_the_task_and_what_follows(tmp_path):
    verdict = "inputs.artifacts['verdict'].artifacts[0].metadata['passed']"
    spec = small_spec(str(tmp_path), {
        "Gate": {"inputs": FROM_RUN},
        "Copy": {"inputs": {"parameters": {"x": {"taskOutputParameter": {"producerTask": "Gate",
                                                                         "outputParameterKey": "y"}}}},
                 "after": ["Gate"]},
        "Train": {"inputs": {"artifacts": {"verdict": {"taskOutputArtifact": {"producerTask": "Gate",
                                                                              "outputArtifactKey": "out"}}}},
                  "after": ["Gate"], "condition": f"({verdict} == 1.0)"},
        "Push": {"inputs": {"artifacts": {"model": {"taskOutputArtifact": {"producerTask": "Train",
                                                                           "outputArtifactKey": "out"}}}},
                 "after": ["Train"]}})
    site = cluster(str(tmp_path), spec)
    passed = site.run({"x": 1.0})
    assert passed.states() == {"Gate": "ran", "Copy": "ran", "Train": "ran", "Push": "ran"}
    assert passed.tasks["Copy"].parameters == {"y": 1.0}
    assert passed.tasks["Train"].artifacts["out"]["metadata"] == {"passed": 1.0}
    failed = site.run({"x": 0.0})
    assert failed.states() == {"Gate": "ran", "Copy": "ran", "Train": "skipped", "Push": "skipped"}
    assert failed.tasks["Train"].reason.startswith("condition false")
    assert failed.tasks["Push"].reason == "upstream Train skipped"
    assert executions(tmp_path) == ["Gate", "Copy", "Train", "Push", "Gate", "Copy"]


def test_a_cached_task_is_not_rerun_until_an_input_changes(tmp_path):
    spec = small_spec(str(tmp_path), {
        "Decide": {"inputs": FROM_RUN, "cache": False},
        "Ingest": {"inputs": FROM_RUN},
        "Train": {"inputs": {"artifacts": {"examples": {"taskOutputArtifact": {"producerTask": "Ingest",
                                                                               "outputArtifactKey": "out"}}}},
                  "after": ["Ingest"]}})
    site = cluster(str(tmp_path), spec)
    first = site.run({"x": 1.0}, run_id="first")
    second = site.run({"x": 1.0}, run_id="second")
    assert second.states() == {"Decide": "ran", "Ingest": "cached", "Train": "cached"}
    assert second.tasks["Train"].artifacts == first.tasks["Train"].artifacts
    assert second.tasks["Ingest"].fingerprint == first.tasks["Ingest"].fingerprint
    changed = site.run({"x": 2.0}, run_id="third")
    assert changed.states() == {"Decide": "ran", "Ingest": "ran", "Train": "ran"}
    assert changed.tasks["Train"].artifacts["out"]["uri"].endswith(os.path.join("small", "third", "Train", "out"))
    assert executions(tmp_path) == ["Decide", "Ingest", "Train", "Decide", "Decide", "Ingest", "Train"]


def test_the_cache_key_is_kfp_cachekeys_fields(tmp_path):
    spec = h.load_spec(small_spec(str(tmp_path), {"Ingest": {"inputs": FROM_RUN}}))
    component = spec.pipeline.components["Ingest"]
    container = spec.deployment.executors["Ingest_executor"].container
    executor_input = h.pb.ExecutorInput()
    executor_input.inputs.parameter_values["x"].number_value = 1.0
    h.Cluster._provision_outputs(executor_input, component, str(tmp_path / "a"))
    key = h.cache_key(executor_input, component, container, ["pvc"])
    h.Cluster._provision_outputs(moved := h.pb.ExecutorInput(), component, str(tmp_path / "b"))
    moved.inputs.parameter_values["x"].number_value = 1.0
    assert h.cache_key(moved, component, container, ["pvc", "pvc"]) == key  # output URIs and PVC order: not in it
    assert h.cache_key(moved, component, container, ["other-pvc"]) != key
    moved.inputs.parameter_values["x"].number_value = 2.0
    assert h.cache_key(moved, component, container, ["pvc"]) != key
    container.image = "python:3.11"
    executor_input.inputs.parameter_values["x"].number_value = 1.0
    assert h.cache_key(executor_input, component, container, ["pvc"]) != key


def _mount(path, pvc="serving"):
    return {"pvcMount": [{"mountPath": path, "pvcNameParameter": {"runtimeValue": {"constant": pvc}}}]}


def test_an_executor_without_the_mount_cannot_see_the_volume(tmp_path):
    mount = str(tmp_path / "mnt" / "serving")  # the cluster's path: does not exist here
    local = tmp_path / "serving-volume"
    local.mkdir()
    reads = {"inputs": {"parameters": {"x": {"componentInputParameter": "x"}}}, "reads": [mount + "/"]}
    platform = {"platforms": {"kubernetes": {"deploymentSpec": {"executors": {"Push_executor": _mount(mount)}}}}}
    spec = small_spec(str(tmp_path), {"Push": {**reads, "cache": False},
                                      "Evaluate": {**reads, "cache": False, "after": ["Push"]}}, platform)
    site = cluster(str(tmp_path), spec, volumes={mount: str(local)})
    with pytest.raises(h.TaskFailed, match=rf"task Evaluate exited 1; stderr ends:\n{mount}/: no such directory"):
        site.run()
    assert executions(tmp_path) == ["Push", "Evaluate"]


def test_a_task_that_writes_to_a_volume_it_does_not_mount_fails(tmp_path):
    mount = str(tmp_path / "mnt" / "serving")
    writer = {"command": ["python", "-c", "import os, sys; os.makedirs(sys.argv[1])"], "args": [mount + "/taxi"]}
    spec = small_spec(str(tmp_path), {"Push": {"inputs": FROM_RUN, "container": writer}})
    site = cluster(str(tmp_path), spec, volumes={mount: str(tmp_path / "serving-volume")})
    with pytest.raises(h.TaskFailed, match=f"task Push created {mount}, a volume its executor does not mount"):
        site.run()


def test_an_unknown_placeholder_fails(tmp_path):
    spec = h.load_spec(small_spec(str(tmp_path), {"Ingest": {"inputs": FROM_RUN}}))
    component = spec.pipeline.components["Ingest"]
    executor_input = h.pb.ExecutorInput()
    executor_input.inputs.parameter_values["x"].number_value = 2.0
    h.Cluster._provision_outputs(executor_input, component, str(tmp_path / "t"))
    argv = h.substitute("Ingest", ["{{$.inputs.parameters['x']}}", "{{$.outputs.artifacts['out'].uri}}",
                                   "--y={{$.outputs.parameters['y'].output_file}}"], executor_input, component)
    assert argv == ["2", str(tmp_path / "t" / "out"), f"--y={tmp_path / 't' / 'kfp_outputs' / 'y'}"]
    with pytest.raises(h.HarnessError, match=r"task Ingest: unknown placeholder \{\{\$.pipeline_job_name\}\}"):
        h.substitute("Ingest", ["{{$.pipeline_job_name}}"], executor_input, component)
