"""`flywheel run | compile | simulate | lineage`: arguments -> `flywheel.api.pipeline` -> text and exit status."""

from __future__ import annotations

from typing import Any

from flywheel.api.errors import CompileError
from flywheel.api.pipeline import (
    FAILED,
    FINISHED,
    STOPPED,
    UP_TO_DATE,
    CompileResult,
    LineageResult,
    RunResult,
    SimulateResult,
    compile_pipeline,
    lineage,
    pipeline_config,
    run_pipeline,
    simulate,
)
from flywheel.cli import exits
from flywheel.cli.text import err, listing, progress, show
from flywheel.metadata.lineage import render

RUN_EXIT = {FINISHED: exits.OK, UP_TO_DATE: exits.OK, STOPPED: exits.STOPPED, FAILED: exits.FAILED}


def run_lines(result: RunResult) -> list[str]:
    """The readable summary: a header, then data, gate, evaluation, push, serving, metadata."""
    if result.status == UP_TO_DATE:
        fingerprint = (result.data or {}).get("data_fingerprint") or ""
        return [f"flywheel: nothing changed since the run of {result.finished_at} (same data {fingerprint[:12]}, "
                f"config, code and stack; serving unchanged): {result.serving_dir} version {result.serving_version}. "
                "Nothing to do."]
    header = {FINISHED: "finished", STOPPED: "STOPPED by the data validation gate", FAILED: "FAILED"}[result.status]
    lines = [f"flywheel: run {header} in {result.elapsed:.1f} s"]
    data = result.data
    if data:
        lines.append(f"  data: spans {listing(data.get('spans'))}, {data.get('rows_read') or 0:,} rows read, "
                     f"{data.get('rows_quarantined') or 0:,} quarantined"
                     + (f" ({data['quarantine']})" if data.get("quarantine") else ""))
    if result.gate_report:
        passed = result.status != STOPPED
        lines.append(f"  data gate: {'passed' if passed else 'STOPPED THE RUN'} — report {result.gate_report}")
    if result.evaluation_report:
        auc = f"{result.auc:.4f}" if result.auc is not None else "n/a"
        lines.append(f"  evaluation: AUC {auc}, {'blessed' if result.blessed else 'NOT blessed'} — report "
                     f"{result.evaluation_report}")
    if result.pushed is not None:
        lines.append(f"  push: pushed version {result.pushed_version} to {result.serving_path}" if result.pushed
                     else f"  push: not pushed ({result.push_reason})")
    lines.append(f"  serving: {result.serving_path or 'no model in serving'}")
    lines.append(f"  metadata: {result.metadata}")
    return lines


def report_run(run: RunResult) -> None:
    """On stderr: which component failed, or where the data gate's report is."""
    if run.status == FAILED:
        where = f" in {', '.join(run.failed_nodes)}" if run.failed_nodes else ""
        err(f"run failed{where}: {run.error or 'see the states above'}")
    elif run.status == STOPPED:
        err(f"the data validation gate stopped the run: see {run.gate_report}")


def lineage_lines(result: LineageResult) -> list[str]:
    return render(result.to_dict()).splitlines()


def compile_lines(result: CompileResult) -> list[str]:
    return [f"flywheel: compiled {result.pipeline} for Kubeflow Pipelines ({result.format}): {result.output}"]


def simulate_lines(result: SimulateResult) -> list[str]:
    return [f"flywheel simulate: {len(result.spans)} span(s) of {result.rows:,} rows in {result.out} "
            f"({listing(result.spans)})" + (f"; drift from span {result.drift_from}" if result.drift_from else
                                           "; no drift")]


def cmd_run(args: Any) -> int:
    cfg = pipeline_config(args.pipeline, args.output_dir, data=args.data, serving_dir=args.serving_dir,
                          metadata=args.metadata, engine=args.engine,
                          beam_pipeline_args=args.beam_pipeline_args,
                          train_steps=args.train_steps, span=args.span, num_spans=args.num_spans,
                          allowed_anomalies=tuple(args.allow_anomaly), warm_start=args.warm_start)
    result = run_pipeline(cfg, args.engine, progress=progress(args), verbose=args.verbose)
    show(args, result, run_lines)
    report_run(result)
    return RUN_EXIT[result.status]


def cmd_simulate(args: Any) -> int:
    show(args, simulate(args.pipeline, args.out, spans=args.spans, drift_from=args.drift_from, rows=args.rows,
                        seed=args.seed, files=args.files), simulate_lines)
    return exits.OK


def cmd_lineage(args: Any) -> int:
    show(args, lineage(args.pipeline, args.output_dir, serving_dir=args.serving_dir, model=args.model,
                       model_name=args.model_name, metadata=args.metadata), lineage_lines)
    return exits.OK


def cmd_compile(args: Any) -> int:
    try:
        result = compile_pipeline(args.pipeline, args.output, image=args.image, verbose=args.verbose,
                                  data_pvc=args.data_pvc, serving_pvc=args.serving_pvc)
    except CompileError as e:
        err(str(e))
        return exits.FAILED
    show(args, result, compile_lines)
    return exits.OK
