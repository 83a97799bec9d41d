"""The taxi pipeline: create_pipeline(config) composed of small stage builders. Builds only; runs nowhere."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os

import tensorflow_model_analysis as tfma
from tfx.components import ExampleValidator, StatisticsGen, Trainer, Transform
from tfx.components.schema_gen.import_schema_gen.component import ImportSchemaGen
from tfx.dsl.experimental.conditionals.conditional import Cond
from tfx.orchestration.pipeline import Pipeline
from tfx.proto import trainer_pb2
from tfx.types import standard_component_specs

from flywheel.components import data_gate, decide, evaluate, ingest, monitor
from flywheel.components.data_gate import gate
from flywheel.components.data_gate.component import DataGate
from flywheel.components.decide.component import Decide
from flywheel.components.evaluate.component import Evaluate
from flywheel.components.ingest.component import Ingest
from flywheel.components.monitor.component import DriftMonitor
from flywheel.components.push.component import Push
from flywheel.pipelines.taxi import features
from flywheel.pipelines.taxi.config import TaxiConfig
from flywheel.store import layout


def decision_stages(cfg: TaxiConfig) -> dict:
    """The continuous-training head (cfg.continuous_training): Decide, which is never taken from a cache."""
    if not cfg.continuous_training:
        return {}
    if_drift = int(cfg.retrain_if_drift) if isinstance(cfg.retrain_if_drift, bool) else cfg.retrain_if_drift
    return {"decide": Decide(data_root=cfg.paths.data_root, serving_dir=cfg.paths.serving_dir,
                             model_name=cfg.model_name, window=cfg.num_spans, schema_path=cfg.schema_path,
                             if_drift=if_drift).with_id("Decide")}


def _decided(decision: dict, key: str):
    """The decision's output `key` as a value for a downstream execution property.

    Only where the data and serving folders are run parameters (Kubeflow): there no custom driver fingerprints
    the data and serving's version is not known at build time, so Ingest's, Evaluate's and Push's cache keys must
    hold what Decide read. Elsewhere (None) Ingest's driver fingerprints the data and serving's version is read
    when the pipeline is built; and TFX's local orchestrators key caches on input artifacts, of which an upstream
    output used as a property is one, so it would make every run a cache miss.
    """
    if not decision or isinstance(decision["decide"].exec_properties[decide.spec.DATA_ROOT_KEY], str):
        return None
    return decision["decide"].outputs[key].future()[0].value


def data_stages(cfg: TaxiConfig, decision: dict | None = None) -> dict:
    """ImportSchemaGen and Ingest; under a decision, Ingest reads the span it decided on and checks its data."""
    decision = decision or {}
    schema = ImportSchemaGen(schema_file=cfg.schema_path)
    span = _decided(decision, decide.spec.SPAN_KEY)
    ingestion = Ingest(input_base=cfg.paths.data_root, schema=schema.outputs[standard_component_specs.SCHEMA_KEY],
                       span=cfg.span if span is None else span, num_spans=cfg.num_spans,
                       split_key_columns=cfg.split_key_columns, quarantine_limit=cfg.quarantine_limit,
                       expected_fingerprint=_decided(decision, decide.spec.FINGERPRINT_KEY))
    return {"schema": schema, "ingest": ingestion}


def profile_channel(ingestion, consumer: str):
    """The ingestion component's per-span profiles; a component without them is a build-time error.

    DriftMonitor and Push read a flywheel.DataProfile that flywheel's Ingest writes. Stock ExampleGens
    (CsvExampleGen, ImportExampleGen) do not, so the pipeline refuses to build rather than fail at run time.
    """
    channel = ingestion.outputs.get(monitor.spec.PROFILE_KEY)
    if channel is None or channel.type is not monitor.spec.DataProfile:
        raise ValueError(
            f"{consumer}: expected the ingestion component to have a {monitor.spec.PROFILE_KEY!r} output of type "
            f"{monitor.spec.DataProfile.TYPE_NAME}, but {type(ingestion).__name__} ({ingestion.id}) has outputs "
            f"{sorted(ingestion.outputs)}; use flywheel.components.ingest.component.Ingest, which writes the "
            "per-span profiles the drift monitor and Push need")
    return channel


def validation_stages(cfg: TaxiConfig, data: dict) -> dict:
    gate.parse_allow_list(",".join(cfg.allowed_anomalies))  # configuration mistakes fail at build time
    statistics = StatisticsGen(examples=data["ingest"].outputs[ingest.spec.EXAMPLES_KEY])
    stats = statistics.outputs[standard_component_specs.STATISTICS_KEY]
    validator = ExampleValidator(statistics=stats, schema=data["schema"].outputs[standard_component_specs.SCHEMA_KEY])
    verdict = DataGate(anomalies=validator.outputs[standard_component_specs.ANOMALIES_KEY], statistics=stats,
                       allowed_anomalies=",".join(cfg.allowed_anomalies),
                       quarantine=data["ingest"].outputs.get(ingest.spec.QUARANTINE_KEY)).with_id("DataGate")
    return {"statistics": statistics, "validator": validator, "gate": verdict}


def _latest_served(cfg: TaxiConfig):
    """The version served by default at build time (`layout.current`: the newest, or a rollout's stable one);
    None when nothing is pushed yet or the folder is only known at run time (a Kubeflow runtime parameter)."""
    if not isinstance(cfg.paths.serving_dir, str):
        return None
    return layout.current(cfg.paths.serving_dir, cfg.model_name)


def serving_version(cfg: TaxiConfig) -> int:
    """The latest version in serving now (0: none; -1: not known here, e.g. a Kubeflow runtime parameter)."""
    if not isinstance(cfg.paths.serving_dir, str) or "://" in cfg.paths.serving_dir:
        return -1
    served = _latest_served(cfg)
    return served.version if served else 0


def warm_start_source(cfg: TaxiConfig) -> str | None:
    """The serving model to warm start from (its path is part of the Trainer's cache key)."""
    served = _latest_served(cfg) if cfg.warm_start else None
    return served.path if served else None


PREPROCESSING_FN = "flywheel.pipelines.taxi.preprocessing.preprocessing_fn"
RUN_FN = "flywheel.pipelines.taxi.model.run_fn"
FEATURES_MODULE = "flywheel.pipelines.taxi.features"


def code_digest(*modules: str) -> str:
    """sha256 (16 hex) of the modules' source files, read without importing them.

    Functions given by dotted path are not part of TFX's cache key: the digest, put in the
    component's custom_config, makes an edited preprocessing_fn or run_fn a new execution.
    """
    digest = hashlib.sha256()
    for name in modules:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.origin or not os.path.isfile(spec.origin):
            raise ModuleNotFoundError(f"code_digest: module {name!r} has no source file")
        with open(spec.origin, "rb") as f:
            digest.update(name.encode() + b"\0" + f.read())
    return digest.hexdigest()[:16]


def _code_of(dotted_fn: str) -> str:
    """The digest of the function's module and the feature definitions it shares."""
    return code_digest(dotted_fn.rsplit(".", 1)[0], FEATURES_MODULE)


def training_stages(cfg: TaxiConfig, data: dict) -> dict:
    transform = Transform(examples=data["ingest"].outputs[ingest.spec.EXAMPLES_KEY],
                          schema=data["schema"].outputs[standard_component_specs.SCHEMA_KEY],
                          preprocessing_fn=PREPROCESSING_FN,
                          custom_config={"code_digest": _code_of(PREPROCESSING_FN)},
                          # Raw data is profiled and gated upstream (StatisticsGen, DataGate):
                          # Transform's own pre/post statistics would repeat that work.
                          disable_statistics=True)
    custom_config = {"hidden_units": list(cfg.hidden_units), "learning_rate": cfg.learning_rate,
                     "batch_size": cfg.batch_size, "seed": cfg.seed,
                     "code_digest": _code_of(RUN_FN)}
    source = warm_start_source(cfg)
    if source:
        custom_config["warm_start_from"] = source
    trainer = Trainer(run_fn=RUN_FN,
                      examples=transform.outputs[standard_component_specs.TRANSFORMED_EXAMPLES_KEY],
                      transform_graph=transform.outputs[standard_component_specs.TRANSFORM_GRAPH_KEY],
                      schema=data["schema"].outputs[standard_component_specs.SCHEMA_KEY],
                      train_args=trainer_pb2.TrainArgs(num_steps=cfg.train_steps),
                      eval_args=trainer_pb2.EvalArgs(num_steps=cfg.eval_steps),
                      custom_config=custom_config)
    return {"transform": transform, "trainer": trainer}


def eval_config(cfg: TaxiConfig) -> tfma.EvalConfig:
    """Overall AUC above an absolute bound and no worse than serving's by more than max_auc_drop; sliced metrics."""
    auc_threshold = tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(lower_bound={"value": cfg.min_auc}),
        change_threshold=tfma.GenericChangeThreshold(direction=tfma.MetricDirection.HIGHER_IS_BETTER,
                                                     absolute={"value": -cfg.max_auc_drop - 1e-9}))
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(signature_name="serving_examples", label_key=features.LABEL_XF,
                                    preprocessing_function_names=["transform_features"])],
        slicing_specs=[tfma.SlicingSpec()] + [tfma.SlicingSpec(feature_keys=[k]) for k in features.SLICE_FEATURE_KEYS],
        metrics_specs=[tfma.MetricsSpec(metrics=[
            tfma.MetricConfig(class_name="ExampleCount"),
            tfma.MetricConfig(class_name="AUC", per_slice_thresholds=[
                tfma.PerSliceMetricThreshold(slicing_specs=[tfma.SlicingSpec()], threshold=auc_threshold)]),
            tfma.MetricConfig(class_name="BinaryAccuracy"),
        ])])


def release_stages(cfg: TaxiConfig, data: dict, training: dict, decision: dict | None = None) -> dict:
    """Evaluate against serving, then Push; both keyed on serving's current version so neither is stale
    (under a decision, the version it found in serving at run time)."""
    decided = _decided(decision or {}, decide.spec.SERVING_VERSION_KEY)
    version = serving_version(cfg) if decided is None else decided
    examples = data["ingest"].outputs[ingest.spec.EXAMPLES_KEY]
    model = training["trainer"].outputs[standard_component_specs.MODEL_KEY]
    evaluator = Evaluate(examples=examples, model=model, eval_config=eval_config(cfg),
                         serving_dir=cfg.paths.serving_dir, model_name=cfg.model_name,
                         schema=data["schema"].outputs[standard_component_specs.SCHEMA_KEY], serving_version=version)
    push = Push(model=model, model_blessing=evaluator.outputs[evaluate.spec.BLESSING_KEY],
                evaluation=evaluator.outputs[evaluate.spec.EVALUATION_KEY], examples=examples,
                profile=profile_channel(data["ingest"], "Push"),
                serving_dir=cfg.paths.serving_dir, model_name=cfg.model_name,
                serving_version=version).with_id("Push")
    return {"evaluate": evaluator, "push": push}


def monitor_stages(cfg: TaxiConfig, data: dict) -> dict:
    """The drift monitor (retraining runs only): newest span vs the serving model's training profile.

    Not under a continuous-training decision: Decide has already compared the newest span with serving's."""
    if cfg.monitor_baseline is None or cfg.continuous_training:
        return {}
    return {"monitor": DriftMonitor(profile=profile_channel(data["ingest"], "DriftMonitor"),
                                    baseline_profile=cfg.monitor_baseline,
                                    schema_path=cfg.schema_path).with_id("DriftMonitor")}


def create_pipeline(cfg: TaxiConfig, metadata_connection_config=None) -> Pipeline:
    """[Decide ->] Ingest -> validate (gate) [-> monitor] -> [Transform -> Trainer -> Evaluate -> Push].

    The bracket runs only when the gate passed; with cfg.continuous_training, only when Decide also says
    retrain (new data that drifted, or no model in serving); with a monitor and retrain_if_drift, only when
    the monitor says retrain. The data stages always run: under a decision they are keyed on the span and
    fingerprint it read (locally: Ingest's driver fingerprints), so a run with nothing new takes them from the
    cache. (Every condition's producer
    always runs: TFX evaluates all of a node's conditions, so one on a skipped node's output would fail.)
    """
    decision = decision_stages(cfg)
    data = data_stages(cfg, decision)
    validation = validation_stages(cfg, data)
    monitoring = monitor_stages(cfg, data)
    verdict = validation["gate"].outputs[data_gate.spec.VERDICT_KEY].future()[0]
    conditions = [verdict.custom_property(data_gate.spec.PASSED) == 1]
    if decision:
        conditions.insert(0, decision["decide"].outputs[decide.spec.DECISION_KEY].future()[0]
                          .custom_property(decide.spec.RETRAIN) == 1)
    if cfg.retrain_if_drift and monitoring:
        conditions.append(monitoring["monitor"].outputs[monitor.spec.REPORT_KEY].future()[0]
                          .custom_property(monitor.spec.RETRAIN) == 1)
    with contextlib.ExitStack() as guarded:
        for condition in conditions:
            guarded.enter_context(Cond(condition))
        training = training_stages(cfg, data)
        release = release_stages(cfg, data, training, decision)
    nodes = [*decision.values(), *data.values(), *validation.values(), *monitoring.values(), *training.values(),
             *release.values()]
    return Pipeline(pipeline_name=cfg.pipeline_name, pipeline_root=cfg.paths.pipeline_root,
                    components=nodes, enable_cache=cfg.enable_cache,
                    metadata_connection_config=metadata_connection_config,
                    beam_pipeline_args=list(cfg.beam_pipeline_args))
