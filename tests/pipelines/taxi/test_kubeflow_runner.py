"""The committed Kubeflow spec is current, deterministic, parses as KFP's protos and deploys as it stands:
parameter defaults, a description, volumes mounted where they are read, resources on every task."""

from __future__ import annotations

import json
import os

import pytest
import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from flywheel.pipelines.taxi import kubeflow_runner as kr
from flywheel.pipelines.taxi.config import TaxiConfig
from tests.conftest import REPO, call_cli

COMMITTED = os.path.join(REPO, "kubeflow", "taxi_pipeline.yaml")
TEXT = open(COMMITTED, encoding="utf-8").read()
SPEC, PLATFORM = yaml.safe_load_all(TEXT)
EXECUTORS = SPEC["deploymentSpec"]["executors"]


@pytest.fixture(scope="module")
def compiled_twice(tmp_path_factory):
    paths = [str(tmp_path_factory.mktemp(name) / "taxi_pipeline.yaml") for name in ("first", "second")]
    return [open(kr.compile_pipeline(path), "rb").read() for path in paths]


def _make_compile_image() -> str:
    """The image `make compile` names (the Makefile's IMAGE)."""
    with open(os.path.join(REPO, "Makefile"), encoding="utf-8") as f:
        (line,) = [line for line in f if line.startswith("IMAGE ?= ")]
    return line.split("?=", 1)[1].strip()


def test_committed_spec_is_byte_identical_to_a_fresh_compile(tmp_path, capfd):
    """`make compile`'s command line (its entry point in a process of its own: tests/cli/test_cli.py)."""
    fresh = tmp_path / "taxi_pipeline.yaml"
    image = _make_compile_image()
    assert image == kr.DEFAULT_IMAGE, "the library's default is the image the README builds and make compile names"
    result = call_cli(capfd, "compile", "taxi", "--image", image, "--output", str(fresh))
    assert result.returncode == 0, result.stderr
    assert fresh.read_text(encoding="utf-8") == TEXT, "kubeflow/taxi_pipeline.yaml is stale: run `make compile`"


def test_compile_is_byte_identical_twice(compiled_twice):
    first, second = compiled_twice
    assert first == second


def test_both_documents_parse_as_kfp_protos():
    spec = json_format.ParseDict(SPEC, pipeline_spec_pb2.PipelineSpec())
    assert spec.pipeline_info.name == "taxi"
    platform = json_format.ParseDict(PLATFORM, pipeline_spec_pb2.PlatformSpec())
    assert set(platform.platforms) == {"kubernetes"}
    assert set(platform.platforms["kubernetes"].deployment_spec.executors) == {
        "Decide_executor", "Ingest_executor", "Evaluate_executor", "Push_executor"}


def test_kfp_loads_the_file_with_its_defaults_description_and_platform_config():
    from kfp import components

    component = components.load_component_from_file(COMMITTED)
    assert {name: spec.default for name, spec in component.component_spec.inputs.items()} == {
        "data-root": "/mnt/data/taxi", "serving-dir": "/mnt/serving", "train-args": '{"num_steps": 1000}',
        "model-name": "taxi", "retrain-window": 3, "retrain-if-drift": 1}
    assert component.description == kr.DESCRIPTION
    assert set(component.platform_spec.platforms["kubernetes"].deployment_spec.executors) == {
        "Decide_executor", "Ingest_executor", "Evaluate_executor", "Push_executor"}


def test_every_root_parameter_has_a_default_and_a_description():
    parameters = SPEC["root"]["inputDefinitions"]["parameters"]
    assert set(parameters) == {kr.DATA_ROOT, kr.SERVING_DIR, kr.TRAIN_ARGS, kr.RETRAIN_WINDOW, kr.RETRAIN_IF_DRIFT,
                               kr.MODEL_NAME}
    assert parameters[kr.RETRAIN_WINDOW]["defaultValue"] == kr.DEFAULT_WINDOW
    assert parameters[kr.RETRAIN_IF_DRIFT]["defaultValue"] == 1
    assert parameters[kr.DATA_ROOT]["defaultValue"] == kr.DEFAULT_DATA_ROOT
    assert parameters[kr.SERVING_DIR]["defaultValue"] == kr.DEFAULT_SERVING_DIR
    for name, definition in parameters.items():
        assert definition["isOptional"] is True and definition["description"], name
        kind = {"STRING": "str", "NUMBER_INTEGER": "int"}[definition["parameterType"]]
        assert f"#  {name}: {kind} [Default: " in TEXT


def test_train_args_is_a_run_parameter_defaulting_to_the_configs_train_steps():
    from tfx.proto import trainer_pb2

    default = SPEC["root"]["inputDefinitions"]["parameters"][kr.TRAIN_ARGS]["defaultValue"]
    args = json_format.Parse(default, trainer_pb2.TrainArgs())
    assert args.num_steps == TaxiConfig.__dataclass_fields__["train_steps"].default
    trainer = SPEC["root"]["dag"]["tasks"]["Trainer"]["inputs"]["parameters"]["train_args"]
    assert trainer == {"componentInputParameter": kr.TRAIN_ARGS}


def test_model_name_is_a_run_parameter_that_evaluate_and_push_take():
    parameter = SPEC["root"]["inputDefinitions"]["parameters"][kr.MODEL_NAME]
    assert parameter["defaultValue"] == "taxi" and parameter["parameterType"] == "STRING"
    assert parameter["description"] == kr.PARAMETER_DESCRIPTIONS[kr.MODEL_NAME]
    takers = {name for name, task in SPEC["root"]["dag"]["tasks"].items()
              if task.get("inputs", {}).get("parameters", {}).get("model_name") == {
                  "componentInputParameter": kr.MODEL_NAME}}
    assert takers == {"Decide", "Evaluate", "Push"}
    assert "taxi" not in json.dumps([task["inputs"]["parameters"]["model_name"] for task in
                                     (SPEC["root"]["dag"]["tasks"][t] for t in takers)])


def test_every_executor_runs_flywheels_entrypoint():
    from flywheel import kfp_executor

    assert kfp_executor.COMMAND == ("python", "-m", "flywheel.kfp_executor")
    for label, executor in EXECUTORS.items():
        assert executor["container"]["command"] == list(kfp_executor.COMMAND), label
        assert executor["container"]["args"][:3] == ["--executor_class_path", executor["container"]["args"][1],
                                                     "--json_serialized_invocation_args"], label


def _artifact_title(definition: dict) -> str:
    return yaml.safe_load(definition["artifactType"]["instanceSchema"])["title"]


def test_gate_and_evaluation_reports_are_outputs_the_kfp_ui_renders():
    for component in ("DataGate", "Evaluate"):
        outputs = SPEC["components"][component]["outputDefinitions"]["artifacts"]
        assert _artifact_title(outputs["report_html"]) == "system.HTML", component
        assert _artifact_title(outputs["summary"]) == "system.Markdown", component
    assert _artifact_title(SPEC["components"]["DataGate"]["outputDefinitions"]["artifacts"]["verdict"]) == (
        "flywheel.GateVerdict")  # our own artifacts stay as they are
    assert {_artifact_title(a) for a in SPEC["components"]["Evaluate"]["outputDefinitions"]["artifacts"].values()} == {
        "tfx.ModelEvaluation", "tfx.ModelBlessing", "system.HTML", "system.Markdown"}


def test_the_pipeline_has_a_real_description():
    assert SPEC["pipelineInfo"]["description"] == kr.DESCRIPTION
    assert "TFX pipeline from tfx" not in TEXT
    assert "# Description: " + kr.DESCRIPTION in TEXT


def test_volumes_are_mounted_exactly_where_their_parameter_is_read():
    mounts = {label: config["pvcMount"] for label, config in
              PLATFORM["platforms"]["kubernetes"]["deploymentSpec"]["executors"].items()}
    serving = [{"constant": kr.DEFAULT_SERVING_PVC, "mountPath": kr.SERVING_MOUNT,
                "pvcNameParameter": {"runtimeValue": {"constant": kr.DEFAULT_SERVING_PVC}}}]
    data = [{"constant": kr.DEFAULT_DATA_PVC, "mountPath": kr.DATA_MOUNT,
             "pvcNameParameter": {"runtimeValue": {"constant": kr.DEFAULT_DATA_PVC}}}]
    assert mounts == {"Evaluate_executor": serving, "Push_executor": serving, "Ingest_executor": data,
                      "Decide_executor": data + serving}
    assert kr.executors_reading(SPEC, kr.SERVING_DIR) == ["Decide_executor", "Evaluate_executor", "Push_executor"]
    assert kr.DEFAULT_SERVING_DIR == kr.SERVING_MOUNT and kr.DEFAULT_DATA_ROOT.startswith(kr.DATA_MOUNT + "/")


def test_pvc_names_are_compile_options():
    mounts = kr.platform_spec(SPEC, "nightly-spans", "tf-serving-models")["platforms"]["kubernetes"]
    executors = mounts["deploymentSpec"]["executors"]
    assert executors["Push_executor"]["pvcMount"][0]["constant"] == "tf-serving-models"
    assert executors["Ingest_executor"]["pvcMount"][0]["pvcNameParameter"]["runtimeValue"]["constant"] == (
        "nightly-spans")


def test_the_command_line_compiles_with_other_pvc_names(tmp_path, capfd):
    output = tmp_path / "spec.yaml"
    result = call_cli(capfd, "compile", "taxi", "--output", str(output), "--data-pvc", "nightly-spans",
                      "--serving-pvc", "tf-serving-models", "--image", "registry.example/flywheel-taxi:0.1.0", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["output"] == str(output)
    _, platform = yaml.safe_load_all(output.read_text())
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert {label: [m["constant"] for m in config["pvcMount"]] for label, config in executors.items()} == {
        "Ingest_executor": ["nightly-spans"], "Evaluate_executor": ["tf-serving-models"],
        "Push_executor": ["tf-serving-models"], "Decide_executor": ["nightly-spans", "tf-serving-models"]}


def test_compile_without_an_image_is_refused_naming_it(tmp_path, capfd):
    """No image is published: compiling without choosing one would name an image no cluster can pull."""
    output = tmp_path / "spec.yaml"
    result = call_cli(capfd, "compile", "taxi", "--output", str(output))
    assert result.returncode == 2 and result.stderr.startswith("flywheel: compile: --image is required: "), result
    assert "kubeflow/Dockerfile" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not output.exists()


def _claim_names(document) -> set[str]:
    """Every persistentVolumeClaim claimName in a Kubernetes manifest, at any depth."""
    if isinstance(document, dict):
        found = {document["persistentVolumeClaim"]["claimName"]} if "persistentVolumeClaim" in document else set()
        return found.union(*(_claim_names(v) for v in document.values()))
    if isinstance(document, list):
        return set().union(*(_claim_names(v) for v in document))
    return set()


def test_the_pvc_manifest_defines_every_claim_the_spec_and_the_manifests_mount():
    """kubeflow/volumes.yaml: one PersistentVolumeClaim for each claim the compiled spec mounts (the compile's
    default names) and each one the CronJobs and the data loader mount, with the access modes the README gives
    (serving and request logs ReadWriteMany: TF Serving and the server mount them beside the jobs)."""
    with open(os.path.join(REPO, "kubeflow", "volumes.yaml"), encoding="utf-8") as f:
        documents = [d for d in yaml.safe_load_all(f) if d]
    assert all(d["apiVersion"] == "v1" and d["kind"] == "PersistentVolumeClaim" for d in documents)
    claims = {d["metadata"]["name"]: d for d in documents}
    assert len(claims) == len(documents)
    mounted = {m["constant"] for config in PLATFORM["platforms"]["kubernetes"]["deploymentSpec"]["executors"].values()
               for m in config["pvcMount"]}
    assert mounted == {kr.DEFAULT_DATA_PVC, kr.DEFAULT_SERVING_PVC}
    manifests = [os.path.join(REPO, "kubeflow", "data-loader.yaml")] + [
        os.path.join(REPO, "kubeflow", "schedule", name) for name in sorted(os.listdir(
            os.path.join(REPO, "kubeflow", "schedule"))) if name.endswith(".yaml")]
    for path in manifests:
        with open(path, encoding="utf-8") as f:
            used = _claim_names(list(yaml.safe_load_all(f)))
        assert used and used <= set(claims), (path, used)
        mounted |= used
    assert mounted == set(claims), "no claim is defined that nothing mounts"
    modes = {name: claim["spec"]["accessModes"] for name, claim in claims.items()}
    assert modes == {"flywheel-data": ["ReadWriteOnce"], "flywheel-serving": ["ReadWriteMany"],
                     "flywheel-state": ["ReadWriteOnce"], "flywheel-request-logs": ["ReadWriteMany"]}
    for claim in claims.values():
        size = claim["spec"]["resources"]["requests"]["storage"]
        assert size.endswith("Gi") and int(size[:-2]) >= 1


def test_the_data_loader_mounts_the_data_claim_as_the_pipeline_user_with_tar_for_kubectl_cp():
    with open(os.path.join(REPO, "kubeflow", "data-loader.yaml"), encoding="utf-8") as f:
        (pod,) = [d for d in yaml.safe_load_all(f) if d]
    assert pod["kind"] == "Pod" and pod["metadata"]["name"] == "flywheel-data-loader"
    assert _claim_names(pod) == {kr.DEFAULT_DATA_PVC}
    (container,) = pod["spec"]["containers"]
    assert container["volumeMounts"] == [{"name": "data", "mountPath": kr.DATA_MOUNT}]
    assert container["image"].startswith("busybox:"), "kubectl cp needs tar in the container"
    assert {pod["spec"]["securityContext"][k] for k in ("runAsUser", "runAsGroup", "fsGroup")} == {10001}


def test_every_container_task_has_cpu_and_memory_requests_and_limits():
    assert len(EXECUTORS) == len(kr.TASK_RESOURCES)
    for label, executor in EXECUTORS.items():
        resources = executor["container"]["resources"]
        assert set(resources) == {"cpuRequest", "cpuLimit", "memoryRequest", "memoryLimit"}, label
        assert 0 < resources["cpuRequest"] <= resources["cpuLimit"], label
        assert 0 < resources["memoryRequest"] <= resources["memoryLimit"], label
    assert EXECUTORS["Trainer_executor"]["container"]["resources"] == {
        "cpuRequest": 2.0, "cpuLimit": 4.0, "memoryRequest": 4.0, "memoryLimit": 8.0}


def test_a_component_without_resources_is_a_compile_error(tmp_path):
    resources = {k: v for k, v in kr.TASK_RESOURCES.items() if k != "Push"}
    with pytest.raises(ValueError, match="no resources for Push; add them to TASK_RESOURCES"):
        kr.compile_pipeline(str(tmp_path / "spec.yaml"), resources=resources)
    assert not (tmp_path / "spec.yaml").exists()


def test_no_resolver_executors_no_machine_paths_and_the_gate_guards_training():
    assert EXECUTORS and all("container" in e and "resolver" not in e for e in EXECUTORS.values())
    assert REPO not in TEXT and "/tmp/" not in TEXT and "/home/" not in TEXT and "/work/" not in TEXT
    gate = "inputs.artifacts['_DataGate.verdict'].artifacts[0].metadata['passed'] == 1.0"
    gated = [name for name, task in TASKS.items() if gate in task.get("triggerPolicy", {}).get("condition", "")]
    assert set(gated) == {"Transform", "Trainer", "Evaluate", "Push"}


TASKS = SPEC["root"]["dag"]["tasks"]
DECIDED = "inputs.artifacts['_Decide.decision'].artifacts[0].metadata['retrain'] == 1.0"


def test_the_ct_decision_heads_the_pipeline_and_guards_the_training_branch():
    """Decide and the gate guard training; the producers of both conditions always run (a condition on a
    skipped task's output cannot be evaluated), and the data stages are keyed on what Decide read."""
    assert "triggerPolicy" not in TASKS["Decide"] and "dependentTasks" not in TASKS["Decide"]
    gate = "inputs.artifacts['_DataGate.verdict'].artifacts[0].metadata['passed'] == 1.0"
    conditions = {name: task.get("triggerPolicy", {}).get("condition") for name, task in TASKS.items()}
    assert {name for name, c in conditions.items() if c} == {"Transform", "Trainer", "Evaluate", "Push"}
    for name in ("Transform", "Trainer", "Evaluate", "Push"):
        assert conditions[name] == f"({DECIDED}) && ({gate})", name
        assert {"Decide", "DataGate"} <= set(TASKS[name]["dependentTasks"]), name


def test_caching_is_per_task_decide_always_runs():
    assert "cachingOptions" not in TASKS["Decide"]
    assert all(task["cachingOptions"] == {"enableCache": True} for name, task in TASKS.items() if name != "Decide")


def test_what_was_decided_keys_ingest_evaluate_and_push():
    """Ingest's cache key holds the span and the data fingerprint Decide read; Evaluate's and Push's the version
    in serving at run time, so new data or a new serving model is a new execution, not a cache hit."""
    def decided(output):
        return {"taskOutputParameter": {"producerTask": "Decide", "outputParameterKey": output}}

    ingest = TASKS["Ingest"]["inputs"]["parameters"]
    assert ingest["span"] == decided("span") and ingest["expected_fingerprint"] == decided("fingerprint")
    assert ingest["num_spans"] == {"componentInputParameter": kr.RETRAIN_WINDOW}
    for name in ("Evaluate", "Push"):
        assert TASKS[name]["inputs"]["parameters"]["serving_version"] == decided("serving_version"), name
    outputs = SPEC["components"]["Decide"]["outputDefinitions"]["parameters"]
    assert outputs == {"span": {"parameterType": "NUMBER_INTEGER"}, "fingerprint": {"parameterType": "STRING"},
                       "serving_version": {"parameterType": "NUMBER_INTEGER"}}
    decide = TASKS["Decide"]["inputs"]["parameters"]
    assert decide["window"] == {"componentInputParameter": kr.RETRAIN_WINDOW}
    assert decide["if_drift"] == {"componentInputParameter": kr.RETRAIN_IF_DRIFT}


def test_every_output_parameter_reference_names_a_task_of_the_dag():
    references = [(name, p["taskOutputParameter"]) for name, task in TASKS.items()
                  for p in task.get("inputs", {}).get("parameters", {}).values() if "taskOutputParameter" in p]
    assert references
    for name, reference in references:
        assert reference["producerTask"] in TASKS, (name, reference)
    broken = {"root": {"dag": {"tasks": {"A": {}, "B": {"inputs": {"parameters": {"x": {"taskOutputParameter": {
        "producerTask": "C_task", "outputParameterKey": "x"}}}}}}}}}
    with pytest.raises(ValueError, match="task B input 'x' reads an output parameter of 'C_task', which is not a task"):
        kr.fix_output_parameter_producers(broken)


def test_vertex_job_keeps_defaults_and_resources_without_the_kubernetes_document(tmp_path):
    path = kr.compile_pipeline(str(tmp_path / "job.json"))
    with open(path, encoding="utf-8") as f:
        job = json.load(f)
    assert job["displayName"] == "taxi" and "platforms" not in job
    spec = job["pipelineSpec"]
    assert spec["root"]["inputDefinitions"]["parameters"] == SPEC["root"]["inputDefinitions"]["parameters"]
    assert spec["deploymentSpec"]["executors"]["Push_executor"]["container"]["resources"] == (
        EXECUTORS["Push_executor"]["container"]["resources"])
    json_format.ParseDict(job, pipeline_spec_pb2.PipelineJob(), ignore_unknown_fields=False)


def _readme_rows(heading: str) -> list[list[str]]:
    text = open(os.path.join(REPO, "kubeflow", "README.md"), encoding="utf-8").read()
    section = text[text.index(heading):]
    table = section[section.index("\n|"):section.index("\n\n", section.index("\n|"))]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in table.strip().splitlines()]
    return rows[2:]


def test_readme_parameter_table_is_the_specs_defaults():
    defaults = {name: d["defaultValue"] for name, d in SPEC["root"]["inputDefinitions"]["parameters"].items()}
    documented = {row[0].strip("`"): row[-1].strip("`") for row in _readme_rows("Parameters (each")}
    assert documented == {name: str(default) for name, default in defaults.items()}


def test_readme_resources_table_is_task_resources():
    documented = {}
    for tasks, cpu, memory in _readme_rows("## Resources"):
        (cpu_request, cpu_limit), (memory_request, memory_limit) = (map(float, c.split(" / ")) for c in (cpu, memory))
        for task in tasks.split(", "):
            documented[task] = kr.Resources(cpu_request, cpu_limit, memory_request, memory_limit)
    assert documented == dict(kr.TASK_RESOURCES)


def test_readme_pvc_table_is_the_platform_config():
    documented = {row[0].split("`")[1]: (row[1].strip("`"), row[2]) for row in _readme_rows("## 2. Volumes")}
    assert documented == {kr.DEFAULT_DATA_PVC: (kr.DATA_MOUNT, "Decide, Ingest"),
                          kr.DEFAULT_SERVING_PVC: (kr.SERVING_MOUNT, "Decide, Evaluate, Push")}


def test_every_custom_artifact_title_in_the_spec_resolves_to_its_class_in_the_entrypoint():
    """TFX's entrypoint imports an unknown schema title as a class path: each of ours must be registered."""
    import re

    from tfx.orchestration.kubeflow.v2 import compiler_utils
    from tfx.utils import import_utils

    from flywheel import kfp_executor

    titles = set(re.findall(r"title: ([\w.]+)", TEXT)) - set(compiler_utils.TITLE_TO_CLASS_PATH)
    assert {"flywheel.RetrainDecision", "flywheel.Quarantine", "system.HTML"} <= titles
    assert titles <= set(kfp_executor.CLASS_PATHS), titles - set(kfp_executor.CLASS_PATHS)
    for title in titles:
        assert import_utils.import_class_by_path(kfp_executor.CLASS_PATHS[title]).TYPE_NAME == title
