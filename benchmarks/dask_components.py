"""Which stock TFX components run on a dask.distributed cluster, through Beam's DaskRunner and through flywheel's.

    python benchmarks/dask_components.py --rows 2000 --workdir dask-probe

Starts a scheduler and two one-thread workers on loopback (tests/dask_cluster.py), then runs CsvExampleGen,
StatisticsGen, SchemaGen, ExampleValidator, Transform (flywheel's taxi preprocessing_fn), Evaluator and
BulkInferrer (the served taxi model of the checked-in runs) one by one in TFX's InteractiveContext on the
shipped taxi rows: each first on the DirectRunner (its outputs feed the next component), then with
`--runner=<each Dask runner> --dask_client_address=...`. A component "runs" on a runner when it finishes and its
outputs' summary (record counts, statistics' example counts, metrics' example count, ...) equals the
DirectRunner's; otherwise the line gives the error's last line or the summaries that differ. Prints one JSON line
per component and runner.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import traceback

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

RUNNERS = {"beam": "apache_beam.runners.dask.dask_runner.DaskRunner", "flywheel": "flywheel.dask_runner.DaskRunner"}


def _records(uri: str) -> dict[str, int]:
    """Records per Split-* folder (gzip or plain TFRecords), read without TensorFlow's dataset machinery."""
    import tensorflow as tf  # the probe reads TFRecords: TensorFlow is loaded by the components anyway

    counts = {}
    for split in sorted(os.listdir(uri)):
        folder = os.path.join(uri, split)
        if os.path.isdir(folder) and split.startswith("Split-"):
            files = [os.path.join(folder, f) for f in os.listdir(folder) if os.path.isfile(os.path.join(folder, f))]
            gz = all(f.endswith(".gz") for f in files)
            counts[split] = sum(1 for _ in tf.data.TFRecordDataset(files, compression_type="GZIP" if gz else ""))
    return counts


def _statistics(uri: str) -> dict[str, int]:
    from tensorflow_data_validation.utils import stats_util  # TFDV: only the statistics' summary needs it

    found = {}
    for split in sorted(os.listdir(uri)):
        path = os.path.join(uri, split, "FeatureStats.pb")
        if os.path.exists(path):
            stats = stats_util.load_stats_binary(path)
            found[split] = [d.num_examples for d in stats.datasets]
    return found


def _files(uri: str) -> list[str]:
    return sorted(os.path.relpath(os.path.join(d, f), uri) for d, _, fs in os.walk(uri) for f in fs
                  if "beam-temp" not in d)


def _metrics(uri: str) -> dict:
    import tensorflow_model_analysis as tfma  # TFMA: only the evaluation's summary needs it

    result = tfma.load_eval_result(uri)
    return {str(k): {m: round(float(v.get("doubleValue", 0)), 6) for m, v in sorted(dict(metrics).items())}
            for k, metrics in [(s, next(iter(next(iter(m.values())).values()))) for s, m in result.slicing_metrics]}


def _inference(uri: str) -> int:
    import tensorflow as tf  # see _records

    return sum(1 for f in os.listdir(uri) if os.path.isfile(os.path.join(uri, f))
               for _ in tf.data.TFRecordDataset(os.path.join(uri, f), compression_type="GZIP" if f.endswith(".gz")
                                                else ""))


SUMMARIES = {"examples": _records, "transformed_examples": _records, "statistics": _statistics,
             "schema": _files, "anomalies": _files, "transform_graph": _files, "evaluation": _metrics,
             "blessing": _files, "inference_result": _inference}


def _outputs(context) -> dict[str, str]:
    """{output key: artifact uri} of the latest execution recorded in ML-Metadata."""
    from ml_metadata.proto import metadata_store_pb2  # MLMD: only the probe reads the executions back
    from tfx.orchestration import metadata

    with metadata.Metadata(context.metadata_connection_config) as m:
        execution_id = max(e.id for e in m.store.get_executions())
        events = [e for e in m.store.get_events_by_execution_ids([execution_id])
                  if e.type == metadata_store_pb2.Event.OUTPUT]
        uris = {a.id: a.uri for a in m.store.get_artifacts_by_id([e.artifact_id for e in events])}
    return {e.path.steps[0].key: uris[e.artifact_id] for e in events}


def _summary(context) -> dict:
    return {key: SUMMARIES[key](uri) for key, uri in sorted(_outputs(context).items())
            if key in SUMMARIES}


def _run(context, component, args: list[str]) -> None:
    """InteractiveContext.run, which outside a notebook only warns (TFX's `requires_ipython`): the method itself."""
    type(context).run.__wrapped__(context, component, enable_cache=False, beam_pipeline_args=args)


def _attempt(context, component, args: list[str]) -> tuple[str, dict]:
    try:
        _run(context, component, args)
    except Exception as e:  # the probe records every failure as its result
        last = traceback.format_exception_only(type(e), e)[-1].strip()
        return f"fails: {last[:400]}", {}
    try:
        return "finishes", _summary(context)
    except Exception as e:  # outputs that cannot be read back are recorded as such
        return f"finishes, outputs unreadable: {traceback.format_exception_only(type(e), e)[-1].strip()[:300]}", {}


def _model_channel(context, model_uri: str):
    """The served model as a published Model artifact (an Importer node does not resolve outside a notebook)."""
    from tfx.orchestration import metadata  # TFX: seconds to import, only the probe needs it
    from tfx.types import channel_utils, standard_artifacts

    model = standard_artifacts.Model()
    model.uri = model_uri
    with metadata.Metadata(context.metadata_connection_config) as m:
        m.publish_artifacts([model])
    return channel_utils.as_channel([model])


def components(context, data: str, model_uri: str, signature: str, output: str):
    import tensorflow_model_analysis as tfma  # TFX and TFMA: seconds to import, only the probe needs them
    from tfx.components import (
        BulkInferrer,
        CsvExampleGen,
        Evaluator,
        ExampleValidator,
        SchemaGen,
        StatisticsGen,
        Transform,
    )
    from tfx.proto import bulk_inferrer_pb2

    from flywheel.pipelines.taxi import pipeline as taxi_pipeline

    examples = CsvExampleGen(input_base=data)
    statistics = StatisticsGen(examples=examples.outputs["examples"])
    schema = SchemaGen(statistics=statistics.outputs["statistics"], infer_feature_shape=False)
    validator = ExampleValidator(statistics=statistics.outputs["statistics"], schema=schema.outputs["schema"])
    transform = Transform(examples=examples.outputs["examples"], schema=schema.outputs["schema"],
                          preprocessing_fn=taxi_pipeline.PREPROCESSING_FN)
    model = _model_channel(context, model_uri)
    eval_config = tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(signature_name=signature, label_key="tips", prediction_key=output)],
        slicing_specs=[tfma.SlicingSpec()],
        metrics_specs=[tfma.MetricsSpec(metrics=[tfma.MetricConfig(class_name="ExampleCount"),
                                                 tfma.MetricConfig(class_name="MeanLabel"),
                                                 tfma.MetricConfig(class_name="MeanPrediction")])])
    evaluator = Evaluator(examples=examples.outputs["examples"], model=model,
                          eval_config=eval_config)
    inferrer = BulkInferrer(examples=examples.outputs["examples"], model=model,
                            data_spec=bulk_inferrer_pb2.DataSpec(),
                            model_spec=bulk_inferrer_pb2.ModelSpec(model_signature_name=[signature]))
    return [("CsvExampleGen", examples), ("StatisticsGen", statistics), ("SchemaGen", schema),
            ("ExampleValidator", validator), ("Transform", transform),
            ("Evaluator", evaluator), ("BulkInferrer", inferrer)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000, help="shipped taxi rows to use")
    parser.add_argument("--workdir", default=tempfile.mkdtemp(prefix="dask-probe-"))
    parser.add_argument("--only", nargs="*", help="component names to try on Dask (default: all)")
    args = parser.parse_args()

    from flywheel import quiet

    quiet.quiet_environment(False)
    from tfx.orchestration.experimental.interactive.interactive_context import InteractiveContext

    from flywheel.batch import model_version
    from tests import tiny_runs
    from tests.dask_cluster import running_cluster
    from tests.fixtures import copy_run

    quiet.install(False, sys.stderr)
    runs = copy_run(os.path.join(args.workdir, "taxi_runs"))
    served = model_version.resolve(os.path.join(runs, "serving"), "taxi")
    model_uri = os.path.join(args.workdir, "model")
    os.makedirs(model_uri, exist_ok=True)
    for name in ("Format-Serving", "serving_model_dir"):
        if not os.path.exists(os.path.join(model_uri, name)):
            os.symlink(served.path, os.path.join(model_uri, name))
    data = tiny_runs.write_sample(os.path.join(args.workdir, "data"), 0, rows=args.rows)
    context = InteractiveContext(pipeline_name="dask_probe", pipeline_root=os.path.join(args.workdir, "root"),
                                 metadata_connection_config=None)
    with running_cluster(os.path.join(args.workdir, "cluster"), workers=2) as cluster:
        for name, component in components(context, data, model_uri, served.signature, served.output):
            direct, expected = _attempt(context, component, [])
            print(json.dumps({"component": name, "runner": "direct", "result": direct, "summary": expected}),
                  flush=True)
            if args.only and name not in args.only:
                continue
            for label, runner in RUNNERS.items():
                status, found = _attempt(context, component, [f"--runner={runner}",
                                                              f"--dask_client_address={cluster.address}",
                                                              "--dask_npartitions=2"])
                if status == "finishes" and (found != expected or not found):
                    status = "finishes, outputs differ from the DirectRunner's"
                elif status == "finishes":
                    status = "runs, outputs equal the DirectRunner's"
                print(json.dumps({"component": name, "runner": label, "result": status,
                                  **({"summary": found} if found != expected else {})}), flush=True)
            _run(context, component, [])  # its DirectRunner outputs feed the next component


if __name__ == "__main__":
    main()
