"""A test harness that runs a compiled Kubeflow Pipelines (v2) spec on this machine the way KFP's driver and
launcher do, task by task, each task's own container command as a separate process.

What it follows (KFP backend/src/v2: driver/driver.go, driver/container.go, driver/cache.go, cacheutils/cache.go,
component/launcher_v2.go; TFX's kubeflow_v2_run_executor and kubeflow_v2_entrypoint_utils):
- root DAG tasks run in dependency order (`dependentTasks` plus every producer a task reads from); a task whose
  upstream task did not succeed (skipped) is skipped, as Argo's `<task>.Succeeded` depends does;
- inputs: `componentInputParameter` (the run's value, else the spec's default), `runtimeValue.constant`,
  `taskOutputParameter` and `taskOutputArtifact` (the producer must be a task of the DAG), the component's
  parameter defaults for the rest (the launcher's addDefaultParams);
- `triggerPolicy.condition` evaluated on the resolved inputs: the CEL that TFX's
  `compiler_utils.placeholder_to_cel` writes (plus CEL's `int()`/`double()`); anything else fails loudly;
- the ExecutorInput is KFP's own proto (`pipeline_spec_pb2.ExecutorInput`): output artifacts under
  `<root>/<pipeline>/<run-id>/<task>/<output-key>`, output parameter files, `output_file`;
- `{{$}}` and the launcher's other placeholders substituted in `command`/`args` (an unknown one fails), the
  container's `python` is this interpreter; the process's `executor_output.json` is read back and merged into
  the output artifacts (uri, metadata) and parameters like the launcher;
- caching: a task with `cachingOptions.enableCache` gets cache.go's key (input parameter values, input artifact
  names, output artifact specs without URIs, output parameter types, command + args, image, PVC names); a hit
  reuses the earlier outputs (same artifact names and URIs) without running the process;
- volumes: each `pvcMount` of the Kubernetes platform config, and the image root, are local folders; in a task's
  command line (the ExecutorInput JSON included) a mount path is replaced by its folder only when its executor
  mounts it, so a task without the mount sees a path that does not exist, as on a cluster. A task that creates
  a mount path it does not mount (it would write to the pod's own disk, lost when it ends) fails the run.

What it does not prove: the image (dependencies, non-root user), object storage (the pipeline root is a local
folder), KFP's API server, MLMD, Argo, parallel tasks, retries, resources, and the pod's environment.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import subprocess
import sys
import time
import uuid
from typing import Any, Iterable, Mapping, Optional

import yaml
from google.protobuf import json_format, struct_pb2
from kfp.pipeline_spec import pipeline_spec_pb2 as pb

RAN, CACHED, SKIPPED = "ran", "cached", "skipped"


class HarnessError(Exception):
    """The spec cannot be run as KFP would run it; the message names the task and the key."""


class ConditionError(HarnessError):
    """A trigger condition outside the grammar TFX emits, or one that cannot be evaluated on the inputs."""


class TaskFailed(HarnessError):
    """A task's process exited non-zero, or broke a volume rule."""


@dataclasses.dataclass(frozen=True)
class CompiledSpec:
    pipeline: pb.PipelineSpec
    platform: Optional[pb.PlatformSpec]

    @property
    def name(self) -> str:
        return self.pipeline.pipeline_info.name

    @property
    def deployment(self) -> pb.PipelineDeploymentConfig:
        """The spec's deploymentSpec (a Struct in PipelineSpec) as KFP's PipelineDeploymentConfig."""
        return json_format.ParseDict(json_format.MessageToDict(self.pipeline.deployment_spec),
                                     pb.PipelineDeploymentConfig())


def load_spec(path: str) -> CompiledSpec:
    """Parses a compiled YAML (PipelineSpec, then optionally the Kubernetes PlatformSpec) with KFP's protos."""
    with open(path, encoding="utf-8") as f:
        documents = [d for d in yaml.safe_load_all(f) if d is not None]
    if not documents or len(documents) > 2:
        raise HarnessError(f"{path}: expected a PipelineSpec and at most a PlatformSpec, got {len(documents)} "
                           "YAML documents")
    pipeline = json_format.ParseDict(documents[0], pb.PipelineSpec())
    platform = json_format.ParseDict(documents[1], pb.PlatformSpec()) if len(documents) == 2 else None
    return CompiledSpec(pipeline, platform)


# --- CEL: the grammar of tfx.orchestration.kubeflow.v2.compiler_utils.placeholder_to_cel -----------------------

_TOKEN = re.compile(r"\s*(?:(?P<number>\d+\.\d+(?:e[+-]?\d+)?|\d+)|(?P<string>'[^']*')|"
                    r"(?P<op>==|&&|\|\||[()\[\].<>!+])|(?P<name>[A-Za-z_]\w*))")


def _tokens(expression: str) -> list[tuple[str, str, int]]:
    tokens, position = [], 0
    while position < len(expression):
        if expression[position:].strip() == "":
            break
        match = _TOKEN.match(expression, position)
        if not match:
            raise ConditionError(f"condition {expression!r}: unsupported text at {position}: "
                                 f"{expression[position:position + 20]!r}")
        kind = match.lastgroup
        tokens.append((kind, match.group(kind), match.start(kind)))
        position = match.end()
    return tokens


class _Parser:
    """Recursive descent over CEL precedence: || < && < comparison < + < ! < primary."""

    def __init__(self, expression: str, inputs: Mapping[str, Any]):
        self.expression, self.inputs = expression, inputs
        self.tokens, self.i = _tokens(expression), 0

    def fail(self, what: str) -> ConditionError:
        where = self.tokens[self.i][2] if self.i < len(self.tokens) else len(self.expression)
        return ConditionError(f"condition {self.expression!r}: {what} at {where}; the harness evaluates the CEL "
                              "of TFX's placeholder_to_cel (inputs.artifacts[...] paths, numbers, strings, ==, <, "
                              ">, !, &&, ||, +, int(), double())")

    def peek(self) -> Optional[str]:
        return self.tokens[self.i][1] if self.i < len(self.tokens) else None

    def take(self, expected: Optional[str] = None, kind: Optional[str] = None) -> str:
        if self.i >= len(self.tokens):
            raise self.fail(f"expected {expected or kind}, got the end")
        token_kind, text, _ = self.tokens[self.i]
        if (expected is not None and text != expected) or (kind is not None and token_kind != kind):
            raise self.fail(f"expected {expected or kind}, got {text!r}")
        self.i += 1
        return text

    def parse(self) -> Any:
        value = self.disjunction()
        if self.i != len(self.tokens):
            raise self.fail(f"unexpected {self.peek()!r}")
        return value

    def disjunction(self) -> Any:
        value = self.conjunction()
        while self.peek() == "||":
            self.take("||")
            value = self._bool(value) | self._bool(self.conjunction())
        return value

    def conjunction(self) -> Any:
        value = self.comparison()
        while self.peek() == "&&":
            self.take("&&")
            value = self._bool(value) & self._bool(self.comparison())
        return value

    def comparison(self) -> Any:
        left = self.sum()
        if self.peek() in ("==", "<", ">"):
            op = self.take()
            right = self.sum()
            number = (int, float)
            if isinstance(left, bool) or isinstance(right, bool) or not (
                    isinstance(left, number) and isinstance(right, number)
                    or isinstance(left, str) and isinstance(right, str)):
                raise self.fail(f"cannot compare {left!r} {op} {right!r}")
            return {"==": left == right, "<": left < right, ">": left > right}[op]
        return left

    def sum(self) -> Any:
        value = self.unary()
        while self.peek() == "+":
            self.take("+")
            right = self.unary()
            if type(value) is not type(right):
                raise self.fail(f"cannot add {value!r} + {right!r}")
            value = value + right
        return value

    def unary(self) -> Any:
        if self.peek() == "!":
            self.take("!")
            return not self._bool(self.unary())
        return self.primary()

    def primary(self) -> Any:
        if self.i >= len(self.tokens):
            raise self.fail("expected a value, got the end")
        kind, text, _ = self.tokens[self.i]
        if text == "(":
            self.take("(")
            value = self.disjunction()
            self.take(")")
            return value
        if kind == "number":
            self.i += 1
            return float(text) if "." in text else int(text)
        if kind == "string":
            self.i += 1
            return text[1:-1]
        if text in ("int", "double"):
            self.take()
            self.take("(")
            value = self.disjunction()
            self.take(")")
            if isinstance(value, bool) or not isinstance(value, (int, float, str)):
                raise self.fail(f"{text}() of {value!r}")
            try:
                return int(float(value)) if text == "int" else float(value)
            except ValueError as e:
                raise self.fail(f"{text}({value!r})") from e
        if text == "inputs":
            return self.artifact_path()
        raise self.fail(f"unsupported {text!r}")

    def artifact_path(self) -> Any:
        self.take("inputs"), self.take("."), self.take("artifacts"), self.take("[")
        key = self.take(kind="string")[1:-1]
        self.take("]"), self.take("."), self.take("artifacts")
        if key not in self.inputs:
            raise self.fail(f"no input artifact {key!r} (inputs: {sorted(self.inputs)})")
        artifacts = self.inputs[key]
        if self.peek() != "[":
            raise self.fail(f"inputs.artifacts[{key!r}].artifacts used without an index")
        self.take("[")
        index = int(self.take(kind="number"))
        self.take("]")
        if index >= len(artifacts):
            raise self.fail(f"input artifact {key!r} has {len(artifacts)} artifact(s), no index {index}")
        artifact = artifacts[index]
        if self.peek() != ".":
            raise self.fail(f"inputs.artifacts[{key!r}].artifacts[{index}] used without .metadata[...] or .uri")
        self.take(".")
        field = self.take(kind="name")
        if field == "uri":
            return artifact["uri"]
        if field != "metadata":
            raise self.fail(f"unsupported artifact field {field!r}")
        self.take("[")
        name = self.take(kind="string")[1:-1]
        self.take("]")
        metadata = artifact.get("metadata", {})
        if name not in metadata:
            raise self.fail(f"input artifact {key!r} has no metadata {name!r} (it has {sorted(metadata)})")
        return metadata[name]

    def _bool(self, value: Any) -> bool:
        if not isinstance(value, bool):
            raise self.fail(f"expected a boolean, got {value!r}")
        return value


def evaluate_condition(expression: str, inputs: Mapping[str, list[Mapping[str, Any]]]) -> bool:
    """The value of a trigger condition; inputs maps an input artifact key to its artifacts ({uri, metadata})."""
    value = _Parser(expression, inputs).parse()
    if not isinstance(value, bool):
        raise ConditionError(f"condition {expression!r}: evaluates to {value!r}, not a boolean")
    return value


# --- running ---------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class TaskResult:
    name: str
    state: str
    seconds: float
    reason: str = ""
    artifacts: dict[str, dict] = dataclasses.field(default_factory=dict)  # key -> RuntimeArtifact as a dict
    parameters: dict[str, Any] = dataclasses.field(default_factory=dict)  # output parameter values
    inputs: dict[str, Any] = dataclasses.field(default_factory=dict)  # input parameter values, as on the cluster
    fingerprint: str = ""
    task_dir: str = ""


@dataclasses.dataclass
class RunResult:
    run_id: str
    parameters: dict[str, Any]
    tasks: dict[str, TaskResult]  # in the order they were decided
    seconds: float

    def states(self) -> dict[str, str]:
        return {name: task.state for name, task in self.tasks.items()}

    def names(self, state: str) -> list[str]:
        return [name for name, task in self.tasks.items() if task.state == state]


_PLACEHOLDER = re.compile(r"\{\{\$[^}]*\}\}")


def _value(message: struct_pb2.Value) -> Any:
    return json_format.MessageToDict(message)


def _struct_value(value: Any) -> struct_pb2.Value:
    result = struct_pb2.Value()
    json_format.ParseDict(value, result)
    return result


def _map_paths(value: Any, mapping: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        for mount, local in sorted(mapping.items(), key=lambda item: -len(item[0])):
            value = re.sub(rf"(?<![\w/.-]){re.escape(mount)}(?=/|$|[\s\"',;:])", local.replace("\\", "\\\\"), value)
        return value
    if isinstance(value, list):
        return [_map_paths(v, mapping) for v in value]
    if isinstance(value, dict):
        return {k: _map_paths(v, mapping) for k, v in value.items()}
    return value


class Cluster:
    """One KFP installation for one compiled spec: volumes, a pipeline root and a cache kept across runs."""

    def __init__(self, spec: CompiledSpec | str, pipeline_root: str, volumes: Mapping[str, str],
                 image_root: tuple[str, str], timeout: float = 1200, log=None,
                 replace_args: Optional[Mapping[str, str]] = None):
        """volumes: mount path -> local folder; image_root: (path in the image, local folder), always mapped.

        replace_args swaps whole container arguments in the processes started (not in the cache key), e.g. Beam's
        `--direct_running_mode=multi_processing` for `in_memory` where worker processes would cost more than the
        work; each must be an argument of some executor, so a replacement cannot outlive the flag it replaces.
        """
        self.spec = load_spec(spec) if isinstance(spec, str) else spec
        self.replace_args = dict(replace_args or {})
        all_args = {a for e in self.spec.deployment.executors.values() for a in e.container.args}
        stale = sorted(set(self.replace_args) - all_args)
        if stale:
            raise HarnessError(f"replace_args: {stale} is an argument of no executor in the spec")
        self.pipeline_root = os.path.abspath(pipeline_root)
        self.volumes = {mount: os.path.abspath(local) for mount, local in volumes.items()}
        self.image_root = (image_root[0], os.path.abspath(image_root[1]))
        self.timeout = timeout
        self.log = log
        self.cache: dict[str, TaskResult] = {}
        self.executions = 0  # processes started, over all runs
        for mount in self.volumes:
            if os.path.exists(mount):
                raise HarnessError(f"volume {mount} exists on this machine: a task without the mount would see it")
        self._check_mounts_are_volumes()

    # spec lookups
    def _executor_label(self, task_name: str) -> str:
        task = self.spec.pipeline.root.dag.tasks[task_name]
        return self.spec.pipeline.components[task.component_ref.name].executor_label

    def _k8s_executor(self, label: str) -> Optional[dict]:
        if self.spec.platform is None or "kubernetes" not in self.spec.platform.platforms:
            return None
        executors = json_format.MessageToDict(self.spec.platform.platforms["kubernetes"].deployment_spec)
        return executors.get("executors", {}).get(label)

    def _pvc_mounts(self, label: str, run_parameters: Mapping[str, Any]) -> list[tuple[str, str]]:
        """(mount path, PVC name) for each pvcMount of the executor."""
        mounts = []
        for mount in (self._k8s_executor(label) or {}).get("pvcMount", []):
            name_parameter = mount.get("pvcNameParameter", {})
            if "runtimeValue" in name_parameter:
                name = name_parameter["runtimeValue"]["constant"]
            elif "componentInputParameter" in name_parameter:
                name = run_parameters[name_parameter["componentInputParameter"]]
            elif "constant" in mount:
                name = mount["constant"]
            else:
                raise HarnessError(f"executor {label}: pvcMount {mount} names no PVC")
            mounts.append((mount["mountPath"], name))
        return mounts

    def _check_mounts_are_volumes(self) -> None:
        for task_name in self.spec.pipeline.root.dag.tasks:
            label = self._executor_label(task_name)
            for mount in (self._k8s_executor(label) or {}).get("pvcMount", []):
                if mount["mountPath"] not in self.volumes:
                    raise HarnessError(f"executor {label} mounts {mount['mountPath']}, which the harness has no "
                                       f"local folder for (volumes: {sorted(self.volumes)})")

    def _order(self) -> list[str]:
        tasks = self.spec.pipeline.root.dag.tasks
        needs: dict[str, set[str]] = {}
        for name, task in tasks.items():
            upstream = set(task.dependent_tasks)
            for spec in task.inputs.parameters.values():
                if spec.WhichOneof("kind") == "task_output_parameter":
                    upstream.add(spec.task_output_parameter.producer_task)
            for spec in task.inputs.artifacts.values():
                if spec.WhichOneof("kind") == "task_output_artifact":
                    upstream.add(spec.task_output_artifact.producer_task)
            missing = sorted(upstream - set(tasks))
            if missing:
                raise HarnessError(f"task {name}: depends on or reads from {', '.join(missing)}, which is not a "
                                   f"task of the DAG (tasks: {sorted(tasks)})")
            needs[name] = upstream
        order: list[str] = []
        while len(order) < len(tasks):
            ready = sorted(n for n in tasks if n not in order and needs[n] <= set(order))
            if not ready:
                raise HarnessError(f"the DAG has a cycle among {sorted(set(tasks) - set(order))}")
            order.append(ready[0])
        return order

    def _run_parameters(self, overrides: Mapping[str, Any]) -> dict[str, Any]:
        definitions = self.spec.pipeline.root.input_definitions.parameters
        unknown = sorted(set(overrides) - set(definitions))
        if unknown:
            raise HarnessError(f"run parameters {unknown} are not pipeline parameters ({sorted(definitions)})")
        values = {}
        for name, definition in definitions.items():
            if name in overrides:
                values[name] = overrides[name]
            elif definition.HasField("default_value"):
                values[name] = _value(definition.default_value)
            else:
                raise HarnessError(f"pipeline parameter {name!r} has no default and the run sets none")
        return values

    def run(self, parameters: Optional[Mapping[str, Any]] = None, run_id: Optional[str] = None) -> RunResult:
        """One pipeline run; raises TaskFailed at the first task that fails, HarnessError on a spec problem."""
        started = time.monotonic()
        run_id = run_id or f"run-{uuid.uuid4().hex[:8]}"
        values = self._run_parameters(parameters or {})
        done: dict[str, TaskResult] = {}
        for name in self._order():
            done[name] = self._task(name, values, done, run_id)
            if self.log:
                self.log(f"{name}: {done[name].state} {done[name].seconds:.1f} s {done[name].reason}".rstrip())
        return RunResult(run_id, values, done, time.monotonic() - started)

    def _task(self, name: str, run_parameters: Mapping[str, Any], done: Mapping[str, TaskResult],
              run_id: str) -> TaskResult:
        started = time.monotonic()
        task = self.spec.pipeline.root.dag.tasks[name]
        component = self.spec.pipeline.components[task.component_ref.name]
        upstream_skipped = sorted(n for n in task.dependent_tasks if done[n].state == SKIPPED)
        if upstream_skipped:
            return TaskResult(name, SKIPPED, 0.0, f"upstream {', '.join(upstream_skipped)} skipped")
        executor_input = pb.ExecutorInput()
        for key, spec in task.inputs.parameters.items():
            resolved = self._parameter(name, key, spec, run_parameters, done)
            if resolved is None:
                return TaskResult(name, SKIPPED, 0.0, f"input {key}: producer skipped")
            executor_input.inputs.parameter_values[key].CopyFrom(_struct_value(resolved))
        for key, spec in task.inputs.artifacts.items():
            artifact = self._artifact(name, key, spec, done)
            if artifact is None:
                return TaskResult(name, SKIPPED, 0.0, f"input {key}: producer skipped")
            definition = component.input_definitions.artifacts.get(key)
            if definition is not None:
                artifact = {**artifact, "type": json_format.MessageToDict(definition.artifact_type)}
            json_format.ParseDict(artifact, executor_input.inputs.artifacts[key].artifacts.add())
        condition = task.trigger_policy.condition
        if condition:
            inputs = {k: [json_format.MessageToDict(a) for a in v.artifacts]
                      for k, v in executor_input.inputs.artifacts.items()}
            if not evaluate_condition(condition, inputs):
                return TaskResult(name, SKIPPED, time.monotonic() - started, f"condition false: {condition}")
        task_dir = os.path.join(self.pipeline_root, self.spec.name, run_id, name)
        self._provision_outputs(executor_input, component, task_dir)
        label = component.executor_label
        container = self.spec.deployment.executors[label].container
        pvcs = self._pvc_mounts(label, run_parameters)
        fingerprint = ""
        if task.caching_options.enable_cache:
            fingerprint = cache_key(executor_input, component, container, [pvc for _, pvc in pvcs])
            if fingerprint in self.cache:
                hit = self.cache[fingerprint]
                return TaskResult(name, CACHED, time.monotonic() - started, f"cache hit of {hit.task_dir}",
                                  hit.artifacts, hit.parameters, hit.inputs, fingerprint, hit.task_dir)
        mapping = {mount: self.volumes[mount] for mount, _ in pvcs}
        mapping[self.image_root[0]] = self.image_root[1]
        self._execute(name, executor_input, component, container, task_dir, mapping)
        artifacts, parameters = self._collect(name, executor_input, component, f"{run_id}/{name}")
        inputs = {k: _value(v) for k, v in executor_input.inputs.parameter_values.items()}
        result = TaskResult(name, RAN, time.monotonic() - started, "", artifacts, parameters, inputs, fingerprint,
                            task_dir)
        if fingerprint:
            self.cache[fingerprint] = result
        return result

    def _parameter(self, task: str, key: str, spec: pb.TaskInputsSpec.InputParameterSpec,
                   run_parameters: Mapping[str, Any], done: Mapping[str, TaskResult]) -> Any:
        kind = spec.WhichOneof("kind")
        if kind == "component_input_parameter":
            return run_parameters[spec.component_input_parameter]
        if kind == "runtime_value":
            return _value(spec.runtime_value.constant)
        if kind == "task_output_parameter":
            producer, output = spec.task_output_parameter.producer_task, spec.task_output_parameter.output_parameter_key
            if producer not in done:
                raise HarnessError(f"task {task}: input parameter {key} reads output {output!r} of task "
                                   f"{producer!r}, which is not a task of the DAG "
                                   f"(tasks: {sorted(self.spec.pipeline.root.dag.tasks)})")
            if done[producer].state == SKIPPED:
                return None
            if output not in done[producer].parameters:
                raise HarnessError(f"task {task}: input parameter {key} reads output parameter {output!r} of "
                                   f"{producer}, which has {sorted(done[producer].parameters)}")
            return done[producer].parameters[output]
        raise HarnessError(f"task {task}: input parameter {key} is a {kind}, which the harness does not resolve")

    def _artifact(self, task: str, key: str, spec: pb.TaskInputsSpec.InputArtifactSpec,
                  done: Mapping[str, TaskResult]) -> Optional[dict]:
        kind = spec.WhichOneof("kind")
        if kind != "task_output_artifact":
            raise HarnessError(f"task {task}: input artifact {key} is a {kind}, which the harness does not resolve")
        producer, output = spec.task_output_artifact.producer_task, spec.task_output_artifact.output_artifact_key
        if producer not in done:
            raise HarnessError(f"task {task}: input artifact {key} reads output {output!r} of task {producer!r}, "
                               f"which is not a task of the DAG (tasks: {sorted(self.spec.pipeline.root.dag.tasks)})")
        if done[producer].state == SKIPPED:
            return None
        if output not in done[producer].artifacts:
            raise HarnessError(f"task {task}: input artifact {key} reads output artifact {output!r} of {producer}, "
                               f"which has {sorted(done[producer].artifacts)}")
        return done[producer].artifacts[output]

    @staticmethod
    def _provision_outputs(executor_input: pb.ExecutorInput, component: pb.ComponentSpec, task_dir: str) -> None:
        """driver.go provisionOutputs: one artifact per output key under the task's folder, parameter files."""
        for key, definition in component.output_definitions.artifacts.items():
            artifact = executor_input.outputs.artifacts[key].artifacts.add()
            artifact.name = key
            artifact.uri = os.path.join(task_dir, key)
            artifact.type.CopyFrom(definition.artifact_type)
            if definition.HasField("metadata"):
                artifact.metadata.CopyFrom(definition.metadata)
        for key in component.output_definitions.parameters:
            executor_input.outputs.parameters[key].output_file = os.path.join(task_dir, "kfp_outputs", key)
        executor_input.outputs.output_file = os.path.join(task_dir, "executor_output.json")

    def _execute(self, name: str, executor_input: pb.ExecutorInput, component: pb.ComponentSpec,
                 container: pb.PipelineDeploymentConfig.PipelineContainerSpec, task_dir: str,
                 mapping: Mapping[str, str]) -> None:
        """Runs the container's command as a process, its mounted paths (and the image root) made local."""
        for parameter in executor_input.outputs.parameters.values():  # launcher prepareOutputFolders
            os.makedirs(os.path.dirname(parameter.output_file), exist_ok=True)
        for artifacts in executor_input.outputs.artifacts.values():
            for artifact in artifacts.artifacts:
                os.makedirs(os.path.dirname(artifact.uri), exist_ok=True)
        args = [self.replace_args.get(arg, arg) for arg in container.args]
        argv = _map_paths(substitute(name, [*container.command, *args], executor_input, component), mapping)
        if argv and argv[0] in ("python", "python3"):
            argv[0] = sys.executable
        self.executions += 1
        with open(os.path.join(task_dir, "stdout.log"), "w") as out, open(os.path.join(task_dir, "stderr.log"),
                                                                          "w") as err:
            proc = subprocess.run(argv, stdout=out, stderr=err, cwd=task_dir, timeout=self.timeout,
                                  env={**os.environ, "PYTHONUNBUFFERED": "1"})
        for mount in self.volumes:
            if mount not in mapping and os.path.exists(mount):
                raise TaskFailed(f"task {name} created {mount}, a volume its executor does not mount: on a cluster "
                                 "it wrote to the pod's own disk")
        if proc.returncode != 0:
            with open(os.path.join(task_dir, "stderr.log"), encoding="utf-8", errors="replace") as f:
                tail = f.read()[-3000:]
            raise TaskFailed(f"task {name} exited {proc.returncode}; stderr ends:\n{tail}")

    @staticmethod
    def _collect(name: str, executor_input: pb.ExecutorInput, component: pb.ComponentSpec,
                 name_prefix: str) -> tuple[dict[str, dict], dict[str, Any]]:
        """launcher_v2: executor_output.json merged into the provisioned artifacts; parameters from it or files.

        Each output artifact gets a name unique to this execution (MLMD's), `<run-id>/<task>/<key>`; a cache hit
        hands downstream tasks the same names, so their cache keys are unchanged too."""
        output = pb.ExecutorOutput()
        if os.path.exists(executor_input.outputs.output_file):
            with open(executor_input.outputs.output_file, encoding="utf-8") as f:
                json_format.Parse(f.read(), output)
        artifacts = {}
        for key, provisioned in executor_input.outputs.artifacts.items():
            artifact = pb.RuntimeArtifact()
            artifact.CopyFrom(provisioned.artifacts[0])
            if key in output.artifacts and output.artifacts[key].artifacts:
                written = output.artifacts[key].artifacts[0]
                if written.uri:
                    artifact.uri = written.uri
                for field, value in written.metadata.fields.items():
                    artifact.metadata.fields[field].CopyFrom(value)
            artifact.name = f"{name_prefix}/{key}"
            artifacts[key] = json_format.MessageToDict(artifact)
        parameters = {}
        for key, parameter in executor_input.outputs.parameters.items():
            if key in output.parameter_values:
                parameters[key] = _value(output.parameter_values[key])
                continue
            if not os.path.exists(parameter.output_file):
                raise HarnessError(f"task {name}: output parameter {key} is neither in executor_output.json nor "
                                   f"written to {parameter.output_file}")
            with open(parameter.output_file, encoding="utf-8") as f:
                text = f.read()
            kind = pb.ParameterType.ParameterTypeEnum.Name(component.output_definitions.parameters[key].parameter_type)
            parameters[key] = text if kind == "STRING" else json.loads(text)
        return artifacts, parameters


def substitute(task: str, argv: Iterable[str], executor_input: pb.ExecutorInput,
               component: pb.ComponentSpec) -> list[str]:
    """launcher_v2 compileCmdAndArgs: `{{$}}` is the ExecutorInput as JSON; an unknown placeholder fails."""
    with_defaults = pb.ExecutorInput()
    with_defaults.CopyFrom(executor_input)
    for key, definition in component.input_definitions.parameters.items():
        if key not in with_defaults.inputs.parameter_values and definition.HasField("default_value"):
            with_defaults.inputs.parameter_values[key].CopyFrom(definition.default_value)
    values = {"{{$}}": json_format.MessageToJson(with_defaults, indent=None)}
    for key, artifacts in with_defaults.inputs.artifacts.items():
        values[f"{{{{$.inputs.artifacts['{key}'].uri}}}}"] = artifacts.artifacts[0].uri
        values[f"{{{{$.inputs.artifacts['{key}'].path}}}}"] = artifacts.artifacts[0].uri
    for key, artifacts in with_defaults.outputs.artifacts.items():
        values[f"{{{{$.outputs.artifacts['{key}'].uri}}}}"] = artifacts.artifacts[0].uri
        values[f"{{{{$.outputs.artifacts['{key}'].path}}}}"] = artifacts.artifacts[0].uri
    for key, value in with_defaults.inputs.parameter_values.items():
        plain = _value(value)
        values[f"{{{{$.inputs.parameters['{key}']}}}}"] = (
            plain if isinstance(plain, str) else json.dumps(plain) if isinstance(plain, (list, dict))
            else str(plain).lower() if isinstance(plain, bool) else format(plain, "g") if isinstance(plain, float)
            else str(plain))
    for key, parameter in with_defaults.outputs.parameters.items():
        values[f"{{{{$.outputs.parameters['{key}'].output_file}}}}"] = parameter.output_file

    def replace(match: re.Match) -> str:
        if match.group(0) not in values:
            raise HarnessError(f"task {task}: unknown placeholder {match.group(0)} in the container's command/args")
        return values[match.group(0)]

    return [_PLACEHOLDER.sub(replace, arg) for arg in argv]


def cache_key(executor_input: pb.ExecutorInput, component: pb.ComponentSpec,
              container: pb.PipelineDeploymentConfig.PipelineContainerSpec, pvc_names: Iterable[str]) -> str:
    """cacheutils GenerateCacheKey + GenerateFingerPrint: sha256 of the key as JSON with sorted keys."""
    outputs = {}
    for key, artifacts in executor_input.outputs.artifacts.items():
        if artifacts.artifacts:
            artifact = artifacts.artifacts[0]
            outputs[key] = json_format.MessageToDict(pb.RuntimeArtifact(name=artifact.name, type=artifact.type,
                                                                       metadata=artifact.metadata))
    key = {
        "inputArtifactNames": {k: {"artifactNames": [a.name for a in v.artifacts]}
                               for k, v in executor_input.inputs.artifacts.items()},
        "inputParameterValues": {k: _value(v) for k, v in executor_input.inputs.parameter_values.items()},
        "outputArtifactsSpec": outputs,
        "outputParametersSpec": {k: pb.ParameterType.ParameterTypeEnum.Name(
            component.output_definitions.parameters[k].parameter_type) for k in executor_input.outputs.parameters},
        "containerSpec": {"image": container.image, "cmdArgs": [*container.command, *container.args],
                          "pvcNames": sorted(set(pvc_names))},
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def night_table(nights: Mapping[str, RunResult], seconds: bool = True) -> str:
    """A markdown table: a row per task, a column per night, each cell ran/cached/skipped (and seconds)."""
    tasks: list[str] = []
    for result in nights.values():
        tasks += [name for name in result.tasks if name not in tasks]
    lines = ["| task | " + " | ".join(nights) + " |", "|---|" + "---|" * len(nights)]
    for name in tasks:
        cells = []
        for result in nights.values():
            task = result.tasks.get(name)
            cells.append("" if task is None else f"{task.state} {task.seconds:.0f} s"
                         if seconds and task.state == RAN else task.state)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if seconds:
        lines.append("| run | " + " | ".join(f"{r.seconds:.0f} s" for r in nights.values()) + " |")
    return "\n".join(lines)
