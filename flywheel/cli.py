"""The `flywheel` command line: run | ingest | monitor | simulate | retrain | lineage | compile | serve | status ...

Each subcommand parses its arguments, calls one function of `flywheel.api`, prints the result (with
--json: only JSON on stdout, progress on stderr) and maps it to an exit status. Nothing here imports
TensorFlow; the library does, only when a pipeline really runs.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shlex
import sys
import threading
from typing import Any, Callable, Optional

from flywheel import __version__, api, lock
from flywheel.pipelines import registry

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_STOPPED, EXIT_LOCKED = 0, 1, 2, 3, 4

RUN_EXITS = """exit status:
  0  the run finished (or nothing changed since the last one: nothing to do)
  1  a component failed (the error names it)
  2  bad arguments, unknown pipeline, a bad input location, or an output directory this user may not write
  3  the data validation gate stopped the run (its report's path is printed)
  4  another flywheel process holds the output directory"""
RETRAIN_EXITS = """exit status:
  0  done: nothing new or no drift (nothing run), or the pipeline ran (pushed or not, see "pushed")
  1  a component failed
  2  bad arguments, unknown pipeline, no span-N folders in --data, or an output directory this user may not write
  3  the data validation gate stopped the retraining run
  4  another flywheel process holds the output directory"""
INGEST_EXITS = """exit status:
  0  ingested
  1  above the quarantine limit, or a required column is missing
  2  bad arguments or input location"""
MONITOR_EXITS = """exit status (like diff):
  0  no drift
  1  drift
  2  error (missing file, columns that do not match)"""
SIMPLE_EXITS = """exit status:
  0  done
  2  bad arguments, unknown pipeline, or an error the message names"""
SERVE_EXITS = """exit status:
  0  stopped by SIGINT or SIGTERM
  2  bad arguments, a serving folder that does not exist, or an address that cannot be listened on

stderr: a line per version loaded or unloaded and per rollout change, "ready" once requests are answered (the
models loaded, the port listening), "stopped" at the end; errors come before any other line."""
PREDICT_EXITS = """exit status:
  0  scored (bad rows quarantined)
  1  a file was refused (unreadable, a required column missing) or rows did not add up
  2  bad arguments, unknown pipeline, a bad input location, an unknown model or version, or a non-empty --output"""
COMPILE_EXITS = """exit status:
  0  compiled
  1  the compiler failed (the message says why)
  2  bad arguments, unknown pipeline, or an output path that cannot be written (.yaml, .yml or .json)"""
REPLAY_EXITS = """exit status:
  0  every request answered 2xx
  1  some requests failed (counted by status)
  2  bad arguments, unreadable data, no server answering within --wait, or a server that does not describe its
     model"""
ROLLOUT_EXITS = """exit status:
  0  done (status: the state was read; analyze: the candidate is to be promoted)
  1  analyze: the candidate is to be rolled back
  3  analyze: not enough traffic yet, keep waiting
     (analyze --scheduled: 0 whenever the analysis ran and its decision was applied, and when no rollout is
     in progress)
  2  bad arguments, or a rollout rule the message names (one rollout at a time, a candidate that is not a
     complete version or is the stable one, promote/rollback with no rollout running)"""
JOIN_EXITS = """exit status:
  0  joined (unmatched rows and duplicates are counted in the result)
  2  bad arguments, missing key or label column, or joined rows that would lack a column Ingest requires"""


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Shows every option's default (unless its help already says it) and keeps the epilog's layout."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default is argparse.SUPPRESS or not action.option_strings:
            return text
        return f"{text} (default: {'none' if action.default in (None, '', []) else '%(default)s'})"


def _pipeline_arg(parser: argparse.ArgumentParser, optional: bool = False) -> None:
    known = ", ".join(registry.names())
    if optional:
        parser.add_argument("pipeline", nargs="?", default=registry.DEFAULT, metavar="PIPELINE",
                            help=f"registered pipeline ({known})")
    else:
        parser.add_argument("pipeline", metavar="PIPELINE", help=f"registered pipeline ({known})")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flywheel", description="TFX pipelines from raw data to a served model.",
                                     formatter_class=_Formatter)
    parser.add_argument("--version", action="version", version=f"flywheel {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str, epilog: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_text, description=help_text, epilog=epilog, formatter_class=_Formatter)

    run = command("run", "run a pipeline end to end", RUN_EXITS)
    _pipeline_arg(run)
    run.add_argument("--engine", choices=("local", "beam"), default="local", help="orchestrator")
    run.add_argument("--data", help="CSV/Parquet file, folder, or folder of span-N folders (default: the "
                                    "pipeline's shipped data)")
    run.add_argument("--output-dir", default="flywheel_output", help="artifacts, metadata, stamp and lock")
    run.add_argument("--serving-dir", help="serving folder, shareable by several pipelines "
                                           "(default: <output-dir>/serving)")
    run.add_argument("--train-steps", type=int, help="training steps (default: the pipeline config's)")
    run.add_argument("--span", type=int, default=-1, help="last span to read (-1: latest)")
    run.add_argument("--num-spans", type=int, default=1, help="rolling window: how many spans ending at --span")
    run.add_argument("--allow-anomaly", action="append", default=[],
                     help="anomaly the data gate lets through: TYPE, feature:TYPE or feature:* (repeatable)")
    run.add_argument("--warm-start", action="store_true", help="start training from the serving model's weights")
    run.add_argument("--beam-pipeline-args", default="", help="e.g. '--runner=FlinkRunner --flink_master=host:8081'")
    run.add_argument("--json", action="store_true", help="print the result as JSON on stdout (progress on stderr)")
    run.add_argument("--verbose", action="store_true", help="show TensorFlow, Beam and absl logs")

    ingest = command("ingest", "ingest CSV/Parquet into tf.Examples + quarantine, without a pipeline", INGEST_EXITS)
    ingest.add_argument("--data", required=True, help="CSV/Parquet file, folder, or folder of span-N folders")
    ingest.add_argument("--span", type=int, default=-1, help="last span to read (-1: latest)")
    ingest.add_argument("--num-spans", type=int, default=1, help="how many spans ending at --span")
    ingest.add_argument("--schema", required=True, help="TFDV schema (.pbtxt) giving columns and types")
    ingest.add_argument("--output-dir", required=True, help="examples/ and quarantine/ are written here")
    ingest.add_argument("--quarantine-limit", type=float, default=0.01, help="largest quarantined share of rows")
    ingest.add_argument("--split-key", default="", help="comma-separated columns to hash for the split")
    ingest.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    ingest.add_argument("--verbose", action="store_true", help="show TensorFlow, Beam and absl logs")

    mon = command("monitor", "drift between a baseline and current data", MONITOR_EXITS)
    mon.add_argument("--baseline", required=True, help="CSV/Parquet file or folder, or a saved profile (.json)")
    mon.add_argument("--current", required=True, help="CSV/Parquet file or folder, or a saved profile (.json)")
    mon.add_argument("--schema", help="TFDV schema: features to compare and drift_comparator thresholds")
    mon.add_argument("--report", help="folder for drift.json and report.html")
    mon.add_argument("--save-profile", help="also write the current data's profile here (.json)")
    mon.add_argument("--reference-metrics", help="JSON with the reference AUC: {\"auc\": x} or a push.json")
    mon.add_argument("--label-column", default="label", help="binary label column for performance decay")
    mon.add_argument("--reference-predictions", help="data with a 'prediction' column (a request-log span) standing "
                                                     "for the baseline's predictions, for prediction drift")
    mon.add_argument("--json", action="store_true", help="print the result as JSON on stdout")

    sim = command("simulate", "write labelled production spans, with drift, from the pipeline's data", SIMPLE_EXITS)
    _pipeline_arg(sim)
    sim.add_argument("--out", required=True, help="folder for span-1 .. span-N")
    sim.add_argument("--spans", type=int, default=4, help="how many spans")
    sim.add_argument("--drift-from", type=int, default=None, help="first drifted span, 1..--spans (none: no drift)")
    sim.add_argument("--rows", type=int, default=5000, help="rows per span")
    sim.add_argument("--seed", type=int, default=0, help="random seed (same seed, same files)")
    sim.add_argument("--json", action="store_true", help="print the result as JSON on stdout")

    ret = command("retrain", "scheduled job: newest span -> drift decision -> retrain/evaluate/push", RETRAIN_EXITS)
    _pipeline_arg(ret)
    ret.add_argument("--data", required=True, help="folder of span-N folders")
    ret.add_argument("--output-dir", default="flywheel_output", help="artifacts, metadata and lock")
    ret.add_argument("--serving-dir", help="serving folder (default: <output-dir>/serving)")
    ret.add_argument("--if-drift", action="store_true", help="retrain only on drift (or with no baseline yet)")
    ret.add_argument("--window", type=int, default=3, help="train on the last W spans")
    ret.add_argument("--train-steps", type=int, help="training steps (default: the pipeline config's)")
    ret.add_argument("--release", default="direct", metavar="canary:P|shadow|blue-green|direct",
                     help="how a pushed version is released: direct (it serves at once) or as the candidate of a "
                          "rollout against the version served now")
    ret.add_argument("--json", action="store_true", help="print the result as JSON on stdout (progress on stderr)")
    ret.add_argument("--verbose", action="store_true", help="show TensorFlow, Beam and absl logs")

    lin = command("lineage", "what produced a model in serving, from ML-Metadata", SIMPLE_EXITS)
    _pipeline_arg(lin, optional=True)
    lin.add_argument("--output-dir", default="flywheel_output", help="the runs' output directory (metadata.sqlite)")
    lin.add_argument("--serving-dir", help="serving folder (default: <output-dir>/serving)")
    lin.add_argument("--model", default="latest", help="latest or a version number")
    lin.add_argument("--model-name", help="served model's name (default: the pipeline's model name)")
    lin.add_argument("--json", action="store_true", help="print the result as JSON on stdout")

    comp = command("compile", "compile a pipeline for Kubeflow Pipelines", COMPILE_EXITS)
    _pipeline_arg(comp)
    comp.add_argument("--image", default=None, help="container image every step runs in, built from "
                                                    "kubeflow/Dockerfile and pushed where the cluster pulls from "
                                                    "(required: no image is published)")
    comp.add_argument("--output", help=".yaml/.yml: PipelineSpec for the KFP UI; .json: Vertex AI PipelineJob "
                                       "(default: the pipeline's spec in kubeflow/)")
    comp.add_argument("--data-pvc", help="PersistentVolumeClaim mounted at the data root (default: flywheel-data)")
    comp.add_argument("--serving-pvc", help="PersistentVolumeClaim mounted at the serving folder, shared with TF "
                                            "Serving (default: flywheel-serving)")
    comp.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    comp.add_argument("--verbose", action="store_true", help="show TensorFlow, Beam and absl logs")

    rep = command("replay", "send a span's rows (without the label) to a TF Serving REST endpoint", REPLAY_EXITS)
    _pipeline_arg(rep)
    rep.add_argument("--data", required=True, help="span folder, file, or folder of span-N folders (latest span)")
    rep.add_argument("--url", required=True, help="model URL, e.g. http://127.0.0.1:8501/v1/models/taxi")
    rep.add_argument("--rate", type=float, help="target requests per second (default: as fast as answered)")
    rep.add_argument("--id-column", help="column sent as X-Request-Id, one row per request (for joining labels)")
    rep.add_argument("--batch", type=int, default=1, help="rows per request")
    rep.add_argument("--concurrency", type=int, default=8, help="requests in flight at once")
    rep.add_argument("--features", help="comma-separated model inputs (default: from <url>/metadata)")
    rep.add_argument("--wait", type=float, default=60.0, metavar="SECONDS",
                     help="how long to wait for a server that refuses connections yet (one started a moment ago); "
                          "0: not at all")
    rep.add_argument("--json", action="store_true", help="print the result as JSON on stdout")

    logs = sub.add_parser("logs", help="request logs", description="request logs", formatter_class=_Formatter)
    logs_sub = logs.add_subparsers(dest="logs_command", required=True, metavar="SUBCOMMAND")
    join = logs_sub.add_parser("join", help="join labels that arrived later to logged predictions",
                               description="join labels that arrived later to logged predictions", epilog=JOIN_EXITS,
                               formatter_class=_Formatter)
    join.add_argument("--logs", required=True, help="request log folder (span-N folders)")
    join.add_argument("--labels", required=True, help="CSV/Parquet file or folder with the key and label columns")
    join.add_argument("--key", required=True, help="the labels' column matching logged rows (request_id, a feature, "
                      "or the id the client sent as X-Request-Id)")
    join.add_argument("--log-key", help="the log's column matched with --key (default: --key when the log has it, "
                      "else request_id)")
    join.add_argument("--output", required=True, help="folder for the joined span-N folders")
    join.add_argument("--span", type=int, help="write all joined rows into <output>/span-<SPAN>/ (default: the log's "
                      "own span numbers, its UTC days)")
    join.add_argument("--pipeline", default=registry.DEFAULT, help="pipeline whose schema and label the join uses")
    join.add_argument("--label-column", help="label column of the labels (default: the schema's label)")
    join.add_argument("--json", action="store_true", help="print the result as JSON on stdout")

    srv = command("serve", "serve a model's versions over TF Serving's REST API", SERVE_EXITS)
    srv.add_argument("--serving-dir", required=True, help="serving folder holding <model>/<version>/")
    srv.add_argument("--model", default="taxi", help="model name: the folder under --serving-dir and the URL's name")
    srv.add_argument("--host", default="127.0.0.1", help="address to listen on")
    srv.add_argument("--port", type=int, default=8501, help="port (TF Serving's REST port by default)")
    srv.add_argument("--log-dir", help="write sampled requests and predictions here as Parquet spans")
    srv.add_argument("--log-sample", type=float, default=1.0, help="share of requests logged, in (0, 1]")
    srv.add_argument("--log-max-pending-mb", type=float, default=api.LOG_MAX_PENDING_MB,
                     help="most megabytes of requests (their bodies' length) waiting to be written to --log-dir; "
                          "beyond, a request is answered but not logged, and counted in dropped_rows")
    srv.add_argument("--max-batch-size", type=int, default=512, help="most rows in one TensorFlow call")
    srv.add_argument("--batch-timeout-ms", type=float, default=0.0,
                     help="how long a batch waits for more requests before it runs")
    srv.add_argument("--rollout-key-header", default="X-Rollout-Key",
                     help="request header whose value keeps a client on one version during a canary (sticky split)")
    srv.add_argument("--verbose", action="store_true", help="show TensorFlow's logs and each event's traceback")
    srv.add_argument("--max-connections", type=int, default=1000,
                     help="open connections (and requests in progress) past which a request gets 503; connections "
                          "past twice this are closed as they open")
    srv.add_argument("--keep-alive-timeout", type=float, default=20.0,
                     help="seconds a connection may stay idle after an answer before it is closed (longer than "
                          "clients keep an idle connection: httpx 5 s, aiohttp 15 s)")
    srv.add_argument("--read-timeout", type=float, default=30.0,
                     help="seconds a client has to send a whole request (from its connection or the request's "
                          "first byte)")
    srv.add_argument("--max-header-bytes", type=int, default=64 * 1024,
                     help="largest request line and headers taken (beyond: 431)")
    srv.add_argument("--max-load-retries", type=int, default=5,
                     help="times a version that failed to load is tried again before the server gives up on it "
                          "until its folder changes (TF Serving's --max_num_load_retries)")
    srv.add_argument("--load-retry-interval", type=float, default=60.0,
                     help="seconds between those tries (TF Serving's --load_retry_interval_micros, in seconds)")

    _rollout_parser(sub)

    stat = command("status", "what serves now: versions with their rollout roles, metrics, reports, the rollout",
                   SIMPLE_EXITS)
    stat.add_argument("--serving-dir", required=True, help="serving folder holding <model>/<version>/")
    stat.add_argument("--model", default="taxi", help="model name: the folder under --serving-dir")
    stat.add_argument("--url", help="a running server's model URL, e.g. http://127.0.0.1:8501/v1/models/taxi, for "
                                    "its own model status")
    stat.add_argument("--json", action="store_true", help="print the result as JSON on stdout")

    pred = command("predict", "score a span with the served model through Beam (batch inference)", PREDICT_EXITS)
    _pipeline_arg(pred)
    pred.add_argument("--data", required=True, help="CSV/Parquet file, folder, or folder of span-N folders")
    pred.add_argument("--span", type=int, default=-1, help="span to score (-1: latest)")
    pred.add_argument("--serving-dir", required=True, help="serving folder: <serving-dir>/<model>/<version>/")
    pred.add_argument("--version", type=int, help="model version to score with (default: the version serving now: "
                                                   "the rollout's stable one, else the latest complete one)")
    pred.add_argument("--output", required=True, help="new or empty folder: predictions/part-*.parquet, "
                                                      "quarantine.jsonl, counts.json")
    pred.add_argument("--id-column", help="a column of the data to carry into the predictions beside "
                                          "source_file and source_line (each row's file and line), e.g. trip_id; "
                                          "a row without it is quarantined")
    pred.add_argument("--engine", choices=("local", "beam"), default="local",
                      help="local: DirectRunner in this process; beam: DirectRunner multi-processing")
    pred.add_argument("--json", action="store_true", help="print the result as JSON on stdout (no progress lines)")
    pred.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    pred.add_argument("--verbose", action="store_true", help="show TensorFlow, Beam and absl logs")
    return parser


def _rollout_parser(sub) -> None:
    rollout = sub.add_parser("rollout", help="progressive delivery: canary, shadow and blue/green rollouts",
                             description="progressive delivery: canary, shadow and blue/green rollouts",
                             formatter_class=_Formatter)
    commands = rollout.add_subparsers(dest="rollout_command", required=True, metavar="SUBCOMMAND")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        parser = commands.add_parser(name, help=help_text, description=help_text, epilog=ROLLOUT_EXITS,
                                     formatter_class=_Formatter)
        parser.add_argument("--serving-dir", required=True, help="serving folder holding <model>/<version>/")
        parser.add_argument("--model", default="taxi", help="model name: the folder under --serving-dir")
        return parser

    def recorded(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--reason", default="", help="why, recorded with the decision")
        parser.add_argument("--metadata", help="ML-Metadata store (a run's metadata.sqlite) to record the decision "
                                               "in (default: not recorded)")
        parser.add_argument("--json", action="store_true", help="print the result as JSON on stdout")

    start = command("start", "start rolling out a version against the stable one")
    start.add_argument("--version", type=int, required=True, help="the candidate: a complete version in serving")
    how = start.add_mutually_exclusive_group(required=True)
    how.add_argument("--canary-percent", type=float, help="canary: the candidate answers this share, in (0, 100)")
    how.add_argument("--shadow", action="store_true", help="shadow: the candidate sees copies, never answers")
    how.add_argument("--blue-green", action="store_true", help="blue/green: the candidate answers everything")
    recorded(start)
    status = command("status", "the rollout state and the version served by default")
    status.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    recorded(command("promote", "the candidate becomes stable"))
    recorded(command("rollback", "the candidate stops taking traffic (never served by default again)"))
    analyze = command("analyze", "judge the candidate against stable on logged traffic; promote, roll back or wait")
    analyze.add_argument("--log-dir", required=True, help="the request log of `flywheel serve --log-dir`")
    analyze.add_argument("--labels", help="the log with labels joined (`flywheel logs join` output): adds the AUC")
    analyze.add_argument("--config", help="JSON/YAML file of the decision rule's thresholds (default: built in)")
    analyze.add_argument("--report-dir", help="folder for analysis.json and report.html")
    analyze.add_argument("--dry-run", action="store_true", help="report the decision without applying it")
    analyze.add_argument("--metadata", help="ML-Metadata store (a run's metadata.sqlite) to record the decision in")
    analyze.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    analyze.add_argument("--wait-for-log", type=float, default=0.0, metavar="SECONDS",
                         help="wait up to this long for the request log to settle (its newest row 10 s old: the "
                              "server writes every 5 s) before reading it, e.g. right after a replay; 0: read it now")
    analyze.add_argument("--scheduled", action="store_true",
                         help="for cron or a CronJob: no rollout in progress is not an error, and a decision that was "
                              "applied (promote, rollback, wait) exits 0; errors still exit 2")
    manifests = command("manifests", "write TF Serving's models.config and KServe InferenceServices from the state")
    manifests.add_argument("--output", required=True, help="folder for models.config and <model>-*.yaml")
    manifests.add_argument("--storage-uri", help="a version's storage URI for KServe, {model} and {version} "
                                                 "replaced (default: pvc://flywheel-serving/kserve/{model}-{version})")
    manifests.add_argument("--json", action="store_true", help="print the result as JSON on stdout")


def _err(message: str) -> None:
    print(f"flywheel: {message.removeprefix('flywheel: ')}", file=sys.stderr)


def _show(args, result) -> None:
    if args.json:
        print(json.dumps(result.to_dict(), default=str))
    else:
        print("\n".join(result.lines()))


def _progress(args):
    return sys.stderr if args.json else sys.stdout


_RUN_EXIT = {"finished": EXIT_OK, "up_to_date": EXIT_OK, "no_drift": EXIT_OK, "nothing_new": EXIT_OK,
             "stopped": EXIT_STOPPED,
             "failed": EXIT_FAILED}


def _report_run(run) -> None:
    if run.status == "failed":
        where = f" in {', '.join(run.failed_nodes)}" if run.failed_nodes else ""
        _err(f"run failed{where}: {run.error or 'see the states above'}")
    elif run.status == "stopped":
        _err(f"the data validation gate stopped the run: see {run.gate_report}")


def cmd_run(args) -> int:
    cfg = api.pipeline_config(args.pipeline, args.output_dir, data=args.data, serving_dir=args.serving_dir,
                              engine=args.engine, beam_pipeline_args=tuple(shlex.split(args.beam_pipeline_args)),
                              train_steps=args.train_steps, span=args.span, num_spans=args.num_spans,
                              allowed_anomalies=tuple(args.allow_anomaly), warm_start=args.warm_start)
    result = api.run_pipeline(cfg, args.engine, progress=_progress(args), verbose=args.verbose)
    _show(args, result)
    _report_run(result)
    return _RUN_EXIT[result.status]


def cmd_retrain(args) -> int:
    result = api.retrain(args.pipeline, args.data, args.output_dir, serving_dir=args.serving_dir,
                         if_drift=args.if_drift, window=args.window, train_steps=args.train_steps,
                         release=args.release, progress=_progress(args), verbose=args.verbose)
    _show(args, result)
    if result.run is not None:
        _report_run(result.run)
    return _RUN_EXIT[result.status]


def cmd_ingest(args) -> int:
    result = api.ingest(args.data, args.schema, args.output_dir, span=args.span, num_spans=args.num_spans,
                        quarantine_limit=args.quarantine_limit,
                        split_key=tuple(c for c in args.split_key.split(",") if c), verbose=args.verbose)
    _show(args, result)
    if result.error:
        _err(result.error)
        return EXIT_FAILED
    return EXIT_OK


def cmd_monitor(args) -> int:
    result = api.monitor(args.baseline, args.current, schema=args.schema, report_dir=args.report,
                         save_profile=args.save_profile, reference_metrics=args.reference_metrics,
                         label_column=args.label_column, reference_predictions=args.reference_predictions)
    _show(args, result)
    skipped = (result.details.get("performance") or {}).get("skipped")
    if skipped:
        _err(f"performance not computed: {skipped}")
    return EXIT_FAILED if result.drift_detected else EXIT_OK


def cmd_simulate(args) -> int:
    _show(args, api.simulate(args.pipeline, args.out, spans=args.spans, drift_from=args.drift_from, rows=args.rows,
                             seed=args.seed))
    return EXIT_OK


def cmd_lineage(args) -> int:
    _show(args, api.lineage(args.pipeline, args.output_dir, serving_dir=args.serving_dir, model=args.model,
                            model_name=args.model_name))
    return EXIT_OK


def cmd_compile(args) -> int:
    try:
        result = api.compile_pipeline(args.pipeline, args.output, image=args.image, verbose=args.verbose,
                                      data_pvc=args.data_pvc, serving_pvc=args.serving_pvc)
    except api.CompileError as e:
        _err(str(e))
        return EXIT_FAILED
    _show(args, result)
    return EXIT_OK


def cmd_replay(args) -> int:
    features = tuple(f for f in (args.features or "").split(",") if f) or None
    result = api.replay(args.pipeline, args.data, args.url, rate=args.rate, id_column=args.id_column,
                        batch=args.batch, concurrency=args.concurrency, features=features, wait_s=args.wait)
    _show(args, result)
    return EXIT_FAILED if result.failed else EXIT_OK


def cmd_logs(args) -> int:
    result = api.logs_join(args.logs, args.labels, args.key, args.output, pipeline=args.pipeline,
                           label_column=args.label_column, log_key=args.log_key, span=args.span)
    _show(args, result)
    return EXIT_OK


def cmd_serve(args) -> int:
    from flywheel.server.connections import ConnectionLimits
    from flywheel.server.models import LoadRetries

    try:
        limits = ConnectionLimits(args.max_connections, args.keep_alive_timeout, args.read_timeout,
                                  args.max_header_bytes)
        load_retries = LoadRetries(args.max_load_retries, args.load_retry_interval)
    except ValueError as e:
        raise api.UsageError(str(e)) from None
    api.serve(args.serving_dir, args.model, args.host, args.port, max_batch_size=args.max_batch_size,
              batch_timeout_ms=args.batch_timeout_ms, log_dir=args.log_dir, log_sample=args.log_sample,
              log_max_pending_mb=args.log_max_pending_mb,
              rollout_key_header=args.rollout_key_header, limits=limits, verbose=args.verbose, events=sys.stderr,
              load_retries=load_retries)
    return EXIT_OK


PREDICT_PROGRESS_ROWS = 100_000  # flywheel predict: a progress line per file every that many rows


def cmd_predict(args) -> int:
    # As the `flywheel` command, this process only launches the pipeline: it can do without what workers do without.
    # Called in-process (a test, a notebook), it leaves the caller's imports alone.
    if args.engine == "beam" and args.own_process:
        from flywheel.batch import worker

        worker.leave_out_unused()
    result = api.predict(args.pipeline, args.data, args.serving_dir, args.output,
                         span=None if args.span == -1 else args.span, version=args.version, engine=args.engine,
                         progress_every=0 if args.json or args.quiet else PREDICT_PROGRESS_ROWS, verbose=args.verbose,
                         id_column=args.id_column)
    _show(args, result)
    if result.error:
        _err(result.error)
        return EXIT_FAILED
    return EXIT_OK


def cmd_status(args) -> int:
    _show(args, api.status(args.serving_dir, args.model, url=args.url))
    return EXIT_OK


def cmd_rollout(args) -> int:
    where = {"serving_dir": args.serving_dir, "model": args.model}
    name = args.rollout_command
    if name == "status":
        result = api.rollout_status(**where)
    elif name == "analyze":
        result = api.rollout_analyze(args.serving_dir, args.model, args.log_dir, labels=args.labels,
                                     config=args.config, report_dir=args.report_dir, apply=not args.dry_run,
                                     metadata=args.metadata, idle_ok=args.scheduled,
                                     wait_for_log=args.wait_for_log)
        _show(args, result)
        if args.scheduled and (result.decision is None or result.applied is not None):
            return EXIT_OK
        return {"promote": EXIT_OK, "rollback": EXIT_FAILED}.get(result.decision, EXIT_STOPPED)
    elif name == "manifests":
        result = api.rollout_manifests(args.serving_dir, args.output, args.model, storage_uri=args.storage_uri)
    elif name == "start":
        mode = "canary" if args.canary_percent is not None else "shadow" if args.shadow else "blue_green"
        result = api.rollout_start(**where, version=args.version, mode=mode, percent=args.canary_percent,
                                   reason=args.reason, metadata=args.metadata)
    else:
        change = api.rollout_promote if name == "promote" else api.rollout_rollback
        result = change(**where, reason=args.reason, metadata=args.metadata)
    _show(args, result)
    return EXIT_OK


HANDLERS: dict[str, Callable[[Any], int]] = {
    "run": cmd_run, "ingest": cmd_ingest, "monitor": cmd_monitor, "simulate": cmd_simulate,
    "retrain": cmd_retrain, "lineage": cmd_lineage, "compile": cmd_compile, "replay": cmd_replay,
    "logs": cmd_logs, "serve": cmd_serve, "predict": cmd_predict, "rollout": cmd_rollout,
    "status": cmd_status}


def main(argv: Optional[list[str]] = None, *, own_process: bool = False) -> int:
    """Runs one command; own_process: this process is the `flywheel` command's own (`run`), not a caller's."""
    args = _parser().parse_args(argv)
    args.own_process = own_process
    try:
        if getattr(args, "pipeline", None) is not None:
            registry.get(args.pipeline)
        return HANDLERS[args.command](args)
    except (api.UsageError, registry.UnknownPipelineError, lock.LockPermissionError) as e:
        _err(str(e))
        return EXIT_USAGE
    except lock.LockedError as e:
        _err(str(e))
        return EXIT_LOCKED


def run() -> None:
    """The `flywheel` command: `main`, then the end of the process. Exit handlers run and output is flushed as at
    any exit, but the interpreter's teardown and C++ static destructors are skipped: among them pyarrow 10's thread
    pools, which can be destroyed while one of their Parquet threads is still alive and then abort the finished
    command with SIGABRT ("terminate called without an active exception", apache/arrow#34314). A command that
    leaves a non-daemon thread running exits the usual way, which waits for it."""
    code = main(own_process=True)
    if any(t.is_alive() and not t.daemon and t is not threading.main_thread() for t in threading.enumerate()):
        sys.exit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`| head`) or stream: nothing more can be written to it
            pass
    os._exit(code)


if __name__ == "__main__":
    run()
