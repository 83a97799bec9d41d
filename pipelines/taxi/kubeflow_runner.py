"""Compiles the taxi pipeline for Kubeflow Pipelines (v2) with KubeflowV2DagRunner, ready to deploy.

The compiled pipeline is the continuous-training job: its head task, Decide, reads the newest span, the
serving model's push.json and the drift monitor (`flywheel.retraining.plan`, the decision
`flywheel retrain` takes) on every run, uncached; everything else runs only when it says retrain, and is
keyed on what it decided (Ingest on the span and its data fingerprint, Evaluate and Push on the version in
serving), so a recurring run with new drifted data trains and pushes, one with nothing new trains nothing,
and a rerun of the same data reuses what KFP's cache holds.

The run parameters (`data-root`, `serving-dir`, `model-name`, `train-args`, `retrain-window`,
`retrain-if-drift`) are TFX RuntimeParameters, set per run in the KFP UI; the spec gives each its default
and a description. What TFX's compiler does not write, this module adds to the compiled spec, deterministically:
- root parameter defaults and descriptions, and the pipeline's description;
- caching off for Decide (it must look at the data every run), and task-output-parameter references that
  name the producing task as KFP resolves them (TFX 1.16 writes `<task>_task`);
- the Kubernetes platform config (the YAML's second document): the data volume mounted into the tasks
  that read `data-root`, the serving volume into the tasks that read `serving-dir`.
CPU and memory per task go in through TFX (`with_platform_config`), so they land in each executor's
container `resources`. Nothing of the compiling machine's paths goes into the spec.
A `.yaml` output is the PipelineSpec the open-source KFP UI uploads; `.json` is a Vertex AI PipelineJob
(no Kubernetes document: Vertex mounts no PVCs).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Mapping, Optional

import yaml
from kfp.pipeline_spec import pipeline_spec_pb2
from tfx import v1 as tfx
from tfx.orchestration import data_types
from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner
from tfx.types import standard_component_specs as std

from flywheel.kfp_executor import COMMAND
from flywheel.pipelines.taxi.config import PIPELINE_NAME, UNCACHED_NODES, Paths, TaxiConfig
from flywheel.pipelines.taxi.pipeline import create_pipeline

# No image is published: this is the tag kubeflow/README.md's `docker build` gives the image it builds (loaded into
# a local cluster as it is, or pushed to a registry the cluster pulls from under a name of the user's).
DEFAULT_IMAGE = "flywheel-taxi:local"
IMAGE_ROOT = "/pipeline"  # where kubeflow/Dockerfile puts this repository inside the image
DATA_MOUNT = "/mnt/data"
SERVING_MOUNT = "/mnt/serving"
DEFAULT_DATA_ROOT = DATA_MOUNT + "/taxi"
DEFAULT_SERVING_DIR = SERVING_MOUNT
DEFAULT_DATA_PVC = "flywheel-data"
DEFAULT_SERVING_PVC = "flywheel-serving"

DATA_ROOT = "data-root"
SERVING_DIR = "serving-dir"
TRAIN_ARGS = "train-args"
MODEL_NAME = "model-name"
RETRAIN_WINDOW = "retrain-window"
RETRAIN_IF_DRIFT = "retrain-if-drift"
DEFAULT_WINDOW = 3

DESCRIPTION = (
    "flywheel taxi, the continuous-training job (schedule it as a recurring run): Decide reads the newest span of "
    "Chicago taxi trips, the serving model's push.json and the drift monitor, and the rest runs only when there is "
    "new data that drifted (or no model in serving): ingest the last <retrain-window> spans (CSV or Parquet, with a "
    "quarantine for bad rows), compute statistics, validate them against the schema and stop at the data gate when "
    "anomalies are found; otherwise transform, train a Keras model, evaluate it with TFMA against the model in "
    "serving and push it, atomically and versioned, to <serving-dir>/<model-name>/<version>/ when it is blessed.")

PARAMETER_DESCRIPTIONS = {
    DATA_ROOT: f"CSV/Parquet file, folder, or folder of span-N/ folders; a path under {DATA_MOUNT} (the data "
               "volume) or a gs:// or s3:// URI.",
    SERVING_DIR: f"Where blessed models are published as <serving-dir>/<model-name>/<version>/; a path under "
                 f"{SERVING_MOUNT} (the serving volume, shared with TF Serving).",
    TRAIN_ARGS: 'The Trainer\'s TrainArgs as JSON, e.g. {"num_steps": 1000}.',
    MODEL_NAME: "The served model's name: Evaluate compares with the latest version under "
                "<serving-dir>/<model-name>/ and Push publishes there; a non-empty name without '/'.",
    RETRAIN_WINDOW: "How many spans, ending at the newest, the model is trained on.",
    RETRAIN_IF_DRIFT: "1: retrain only when the newest span drifted from the serving model's training data (or "
                      "nothing is in serving); 0: retrain on any new data.",
}


@dataclasses.dataclass(frozen=True)
class Resources:
    """A task's container resources: CPU in cores, memory in GB (as KFP's ResourceSpec takes them)."""

    cpu_request: float
    cpu_limit: float
    memory_request: float
    memory_limit: float


# Sized for the taxi data (about 15,000 rows a span); Beam steps use every core they are given.
TASK_RESOURCES: Mapping[str, Resources] = {
    "Decide": Resources(0.5, 1, 1, 2),
    "ImportSchemaGen": Resources(0.25, 1, 0.5, 1),
    "Ingest": Resources(1, 2, 2, 4),
    "StatisticsGen": Resources(1, 2, 2, 4),
    "ExampleValidator": Resources(0.5, 1, 1, 2),
    "DataGate": Resources(0.25, 1, 0.5, 1),
    "Transform": Resources(1, 2, 2, 4),
    "Trainer": Resources(2, 4, 4, 8),
    "Evaluate": Resources(1, 2, 2, 4),
    "Push": Resources(0.5, 1, 2, 4),
}


def kubeflow_config(pipeline_root: str = "") -> TaxiConfig:
    parameter = tfx.dsl.experimental.RuntimeParameter
    data_root = parameter(name=DATA_ROOT, ptype=str, default=DEFAULT_DATA_ROOT)
    serving_dir = parameter(name=SERVING_DIR, ptype=str, default=DEFAULT_SERVING_DIR)
    model_name = parameter(name=MODEL_NAME, ptype=str, default=PIPELINE_NAME)
    paths = Paths(data_root=data_root, output_dir=pipeline_root, pipeline_root=pipeline_root, serving_dir=serving_dir)
    return TaxiConfig(paths=paths, model_name=model_name, continuous_training=True,
                      schema_path=os.path.join(IMAGE_ROOT, "schemas", "taxi", "schema.pbtxt"),
                      num_spans=parameter(name=RETRAIN_WINDOW, ptype=int, default=DEFAULT_WINDOW),
                      retrain_if_drift=parameter(name=RETRAIN_IF_DRIFT, ptype=int, default=1))


def _component(pipeline, component_id: str):
    for component in pipeline.components:
        if component.id == component_id:
            return component
    raise ValueError(f"kubeflow: the pipeline has no {component_id} component; it has "
                     f"{sorted(c.id for c in pipeline.components)}")


def set_run_parameters(pipeline, cfg: TaxiConfig) -> None:
    """Makes the Trainer's TrainArgs a run parameter (`train-args`, JSON), defaulting to cfg.train_steps.

    TFX takes a RuntimeParameter for a whole proto field (as its JSON), not for a field inside the proto.
    """
    trainer = _component(pipeline, "Trainer")
    trainer.exec_properties[std.TRAIN_ARGS_KEY] = tfx.dsl.experimental.RuntimeParameter(
        name=TRAIN_ARGS, ptype=str, default=json.dumps({"num_steps": cfg.train_steps}))


def set_resources(pipeline, resources: Mapping[str, Resources]) -> None:
    """Gives every component its container resources; a component without an entry is a compile error."""
    missing = sorted(c.id for c in pipeline.components if c.id not in resources)
    if missing:
        raise ValueError(f"kubeflow: no resources for {', '.join(missing)}; add them to TASK_RESOURCES")
    for component in pipeline.components:
        r = resources[component.id]
        component.with_platform_config(pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec(
            cpu_request=r.cpu_request, cpu_limit=r.cpu_limit, memory_request=r.memory_request,
            memory_limit=r.memory_limit))


def runtime_parameter_defaults(pipeline) -> dict[str, Any]:
    """Each RuntimeParameter's default, by name, from the components' execution properties."""
    defaults = {}
    for component in pipeline.components:
        for value in component.exec_properties.values():
            if isinstance(value, data_types.RuntimeParameter):
                defaults[value.name] = value.default
    return defaults


def executors_reading(spec: Mapping[str, Any], parameter: str) -> list[str]:
    """The executor labels of the root tasks that take the pipeline parameter `parameter`."""
    labels = set()
    for task in spec["root"]["dag"]["tasks"].values():
        inputs = task.get("inputs", {}).get("parameters", {}).values()
        if any(p.get("componentInputParameter") == parameter for p in inputs):
            labels.add(spec["components"][task["componentRef"]["name"]]["executorLabel"])
    return sorted(labels)


def _pvc_mount(pvc: str, mount_path: str) -> dict:
    # `constant` is what KFP backends before 2.4 read; `pvcNameParameter` replaces it in later ones.
    return {"constant": pvc, "pvcNameParameter": {"runtimeValue": {"constant": pvc}}, "mountPath": mount_path}


def platform_spec(spec: Mapping[str, Any], data_pvc: str, serving_pvc: str) -> dict:
    """The Kubernetes platform config: PVCs mounted into the executors of the tasks that read them."""
    executors: dict[str, dict] = {}
    for parameter, pvc, mount_path in ((DATA_ROOT, data_pvc, DATA_MOUNT), (SERVING_DIR, serving_pvc, SERVING_MOUNT)):
        for label in executors_reading(spec, parameter):
            executors.setdefault(label, {"pvcMount": []})["pvcMount"].append(_pvc_mount(pvc, mount_path))
    return {"platforms": {"kubernetes": {"deploymentSpec": {"executors": executors}}}}


def set_task_caching(spec: dict, uncached: tuple[str, ...] = UNCACHED_NODES) -> None:
    """Caching per task: the named tasks are never taken from KFP's cache (the others keep TFX's setting)."""
    tasks = spec["root"]["dag"]["tasks"]
    for name in uncached:
        if name not in tasks:
            raise ValueError(f"kubeflow: no task {name!r} to run uncached; tasks: {sorted(tasks)}")
        tasks[name].pop("cachingOptions", None)


def fix_output_parameter_producers(spec: dict) -> None:
    """Task-output-parameter references name the producing task as it is in the DAG.

    TFX 1.16 writes `producerTask: <id>_task` for an execution property set from an upstream output's value
    (`channel.future()[0].value`), but KFP looks the producer up by the task's name, `<id>`.
    """
    tasks = spec["root"]["dag"]["tasks"]
    for name, task in tasks.items():
        for key, parameter in task.get("inputs", {}).get("parameters", {}).items():
            reference = parameter.get("taskOutputParameter")
            if reference is None or reference["producerTask"] in tasks:
                continue
            producer = reference["producerTask"].removesuffix("_task")
            if producer not in tasks:
                raise ValueError(f"kubeflow: task {name} input {key!r} reads an output parameter of "
                                 f"{reference['producerTask']!r}, which is not a task; tasks: {sorted(tasks)}")
            reference["producerTask"] = producer


def finish_spec(spec: dict, defaults: Mapping[str, Any]) -> None:
    """Adds the description and each root parameter's default and description, per-task caching and
    resolvable output-parameter references, in place."""
    set_task_caching(spec)
    fix_output_parameter_producers(spec)
    spec["pipelineInfo"]["description"] = DESCRIPTION
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    missing = sorted(set(parameters) - set(defaults))
    if missing:
        raise ValueError(f"kubeflow: root parameters without a default: {', '.join(missing)}")
    for name, definition in parameters.items():
        definition["defaultValue"] = defaults[name]
        definition["isOptional"] = True
        definition["description"] = PARAMETER_DESCRIPTIONS[name]


def _write(output: str, job: dict, platform: dict) -> None:
    if output.endswith((".yaml", ".yml")):
        spec = job["pipelineSpec"]
        header = kubeflow_v2_dag_runner._extract_comments_from_pipeline_spec(spec, DESCRIPTION)  # noqa: SLF001
        with open(output, "w", encoding="utf-8") as f:
            f.write(header)
            yaml.dump_all([spec, platform], f, sort_keys=True)
    else:
        with open(output, "w", encoding="utf-8") as f:
            json.dump(job, f, sort_keys=True)


def compile_pipeline(output: str, image: Optional[str] = None, pipeline_root: str = "",
                     cfg: Optional[TaxiConfig] = None, data_pvc: str = DEFAULT_DATA_PVC,
                     serving_pvc: str = DEFAULT_SERVING_PVC,
                     resources: Optional[Mapping[str, Resources]] = None) -> str:
    """Writes the deployable spec to output (.yaml/.yml PipelineSpec + Kubernetes config, .json Vertex job).

    data_pvc and serving_pvc name the PersistentVolumeClaims mounted at /mnt/data and /mnt/serving;
    resources maps each component id to its Resources (default TASK_RESOURCES).
    """
    cfg = cfg or kubeflow_config(pipeline_root)
    cfg = dataclasses.replace(cfg, beam_pipeline_args=("--direct_running_mode=multi_processing",
                                                       "--direct_num_workers=0"))
    pipeline = create_pipeline(cfg)
    set_run_parameters(pipeline, cfg)
    set_resources(pipeline, TASK_RESOURCES if resources is None else resources)
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image=image or DEFAULT_IMAGE,
                                                                     default_commands=list(COMMAND),
                                                                     use_pipeline_spec_2_1=True))
    job = runner.run(pipeline, write_out=False)
    finish_spec(job["pipelineSpec"], runtime_parameter_defaults(pipeline))
    output = os.path.abspath(output)
    os.makedirs(os.path.dirname(output), exist_ok=True)
    _write(output, job, platform_spec(job["pipelineSpec"], data_pvc, serving_pvc))
    return output


if __name__ == "__main__":
    compile_pipeline(os.path.join(os.path.dirname(__file__), "..", "..", "kubeflow", "taxi_pipeline.yaml"))
