"""The `flywheel` command line: run | ingest | monitor | simulate | retrain | lineage | compile."""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import shlex
import sys
import time
from typing import Any, Optional

PIPELINES = ("taxi",)
EXIT_OK, EXIT_FAILED, EXIT_STOPPED, EXIT_USAGE, EXIT_LOCKED = 0, 1, 3, 2, 4


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flywheel", description="TFX pipelines from raw data to a served model.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a pipeline end to end")
    run.add_argument("pipeline", choices=PIPELINES)
    run.add_argument("--engine", choices=("local", "beam"), default="local")
    run.add_argument("--data", help="CSV/Parquet file, folder, or folder of span-N folders (default: taxi data in tfx)")
    run.add_argument("--output-dir", default="flywheel_output")
    run.add_argument("--train-steps", type=int)
    run.add_argument("--span", type=int, default=-1, help="last span to read (default: latest)")
    run.add_argument("--num-spans", type=int, default=1, help="rolling window: how many spans ending at --span")
    run.add_argument("--allow-anomaly", action="append", default=[],
                     help="anomaly the data gate lets through: TYPE, feature:TYPE or feature:* (repeatable)")
    run.add_argument("--warm-start", action="store_true", help="start training from the serving model's weights")
    run.add_argument("--beam-pipeline-args", default="", help="e.g. '--runner=FlinkRunner --flink_master=host:8081'")
    run.add_argument("--verbose", action="store_true")

    ingest = sub.add_parser("ingest", help="ingest CSV/Parquet into tf.Examples + quarantine, without a pipeline")
    ingest.add_argument("--data", required=True)
    ingest.add_argument("--span", type=int, default=-1)
    ingest.add_argument("--num-spans", type=int, default=1)
    ingest.add_argument("--schema", required=True)
    ingest.add_argument("--output-dir", required=True)
    ingest.add_argument("--quarantine-limit", type=float, default=0.01)
    ingest.add_argument("--split-key", default="", help="comma-separated columns to hash for the split")
    ingest.add_argument("--json", action="store_true")
    ingest.add_argument("--verbose", action="store_true")

    mon = sub.add_parser("monitor", help="drift between a baseline and current data (exit 0 none, 1 drift, 2 error)")
    mon.add_argument("--baseline", required=True, help="CSV/Parquet file or folder, or a saved profile (.json)")
    mon.add_argument("--current", required=True, help="CSV/Parquet file or folder, or a saved profile (.json)")
    mon.add_argument("--schema", help="TFDV schema: features to compare and drift_comparator thresholds")
    mon.add_argument("--report", help="folder for drift.json and report.html")
    mon.add_argument("--save-profile", help="also write the current data's profile here (.json)")
    mon.add_argument("--reference-metrics", help="JSON with the reference AUC: {\"auc\": x} or a push.json")
    mon.add_argument("--label-column", default="label", help="binary label column for performance decay")
    mon.add_argument("--json", action="store_true")

    sim = sub.add_parser("simulate", help="write labelled production spans with drift, resampled from the taxi data")
    sim.add_argument("pipeline", choices=PIPELINES)
    sim.add_argument("--out", required=True)
    sim.add_argument("--spans", type=int, default=4)
    sim.add_argument("--drift-from", type=int, default=None, help="first drifted span (default: no drift)")
    sim.add_argument("--rows", type=int, default=5000)
    sim.add_argument("--seed", type=int, default=0)

    ret = sub.add_parser("retrain", help="scheduled job: newest span -> monitor -> retrain/evaluate/push")
    ret.add_argument("pipeline", choices=PIPELINES)
    ret.add_argument("--data", required=True, help="folder of span-N folders")
    ret.add_argument("--output-dir", default="flywheel_output")
    ret.add_argument("--if-drift", action="store_true", help="retrain only when the monitor finds drift")
    ret.add_argument("--window", type=int, default=3, help="train on the last W spans")
    ret.add_argument("--train-steps", type=int)
    ret.add_argument("--verbose", action="store_true")

    lin = sub.add_parser("lineage", help="what produced the model in serving, from ML-Metadata")
    lin.add_argument("--output-dir", default="flywheel_output")
    lin.add_argument("--model", default="latest", help="latest or a version number")
    lin.add_argument("--model-name", default="taxi")
    lin.add_argument("--json", action="store_true")

    comp = sub.add_parser("compile", help="compile a pipeline for Kubeflow Pipelines")
    comp.add_argument("pipeline", choices=PIPELINES)
    comp.add_argument("--image", default=None)
    comp.add_argument("--output", default="kubeflow/taxi_pipeline.yaml",
                      help=".yaml: PipelineSpec for the KFP UI; .json: Vertex AI PipelineJob")
    comp.add_argument("--verbose", action="store_true")
    return parser


def _err(message: str) -> None:
    print(f"flywheel: {message}", file=sys.stderr)


# ---- run -------------------------------------------------------------------------------------------------------

def _taxi_config(args) -> Any:
    from flywheel.pipelines.taxi.config import Paths, TaxiConfig

    cfg = TaxiConfig(paths=Paths.under(args.output_dir, args.data), span=args.span, num_spans=args.num_spans,
                     allowed_anomalies=tuple(args.allow_anomaly), warm_start=args.warm_start)
    if args.train_steps is not None:
        cfg = dataclasses.replace(cfg, train_steps=args.train_steps)
    if args.engine == "beam":
        from flywheel.pipelines.taxi.beam_runner import with_beam_args

        cfg = with_beam_args(cfg, tuple(shlex.split(args.beam_pipeline_args)))
    elif args.beam_pipeline_args:
        cfg = dataclasses.replace(cfg, beam_pipeline_args=tuple(shlex.split(args.beam_pipeline_args)))
    return cfg


def summarize(records: dict, cfg) -> tuple[int, dict[str, Any], list[str]]:
    """Exit status, a JSON-able summary and the lines to print, from the run's ML-Metadata records."""
    lines: list[str] = []
    summary: dict[str, Any] = {"output_dir": cfg.paths.output_dir, "metadata": cfg.paths.metadata_path,
                               "pipeline_root": cfg.paths.pipeline_root, "states": {}}
    for node, rec in records.items():
        summary["states"][node] = rec.state
    failed = [n for n, r in records.items() if r.state == "FAILED"]
    gate = records.get("DataGate")
    verdict = gate.output("verdict") if gate else None
    ingest = records.get("Ingest")
    examples = ingest.output("examples") if ingest else None
    if examples:
        summary["data"] = {k: examples.get(k) for k in ("rows_read", "rows_written", "rows_quarantined",
                                                         "data_fingerprint", "spans")}
        lines.append(f"  data: spans {examples.get('spans')}, {examples.get('rows_read'):,} rows read, "
                     f"{examples.get('rows_quarantined')} quarantined ({examples['uri']})")
    if verdict:
        summary["gate_report"] = verdict.get("report")
        lines.append(f"  data gate: {'passed' if verdict.get('passed') else 'STOPPED THE RUN'} — report "
                     f"{verdict.get('report')}")
    evaluate = records.get("Evaluate")
    evaluation = evaluate.output("evaluation") if evaluate else None
    if evaluation:
        summary["evaluation_report"] = evaluation.get("report")
        blessing = evaluate.output("blessing") or {}
        summary["blessed"] = bool(blessing.get("blessed"))
        lines.append(f"  evaluation: AUC {evaluation.get('auc', float('nan')):.4f}, "
                     f"{'blessed' if blessing.get('blessed') else 'NOT blessed'} — report {evaluation.get('report')}")
    push = records.get("Push")
    pushed = push.output("pushed_model") if push else None
    if pushed:
        summary["pushed"] = bool(pushed.get("pushed"))
        summary["serving_path"] = pushed.get("pushed_destination")
        if pushed.get("pushed"):
            lines.append(f"  push: pushed version {pushed.get('pushed_version')} to {pushed.get('pushed_destination')}")
        else:
            lines.append(f"  push: not pushed ({pushed.get('reason')})")
    from flywheel.components.common import serving

    served = serving.latest(cfg.paths.serving_dir, cfg.model_name)
    summary["serving_version"] = served.version if served else None
    summary["serving_dir"] = os.path.join(cfg.paths.serving_dir, cfg.model_name)
    lines.append(f"  serving: {served.path if served else 'no model in serving'}")
    lines.append(f"  metadata: {cfg.paths.metadata_path}")
    if failed:
        return EXIT_FAILED, summary, lines
    if verdict and not verdict.get("passed"):
        return EXIT_STOPPED, summary, lines
    return EXIT_OK, summary, lines


def cmd_run(args) -> int:
    from flywheel.pipelines import quiet, stamp

    quiet.quiet_environment(args.verbose)
    from flywheel.components.ingest import inputs

    try:
        cfg = _taxi_config(args)
        resolved = inputs.resolve_input(cfg.paths.data_root, cfg.span, cfg.num_spans)
    except (ValueError, FileNotFoundError) as e:
        _err(str(e))
        return EXIT_USAGE
    run_stamp = stamp.compute(cfg.to_dict(), resolved.fingerprint, args.engine)
    previous = stamp.load(cfg.paths.output_dir)
    if stamp.still_valid(previous, run_stamp):
        s = previous["summary"]
        print(f"flywheel: nothing changed since the run of {s.get('finished_at')} (same data "
              f"{resolved.fingerprint[:12]}, config and code); serving: {s.get('serving_dir')} version "
              f"{s.get('serving_version')}. Nothing to do.")
        return EXIT_OK
    stamp.clear(cfg.paths.output_dir)
    os.makedirs(cfg.paths.output_dir, exist_ok=True)
    from flywheel.pipelines import lock

    try:
        with lock.exclusive(cfg.paths.output_dir):
            status, summary = _execute(cfg, args.engine, args.verbose, resolved)
    except lock.LockedError as e:
        _err(str(e))
        return EXIT_LOCKED
    summary.pop("records", None)
    if status == EXIT_OK:
        summary["finished_at"] = datetime.datetime.now().isoformat(timespec="seconds")
        must_exist = [cfg.paths.metadata_path] + ([summary["serving_dir"] + "/" + str(summary["serving_version"])]
                                                  if summary.get("serving_version") else [])
        stamp.save(cfg.paths.output_dir, run_stamp, summary, must_exist)
    return status


def _execute(cfg, engine: str, verbose: bool, resolved) -> tuple[int, dict[str, Any]]:
    """Runs the pipeline with progress lines; returns the exit status and the run's summary."""
    from flywheel.pipelines import quiet

    print(f"flywheel: running {cfg.pipeline_name} on the {engine} engine: spans {list(resolved.spans)}, "
          f"{len(resolved.files)} file(s), data {resolved.fingerprint[:12]}; output {cfg.paths.output_dir}", flush=True)
    started = time.monotonic()
    import tfx  # noqa: F401  (imported before install() so absl is configured)

    quiet.install(verbose)
    from flywheel.pipelines import run_record

    error: Optional[BaseException] = None
    try:
        if engine == "beam":
            from flywheel.pipelines.taxi import beam_runner

            beam_runner.run(cfg)
        else:
            from flywheel.pipelines.taxi import local_runner

            local_runner.run(cfg)
    except Exception as e:  # the runner re-raises a component's error: report it, with the run summary
        error = e
    records = run_record.latest_run(cfg.paths.metadata_path, cfg.pipeline_name)
    status, summary, lines = summarize(records, cfg)
    elapsed = time.monotonic() - started
    if error is not None:
        status = EXIT_FAILED
        failed = [n for n, r in records.items() if r.state == "FAILED"]
        _err(f"run failed{' in ' + ', '.join(failed) if failed else ''}: {type(error).__name__}: {error}")
    header = {EXIT_OK: "finished", EXIT_STOPPED: "STOPPED by the data validation gate", EXIT_FAILED: "FAILED"}[status]
    print(f"flywheel: run {header} in {elapsed:.1f} s")
    print("\n".join(lines))
    if status == EXIT_STOPPED:
        _err(f"the data validation gate stopped the run: see {summary.get('gate_report')}")
    summary["records"] = records
    return status, summary


# ---- simulate / retrain / lineage --------------------------------------------------------------------------------

def cmd_simulate(args) -> int:
    from flywheel.pipelines.taxi.config import shipped_data
    from flywheel.pipelines.taxi.simulate import SimulationConfig, simulate

    try:
        files = simulate(shipped_data(), args.out, SimulationConfig(args.spans, args.drift_from, args.rows, args.seed))
    except ValueError as e:
        _err(str(e))
        return EXIT_USAGE
    print(f"flywheel simulate: {len(files)} spans of {args.rows:,} rows in {args.out}"
          + (f"; drift from span {args.drift_from}" if args.drift_from else "; no drift"))
    return EXIT_OK


def cmd_retrain(args) -> int:
    from flywheel.pipelines import lock, quiet, retrain

    quiet.quiet_environment(args.verbose)
    from flywheel.pipelines.taxi.config import Paths, TaxiConfig

    paths = Paths.under(args.output_dir, args.data)
    os.makedirs(paths.output_dir, exist_ok=True)
    try:
        with lock.exclusive(paths.output_dir):
            try:
                from flywheel.pipelines.taxi.config import default_schema

                p = retrain.plan(args.data, paths.serving_dir, "taxi", args.window, default_schema())
            except (ValueError, OSError) as e:
                _err(str(e))
                return EXIT_USAGE
            if args.if_drift and p.drift["drift_detected"] is False:
                print(json.dumps({"span": p.span, "drift_detected": False, "retrained": False, "blessed": None,
                                  "pushed": False, "model_version": p.serving_version,
                                  "drift_reason": p.drift["reason"]}))
                return EXIT_OK
            cfg = TaxiConfig(paths=paths, span=p.span, num_spans=len(p.window), monitor_baseline=p.baseline_profile,
                             retrain_if_drift=args.if_drift)
            if args.train_steps is not None:
                cfg = dataclasses.replace(cfg, train_steps=args.train_steps)
            from flywheel.components.ingest import inputs

            resolved = inputs.resolve_input(args.data, p.span, len(p.window))
            status, summary = _execute(cfg, "local", args.verbose, resolved)
            result = retrain.summary_from_records(summary["records"], p.span, paths.serving_dir, "taxi")
    except lock.LockedError as e:
        _err(str(e))
        return EXIT_LOCKED
    print(json.dumps(result))
    return status


def cmd_lineage(args) -> int:
    from flywheel.pipelines import lineage

    out = os.path.abspath(args.output_dir)
    try:
        found = lineage.describe(os.path.join(out, "metadata.sqlite"), os.path.join(out, "serving"),
                                 args.model_name, args.model)
    except LookupError as e:
        _err(str(e))
        return EXIT_USAGE
    print(json.dumps(found, default=str) if args.json else lineage.render(found))
    return EXIT_OK


# ---- ingest ----------------------------------------------------------------------------------------------------

def cmd_ingest(args) -> int:
    from flywheel.pipelines import quiet

    quiet.quiet_environment(args.verbose)
    from flywheel.components.ingest import beam_ingest, inputs, parsing, run

    try:
        resolved = inputs.resolve_input(args.data, args.span, args.num_spans)
        columns = parsing.columns_from_schema(parsing.load_schema(args.schema))
        options = beam_ingest.IngestOptions(columns=tuple(columns),
                                            split_key_columns=tuple(c for c in args.split_key.split(",") if c),
                                            quarantine_limit=args.quarantine_limit)
    except (ValueError, OSError) as e:
        _err(str(e))
        return EXIT_USAGE
    quiet.install(args.verbose)
    out = os.path.abspath(args.output_dir)
    examples_uri, quarantine_uri = os.path.join(out, "examples"), os.path.join(out, "quarantine")
    try:
        counts = run.run_ingest(resolved, options, examples_uri, quarantine_uri, os.path.join(out, ".work"))
    except parsing.IngestError as e:
        _err(str(e))
        return EXIT_FAILED
    result = {
        "rows_read": counts.rows_read, "rows_written": counts.rows_written,
        "rows_quarantined": counts.rows_quarantined,
        "quarantine_path": os.path.join(quarantine_uri, "quarantine.jsonl"),
        "examples_path": examples_uri, "fingerprint": resolved.fingerprint,
        "span": max(resolved.spans), "spans": list(resolved.spans),
    }
    try:
        beam_ingest.check_quarantine_limit(counts, options.quarantine_limit, quarantine_uri, result["quarantine_path"])
        status = EXIT_OK
    except parsing.IngestError as e:
        _err(str(e))
        status = EXIT_FAILED
    if args.json:
        print(json.dumps(result))
    else:
        print(f"flywheel ingest: {counts.rows_read:,} rows read, written {counts.rows_written}, "
              f"{counts.rows_quarantined} quarantined ({result['quarantine_path']}); span {result['span']}, "
              f"fingerprint {resolved.fingerprint[:12]}; examples in {examples_uri}")
    return status


# ---- monitor ---------------------------------------------------------------------------------------------------

def cmd_monitor(args) -> int:
    from flywheel.components.monitor import monitor

    try:
        result = monitor.run_monitor(args.baseline, args.current, schema_path=args.schema, report_dir=args.report,
                                     save_profile=args.save_profile, reference_metrics=args.reference_metrics,
                                     label_column=args.label_column)
    except (ValueError, OSError) as e:
        _err(str(e))
        return EXIT_USAGE
    if "skipped" in result.get("performance", {}):
        _err(f"performance not computed: {result['performance']['skipped']}")
    if args.json:
        print(json.dumps(result))
    else:
        drifted = [name for name, f in result["features"].items() if f["drift"]]
        print(f"flywheel monitor: {'DRIFT in ' + ', '.join(drifted) if drifted else 'no drift'} "
              f"(baseline {result['rows']['baseline']:,} rows, current {result['rows']['current']:,} rows)"
              + (f"; report {os.path.join(args.report, 'report.html')}" if args.report else ""))
    return 1 if result["drift_detected"] else 0


# ---- compile ---------------------------------------------------------------------------------------------------

def cmd_compile(args) -> int:
    from flywheel.pipelines import quiet

    quiet.quiet_environment(args.verbose)
    from flywheel.pipelines.taxi import kubeflow_runner

    quiet.install(args.verbose)
    path = kubeflow_runner.compile_pipeline(args.output, image=args.image)
    print(f"flywheel: compiled {args.pipeline} for Kubeflow Pipelines: {path}")
    return EXIT_OK


def main(argv: Optional[list[str]] = None) -> int:
    args = _parser().parse_args(argv)
    handlers = {"run": cmd_run, "ingest": cmd_ingest, "monitor": cmd_monitor, "simulate": cmd_simulate,
                "retrain": cmd_retrain, "lineage": cmd_lineage, "compile": cmd_compile}
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
