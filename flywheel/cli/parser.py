"""The `flywheel` command line's parser: commands, options, defaults and each command's exit statuses.

It imports no command's code (nor the library API), so that `flywheel --help` and `flywheel COMMAND --help` answer
at once.
"""

from __future__ import annotations

import argparse
import shlex

from flywheel import __version__
from flywheel.cli.exits import epilog
from flywheel.pipelines import registry

# `serve --log-max-pending-mb`'s default: the request log's byte budget (`flywheel.api.serving.LOG_MAX_PENDING_MB`),
# written here because the parser does not import the server (tests/test_defaults_agree.py checks they agree).
LOG_MAX_PENDING_MB = 256


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Shows every option's default (unless its help already says it) and keeps the epilog's layout."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default is argparse.SUPPRESS or not action.option_strings or action.required:
            return text
        return f"{text} (default: {'none' if action.default in (None, '', [], ()) else '%(default)s'})"


def beam_options(text: str) -> tuple[str, ...]:
    """`--beam-pipeline-args`' text, split as a shell would."""
    try:
        return tuple(shlex.split(text))
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected Beam options quoted as in a shell, got {text!r} ({e})") from None


def _pipeline_arg(parser: argparse.ArgumentParser, optional: bool = False) -> None:
    known = ", ".join(registry.names())
    if optional:
        parser.add_argument("pipeline", nargs="?", default=registry.DEFAULT, metavar="PIPELINE",
                            help=f"registered pipeline ({known})")
    else:
        parser.add_argument("pipeline", metavar="PIPELINE", help=f"registered pipeline ({known})")


METADATA_HELP = ("ML-Metadata store: a SQLite file or mysql://USER@HOST[:PORT]/DATABASE shared by several machines, "
                 "the password in $FLYWHEEL_METADATA_PASSWORD or the file $FLYWHEEL_METADATA_PASSWORD_FILE names, "
                 "never in the URL")


def make_parser() -> argparse.ArgumentParser:
    """The `flywheel` command line's parser: every command, its options and its exit statuses (`--help`)."""
    parser = argparse.ArgumentParser(prog="flywheel", description="TFX pipelines from raw data to a served model.",
                                     formatter_class=_Formatter)
    parser.add_argument("--version", action="version", version=f"flywheel {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_text, description=help_text, epilog=epilog(name),
                              formatter_class=_Formatter)

    run = command("run", "run a pipeline end to end")
    _pipeline_arg(run)
    run.add_argument("--engine", choices=("local", "beam"), default="local", help="orchestrator")
    run.add_argument("--data", help="CSV/Parquet file, folder, or folder of span-N folders (default: the "
                                    "pipeline's shipped data)")
    run.add_argument("--output-dir", default="flywheel_output", help="artifacts, metadata, stamp and lock")
    run.add_argument("--serving-dir", help="serving folder, shareable by several pipelines "
                                           "(default: <output-dir>/serving)")
    run.add_argument("--metadata", help=METADATA_HELP + " (default: <output-dir>/metadata.sqlite)")
    run.add_argument("--train-steps", type=int, help="training steps (default: the pipeline config's)")
    run.add_argument("--span", type=int, default=-1, help="last span to read (-1: latest)")
    run.add_argument("--num-spans", type=int, default=1, help="rolling window: how many spans ending at --span")
    run.add_argument("--allow-anomaly", action="append", default=[],
                     help="anomaly the data gate lets through: TYPE, feature:TYPE or feature:* (repeatable)")
    run.add_argument("--warm-start", action="store_true", help="start training from the serving model's weights")
    run.add_argument("--beam-pipeline-args", type=beam_options, default=(),
                     help="e.g. '--runner=FlinkRunner --flink_master=host:8081' (docs/distributed.md)")
    run.add_argument("--json", action="store_true", help="print the result as JSON on stdout (progress on stderr)")
    run.add_argument("--verbose", action="store_true", help="show TensorFlow, Beam and absl logs")

    ingest = command("ingest", "ingest CSV/Parquet into tf.Examples + quarantine, without a pipeline")
    ingest.add_argument("--data", required=True, help="CSV/Parquet file, folder, or folder of span-N folders")
    ingest.add_argument("--span", type=int, default=-1, help="last span to read (-1: latest)")
    ingest.add_argument("--num-spans", type=int, default=1, help="how many spans ending at --span")
    ingest.add_argument("--schema", required=True, help="TFDV schema (.pbtxt) giving columns and types")
    ingest.add_argument("--output-dir", required=True, help="examples/ and quarantine/ are written here")
    ingest.add_argument("--quarantine-limit", type=float, default=0.01, help="largest quarantined share of rows")
    ingest.add_argument("--split-key", default="", help="comma-separated columns to hash for the split")
    ingest.add_argument("--beam-pipeline-args", type=beam_options, default=(),
                        help="Beam runner and its options, e.g. '--runner=flywheel.dask_runner.DaskRunner "
                             "--dask_client_address=host:8786' (docs/distributed.md)")
    ingest.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    ingest.add_argument("--verbose", action="store_true", help="show TensorFlow, Beam and absl logs")

    mon = command("monitor", "drift between a baseline and current data")
    mon.add_argument("--baseline", required=True, help="CSV/Parquet file or folder, a saved profile (.json), or a "
                                                       "model's folder in serving (<serving>/<model>: the training "
                                                       "profile of the version it serves) or a version folder "
                                                       "(<serving>/<model>/<version>: that version's)")
    mon.add_argument("--current", required=True, help="CSV/Parquet file or folder, or a saved profile (.json)")
    mon.add_argument("--schema", help="TFDV schema: features to compare and drift_comparator thresholds")
    mon.add_argument("--report", help="folder for drift.json and report.html")
    mon.add_argument("--save-profile", help="also write the current data's profile here (.json)")
    mon.add_argument("--reference-metrics", help="JSON with the reference AUC: {\"auc\": x} or a push.json")
    mon.add_argument("--label-column", default="label", help="binary label column for performance decay")
    mon.add_argument("--reference-predictions", help="data with a 'prediction' column (a request-log span) standing "
                                                     "for the baseline's predictions, for prediction drift")
    mon.add_argument("--json", action="store_true", help="print the result as JSON on stdout")

    sim = command("simulate", "write labelled production spans, with drift, from the pipeline's data")
    _pipeline_arg(sim)
    sim.add_argument("--out", required=True, help="folder for span-1 .. span-N")
    sim.add_argument("--spans", type=int, default=4, help="how many spans")
    sim.add_argument("--drift-from", type=int, default=None, help="first drifted span, 1..--spans (none: no drift)")
    sim.add_argument("--rows", type=int, default=5000, help="rows per span")
    sim.add_argument("--seed", type=int, default=0, help="random seed (same seed, same files)")
    sim.add_argument("--files", type=int, default=1, help="files per span (the same rows, split in order)")
    sim.add_argument("--json", action="store_true", help="print the result as JSON on stdout")

    ret = command("retrain", "scheduled job: newest span -> drift decision -> retrain/evaluate/push")
    _pipeline_arg(ret)
    ret.add_argument("--data", required=True, help="folder of span-N folders")
    ret.add_argument("--output-dir", default="flywheel_output", help="artifacts, metadata and lock")
    ret.add_argument("--serving-dir", help="serving folder (default: <output-dir>/serving)")
    ret.add_argument("--metadata", help=METADATA_HELP + " (default: <output-dir>/metadata.sqlite)")
    ret.add_argument("--if-drift", action="store_true", help="retrain only on drift (or with no baseline yet)")
    ret.add_argument("--window", type=int, default=3, help="train on the last W spans")
    ret.add_argument("--train-steps", type=int, help="training steps (default: the pipeline config's)")
    ret.add_argument("--release", default="direct", metavar="canary:P|shadow|blue-green|direct",
                     help="how a pushed version is released: direct (it serves at once) or as the candidate of a "
                          "rollout against the version served now")
    ret.add_argument("--json", action="store_true", help="print the result as JSON on stdout (progress on stderr)")
    ret.add_argument("--verbose", action="store_true", help="show TensorFlow, Beam and absl logs")

    lin = command("lineage", "what produced a model in serving, from ML-Metadata")
    _pipeline_arg(lin, optional=True)
    lin.add_argument("--output-dir", default="flywheel_output", help="the runs' output directory (metadata.sqlite)")
    lin.add_argument("--serving-dir", help="serving folder (default: <output-dir>/serving)")
    lin.add_argument("--metadata", help=METADATA_HELP + " (default: <output-dir>/metadata.sqlite)")
    lin.add_argument("--model", default="latest", help="latest or a version number")
    lin.add_argument("--model-name", help="served model's name (default: the pipeline's model name)")
    lin.add_argument("--json", action="store_true", help="print the result as JSON on stdout")

    comp = command("compile", "compile a pipeline for Kubeflow Pipelines")
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

    rep = command("replay", "send a span's rows (without the label) to a TF Serving REST endpoint")
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
                               description="join labels that arrived later to logged predictions",
                               epilog=epilog("logs join"), formatter_class=_Formatter)
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
    join.add_argument("--wait-for-log", type=float, default=0.0, metavar="SECONDS",
                      help="wait up to this long for the request log to settle (its newest row 10 s old: the server "
                           "writes every 5 s) before joining, e.g. right after a replay; 0: join it now")
    join.add_argument("--json", action="store_true", help="print the result as JSON on stdout")

    privacy = sub.add_parser("privacy", help="privacy measures of data", description="privacy measures of data",
                             formatter_class=_Formatter)
    privacy_sub = privacy.add_subparsers(dest="privacy_command", required=True, metavar="SUBCOMMAND")
    check = privacy_sub.add_parser("check", help="k-anonymity and l-diversity of data under the pipeline's privacy "
                                   "policy", description="k-anonymity and l-diversity of data under the pipeline's "
                                   "privacy policy (docs/privacy.md)", epilog=epilog("privacy check"),
                                   formatter_class=_Formatter)
    _pipeline_arg(check, optional=True)
    check.add_argument("--data", required=True, help="CSV/Parquet file, folder, or folder of span-N folders")
    check.add_argument("--policy", help="privacy policy (.json; default: the one beside the pipeline's schema)")
    check.add_argument("--report", help="folder for report.html and privacy.json")
    check.add_argument("--smallest", type=int, default=10, help="how many of the smallest classes to name")
    check.add_argument("--json", action="store_true", help="print the result as JSON on stdout")

    srv = command("serve", "serve a model's versions over TF Serving's REST API")
    srv.add_argument("--serving-dir", required=True, help="serving folder holding <model>/<version>/")
    srv.add_argument("--model", default="taxi", help="model name: the folder under --serving-dir and the URL's name")
    srv.add_argument("--host", default="127.0.0.1", help="address to listen on")
    srv.add_argument("--port", type=int, default=8501, help="port (TF Serving's REST port by default)")
    srv.add_argument("--log-dir", help="write sampled requests and predictions here as Parquet spans")
    srv.add_argument("--log-sample", type=float, default=1.0, help="share of requests logged, in (0, 1]")
    srv.add_argument("--log-max-pending-mb", type=float, default=LOG_MAX_PENDING_MB,
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

    stat = command("status", "what serves now: versions with their rollout roles, metrics, reports, the rollout")
    stat.add_argument("--serving-dir", required=True, help="serving folder holding <model>/<version>/")
    stat.add_argument("--model", default="taxi", help="model name: the folder under --serving-dir")
    stat.add_argument("--url", help="a running server's model URL, e.g. http://127.0.0.1:8501/v1/models/taxi, for "
                                    "its own model status")
    stat.add_argument("--json", action="store_true", help="print the result as JSON on stdout")

    pred = command("predict", "score a span with the served model through Beam (batch inference)")
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
    pred.add_argument("--beam-pipeline-args", type=beam_options, default=(),
                      help="Beam options after the engine's, e.g. another runner: '--runner=flywheel.dask_runner."
                           "DaskRunner --dask_client_address=host:8786' (docs/distributed.md)")
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
        parser = commands.add_parser(name, help=help_text, description=help_text, epilog=epilog("rollout"),
                                     formatter_class=_Formatter)
        parser.add_argument("--serving-dir", required=True, help="serving folder holding <model>/<version>/")
        parser.add_argument("--model", default="taxi", help="model name: the folder under --serving-dir")
        return parser

    def recorded(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--reason", default="", help="why, recorded with the decision")
        parser.add_argument("--metadata", help=METADATA_HELP + ", to record the decision in (default: not recorded)")
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
    analyze.add_argument("--metadata", help=METADATA_HELP + ", to record the decision in (default: not recorded)")
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
