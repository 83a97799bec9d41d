"""flywheel's library: run, retrain, ingest, monitor, lineage, compile and simulate, each returning a typed result.

The `flywheel` command line is a thin adapter over these functions; notebooks and tests call them
directly. Orchestration lives here: the up-to-date stamp, the output directory's lock, progress lines
(written to the stream the caller passes), and the summaries read back from ML-Metadata.

Errors: `UsageError` for a bad argument or input location, `registry.UnknownPipelineError` for an
unknown pipeline name, `lock.LockedError` when another process holds the output directory. A component
that fails, or a data gate that stops the run, is not an exception: it is the result's `status`.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import math
import os
import sys
import time
from typing import Any, Optional, TextIO

from flywheel import lock, quiet, storage
from flywheel.metadata import artifacts
from flywheel.pipelines import registry, stamp
from flywheel.store import layout

FINISHED, UP_TO_DATE, STOPPED, FAILED = "finished", "up_to_date", "stopped", "failed"
NO_DRIFT, NOTHING_NEW = "no_drift", "nothing_new"  # the retraining decision's "nothing to run" verdicts


class UsageError(ValueError):
    """A bad argument or input location; the message names it (no 'flywheel:' prefix)."""


class CompileError(RuntimeError):
    """The Kubeflow compiler failed on a pipeline; the message carries its error in one line."""


def _to_dict(result: Any) -> dict[str, Any]:
    return {f.name: getattr(result, f.name) for f in dataclasses.fields(result) if f.repr}


def folder_argument(path: Optional[str], what: str) -> None:
    """UsageError naming `what` (e.g. "--output-dir") when a folder to write into is a file."""

    if path and storage.filesystem(path).exists(path) and not storage.filesystem(path).isdir(path):
        raise UsageError(f"{what} {path}: expected a folder (new or existing), found a file")


def file_argument(path: Optional[str], what: str) -> None:
    """UsageError naming `what` when a file to write is a folder; its folder is made when missing."""

    if not path:
        return
    if storage.filesystem(path).isdir(path):
        raise UsageError(f"{what} {path}: expected a file to write, found a folder")
    parent = os.path.dirname(path)
    folder_argument(parent, f"{what}'s folder")
    if parent:
        storage.filesystem(parent).makedirs(parent)


def listing(values: Any) -> str:
    """A list of names or numbers that name things (spans, versions), or a string already rendered, as text:
    `1, 2, 3`; `none` when empty. No thousands separators: version 1796679337 is a name, not a count."""
    if isinstance(values, str):
        return values or "none"
    return ", ".join(str(v) for v in values or ()) or "none"


def counts(found: dict[str, Any], sep: str = " ") -> str:
    """A {name: count} mapping as text: `train 3,388, eval 1,612` (`200: 4,999` with sep ': '); `none` when empty."""
    return ", ".join(f"{name}{sep}{n:,}" if isinstance(n, int) and not isinstance(n, bool) else f"{name}{sep}{n}"
                     for name, n in found.items()) or "none"


# ---- run -----------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RunResult:
    """What a pipeline run did. status: finished | up_to_date (nothing changed, nothing run) | stopped (by
    the data validation gate) | failed (a component failed: `failed_nodes`, `error`)."""

    pipeline: str
    engine: str
    status: str
    output_dir: str
    metadata: str
    pipeline_root: str
    serving_dir: str
    serving_version: Optional[int] = None
    serving_path: Optional[str] = None
    data: Optional[dict[str, Any]] = None
    gate_report: Optional[str] = None
    evaluation_report: Optional[str] = None
    auc: Optional[float] = None
    blessed: Optional[bool] = None
    pushed: Optional[bool] = None
    pushed_version: Optional[int] = None
    push_reason: Optional[str] = None
    states: dict[str, str] = dataclasses.field(default_factory=dict)
    failed_nodes: tuple[str, ...] = ()
    error: Optional[str] = None
    elapsed: float = 0.0
    finished_at: Optional[str] = None
    records: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        out = _to_dict(self)
        out["failed_nodes"] = list(self.failed_nodes)
        return out

    def lines(self) -> list[str]:
        """The readable summary: a header, then data, gate, evaluation, push, serving, metadata."""
        if self.status == UP_TO_DATE:
            fingerprint = (self.data or {}).get("data_fingerprint") or ""
            return [f"flywheel: nothing changed since the run of {self.finished_at} (same data {fingerprint[:12]}, "
                    f"config, code and stack; serving unchanged): {self.serving_dir} version {self.serving_version}. "
                    "Nothing to do."]
        header = {FINISHED: "finished", STOPPED: "STOPPED by the data validation gate", FAILED: "FAILED"}[self.status]
        lines = [f"flywheel: run {header} in {self.elapsed:.1f} s"]
        if self.data:
            lines.append(f"  data: spans {listing(self.data.get('spans'))}, {self.data.get('rows_read') or 0:,} rows "
                         "read, "
                         f"{self.data.get('rows_quarantined') or 0:,} quarantined"
                         + (f" ({self.data['quarantine']})" if self.data.get("quarantine") else ""))
        if self.gate_report:
            passed = self.status != STOPPED
            lines.append(f"  data gate: {'passed' if passed else 'STOPPED THE RUN'} — report {self.gate_report}")
        if self.evaluation_report:
            auc = f"{self.auc:.4f}" if self.auc is not None else "n/a"
            lines.append(f"  evaluation: AUC {auc}, {'blessed' if self.blessed else 'NOT blessed'} — report "
                         f"{self.evaluation_report}")
        if self.pushed is not None:
            lines.append(f"  push: pushed version {self.pushed_version} to {self.serving_path}" if self.pushed
                         else f"  push: not pushed ({self.push_reason})")
        lines.append(f"  serving: {self.serving_path or 'no model in serving'}")
        lines.append(f"  metadata: {self.metadata}")
        return lines


def pipeline_config(pipeline: str, output_dir: str = "flywheel_output", *, data: Optional[str] = None,
                    serving_dir: Optional[str] = None, engine: str = "local", beam_pipeline_args: tuple[str, ...] = (),
                    **options: Any) -> Any:
    """The registered pipeline's typed config from generic options (train_steps, span, num_spans,
    allowed_anomalies, warm_start); engine 'beam' adds Beam args (defaults when none are given)."""
    entry = registry.get(pipeline)
    if engine not in entry.engines:
        raise UsageError(f"pipeline {pipeline!r}: unknown engine {engine!r}; engines: {', '.join(entry.engines)}")
    folder_argument(output_dir, "--output-dir")
    folder_argument(serving_dir, "--serving-dir")
    try:
        cfg = entry.make_config(paths=entry.make_paths(output_dir, data, serving_dir), **options)
    except (ValueError, FileNotFoundError) as e:
        raise UsageError(str(e)) from e
    if engine == "beam":
        return entry.with_beam_args(cfg, tuple(beam_pipeline_args))
    return dataclasses.replace(cfg, beam_pipeline_args=tuple(beam_pipeline_args)) if beam_pipeline_args else cfg


def _resolve_input(data_root: str, span: int, num_spans: int):
    from flywheel.data import inputs

    try:
        return inputs.resolve_input(data_root, span, num_spans)
    except (ValueError, OSError) as e:
        raise UsageError(str(e)) from e


def _serving_now(cfg) -> Optional[int]:

    served = layout.current(cfg.paths.serving_dir, cfg.model_name)
    return served.version if served else None


def run_pipeline(config: Any, engine: str = "local", *, progress: Optional[TextIO] = None,
                 verbose: bool = False) -> RunResult:
    """Runs the pipeline `config.pipeline_name` on `engine`, or answers up_to_date from the stamp.

    Holds the output directory's lock throughout (raises lock.LockedError at once when another process
    holds it). Progress lines go to `progress` (default stdout). TensorFlow is imported only when the
    pipeline really runs.
    """
    entry = registry.get(config.pipeline_name)
    runner = entry.runner(engine)
    quiet.quiet_environment(verbose)
    resolved = _resolve_input(config.paths.data_root, config.span, config.num_spans)
    output_dir = config.paths.output_dir
    os.makedirs(output_dir, exist_ok=True)
    with lock.exclusive(output_dir):
        run_stamp = stamp.compute(config.to_dict(), resolved.fingerprint, engine, _serving_now(config))
        previous = stamp.load(output_dir)
        if stamp.still_valid(previous, run_stamp):
            names = {f.name for f in dataclasses.fields(RunResult)}
            saved = {k: v for k, v in previous["summary"].items() if k in names}
            saved["failed_nodes"] = tuple(saved.get("failed_nodes", ()))
            return RunResult(**{**saved, "status": UP_TO_DATE, "engine": engine, "elapsed": 0.0})
        stamp.clear(output_dir)
        result = _execute(config, entry.name, engine, runner, resolved, progress, verbose)
        if result.status == FINISHED:
            stamp.save(output_dir, stamp.compute(config.to_dict(), resolved.fingerprint, engine, _serving_now(config)),
                       result.to_dict(), _must_exist(result))
    return result


def _must_exist(result: RunResult) -> list[str]:
    """The files a valid stamp needs: the metadata store, the serving version and every local artifact."""
    paths = [result.metadata] + ([result.serving_path] if result.serving_path else [])
    for record in result.records.values():
        for outputs in record.outputs.values():
            paths += [a["uri"] for a in outputs if a.get("uri") and "://" not in a["uri"]]
    return sorted(set(paths))


def _execute(cfg, pipeline: str, engine: str, runner, resolved, progress: Optional[TextIO], verbose: bool) -> RunResult:
    out = progress if progress is not None else sys.stdout
    out.write(f"flywheel: running {pipeline} on the {engine} engine: spans {listing(resolved.spans)}, "
              f"{len(resolved.files)} file(s), data {resolved.fingerprint[:12]}; output {cfg.paths.output_dir}\n")
    out.flush()
    started = time.monotonic()
    import tfx  # noqa: F401  (imported before install() so absl is configured)

    quiet.install(verbose, out)
    from flywheel.metadata import run_record

    error: Optional[BaseException] = None
    try:
        runner(cfg)
    except Exception as e:  # the runner re-raises a component's error: it is the result's status, with the summary
        error = e
    records = run_record.latest_run(cfg.paths.metadata_path, cfg.pipeline_name)
    fields = summarize(records, cfg)
    status = FAILED if error is not None or fields["failed_nodes"] else fields.pop("status")
    fields.pop("status", None)
    return RunResult(pipeline=pipeline, engine=engine, status=status, elapsed=round(time.monotonic() - started, 1),
                     error=f"{type(error).__name__}: {error}" if error is not None else None,
                     finished_at=datetime.datetime.now().isoformat(timespec="seconds"), records=records, **fields)


def summarize(records: dict, cfg) -> dict[str, Any]:
    """RunResult's fields (and a status: finished or stopped) from the run's ML-Metadata records."""
    from flywheel.components.data_gate import spec as gate_spec
    from flywheel.components.evaluate import spec as evaluate_spec
    from flywheel.components.ingest import spec as ingest_spec
    from flywheel.components.push import spec as push_spec

    fields: dict[str, Any] = {"output_dir": cfg.paths.output_dir, "metadata": cfg.paths.metadata_path,
                              "pipeline_root": cfg.paths.pipeline_root,
                              "serving_dir": os.path.join(cfg.paths.serving_dir, cfg.model_name),
                              "states": {node: rec.state for node, rec in records.items()},
                              "failed_nodes": tuple(n for n, r in records.items() if r.state == "FAILED"),
                              "status": FINISHED}
    ingest = records.get("Ingest")
    examples = ingest.output(ingest_spec.EXAMPLES_KEY) if ingest else None
    if examples:
        fields["data"] = {k: examples.get(k) for k in (ingest_spec.ROWS_READ, ingest_spec.ROWS_WRITTEN,
                                                        ingest_spec.ROWS_QUARANTINED, ingest_spec.FINGERPRINT,
                                                        ingest_spec.SPANS)}
        fields["data"]["uri"] = examples["uri"]
        quarantined = ingest.output(ingest_spec.QUARANTINE_KEY)
        if quarantined:
            fields["data"]["quarantine"] = os.path.join(quarantined["uri"], ingest_spec.QUARANTINE_FILE)
    gate = records.get("DataGate")
    verdict = gate.output(gate_spec.VERDICT_KEY) if gate else None
    if verdict:
        fields["gate_report"] = verdict.get(gate_spec.REPORT)
        if not verdict.get(gate_spec.PASSED):
            fields["status"] = STOPPED
    evaluate = records.get("Evaluate")
    evaluation = evaluate.output(evaluate_spec.EVALUATION_KEY) if evaluate else None
    if evaluation:
        fields["evaluation_report"] = evaluation.get(evaluate_spec.REPORT)
        fields["auc"] = evaluation.get(evaluate_spec.AUC)
        fields["blessed"] = bool((evaluate.output(evaluate_spec.BLESSING_KEY) or {}).get(evaluate_spec.BLESSED))
    push = records.get("Push")
    pushed = push.output(push_spec.PUSHED_MODEL_KEY) if push else None
    if pushed:
        fields["pushed"] = bool(pushed.get(artifacts.PUSHED))
        version = pushed.get(artifacts.PUSHED_VERSION)  # a string, as the stock Pusher stores it
        fields["pushed_version"] = int(version) if fields["pushed"] and version is not None else None
        fields["push_reason"] = pushed.get(artifacts.PUSH_REASON)

    served = layout.current(cfg.paths.serving_dir, cfg.model_name)
    fields["serving_version"] = served.version if served else None
    fields["serving_path"] = served.path if served else None
    return fields


# ---- retrain -------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RetrainResult:
    """One pass of the scheduled job. drift_detected is None when there was no baseline (nothing in
    serving, or a model without a training profile): not drift, and the job trains. retrained is true
    only when the Trainer executed in this run (not a cache hit). status: nothing_new (serving was trained
    on exactly this data; nothing run), no_drift (with if_drift; nothing run) or the pipeline run's status.
    decision: the decision in words. model_version: the version served by default after the job (the stable one
    while a rollout releases the new one); pushed_version: the version Push published in this run (None: none).
    release: how a pushed version was released (direct, canary:P, shadow, blue-green); rollout: the model's
    rollout state after the job, in words (None: it has none)."""

    pipeline: str
    span: int
    window: tuple[int, ...]
    drift_detected: Optional[bool]
    drift_reason: str
    drift_report: Optional[str]
    retrained: bool
    blessed: Optional[bool]
    pushed: bool
    model_version: Optional[int]
    previous_version: Optional[int]
    status: str
    decision: str = ""
    pushed_version: Optional[int] = None
    release: str = "direct"
    rollout: Optional[str] = None
    run: Optional[RunResult] = dataclasses.field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        out = _to_dict(self)
        out["window"] = list(self.window)
        return out

    def lines(self) -> list[str]:
        drift = {None: "no baseline", True: "DRIFT", False: "no drift"}[self.drift_detected]
        lines = [f"flywheel retrain {self.pipeline}: span {self.span}, window of spans {listing(self.window)}: {drift} "
                 f"({self.drift_reason})" + (f"; report {self.drift_report}" if self.drift_report else "")]
        if self.status == NOTHING_NEW:
            return [f"flywheel retrain {self.pipeline}: span {self.span}, window of spans {listing(self.window)}: "
                    f"{self.decision}", f"  nothing to do: serving keeps version {self.model_version}"]
        if self.status == NO_DRIFT:
            lines.append(f"  nothing to do: serving keeps version {self.model_version}")
            return lines
        pushed = f" (version {self.pushed_version})" if self.pushed_version is not None else ""
        lines.append(f"  retrained: {self.retrained}, blessed: {self.blessed}, pushed: {self.pushed}{pushed}; serving "
                     f"version {self.model_version} (before: {self.previous_version}); run {self.status}")
        if self.rollout:
            lines.append(f"  release {self.release}: {self.rollout}")
        return lines


DRIFT_DIR = "drift"  # <output_dir>/drift/span-<N>/: the retraining job's drift decisions (drift.json, report.html)


def retrain(pipeline: str, data: str, output_dir: str = "flywheel_output", *, serving_dir: Optional[str] = None,
            if_drift: bool = False, window: int = 3, train_steps: Optional[int] = None, release: str = "direct",
            progress: Optional[TextIO] = None, verbose: bool = False) -> RetrainResult:
    """The scheduled job: newest span of `data` -> the continuous-training decision -> (new data that drifted,
    no baseline, or new data without if_drift) the pipeline on the last `window` spans -> Evaluate against
    serving -> Push if blessed.

    The decision is `flywheel.retraining.plan`'s (the compiled Kubeflow pipeline's Decide task takes the
    same one), computed once before anything runs; the pipeline does not monitor again. Holds the output
    directory's lock throughout and invalidates `run`'s up-to-date stamp when it runs the pipeline.

    release: direct (the pushed version serves at once), or canary:P, shadow, blue-green: the pushed version
    becomes the candidate of a new rollout (`flywheel.rollout`), the version served now staying stable; the
    state is pinned before the pipeline runs (`retrain.prepare_release`), so Push never makes it served in
    between, and the decision is recorded in the run's ML-Metadata store.
    """
    from flywheel import retraining
    from flywheel.pipelines import retrain as job
    from flywheel.rollout import state as rollout_state

    entry = registry.get(pipeline)
    if window < 1:
        raise UsageError(f"retrain: window: expected >= 1 span, got {window}")
    try:
        rollout_state.parse_release(release)
    except rollout_state.RolloutError as e:
        raise UsageError(f"retrain: {e}") from e
    quiet.quiet_environment(verbose)
    base = pipeline_config(pipeline, output_dir, data=data, serving_dir=serving_dir,
                           **({"train_steps": train_steps} if train_steps is not None else {}))
    os.makedirs(base.paths.output_dir, exist_ok=True)
    with lock.exclusive(base.paths.output_dir):
        try:
            plan = retraining.plan(data, base.paths.serving_dir, base.model_name, window, entry.schema_path(),
                                   report_dir=os.path.join(base.paths.output_dir, DRIFT_DIR), if_drift=if_drift)
        except (ValueError, OSError) as e:
            raise UsageError(str(e)) from e
        drift = plan.drift_decision
        common = {"pipeline": pipeline, "span": plan.span, "window": tuple(plan.window),
                  "drift_detected": drift["drift_detected"], "drift_reason": drift["reason"],
                  "drift_report": drift["report"], "previous_version": plan.serving_version,
                  "decision": plan.reason}
        if not plan.retrain:
            return RetrainResult(**common, retrained=False, blessed=None, pushed=False,
                                 model_version=plan.serving_version, status=plan.verdict)
        try:
            pinned = job.prepare_release(base.paths.serving_dir, base.model_name, release)
        except (ValueError, OSError) as e:
            raise UsageError(str(e)) from e
        stamp.clear(base.paths.output_dir)
        cfg = dataclasses.replace(base, span=plan.span, num_spans=len(plan.window))
        resolved = _resolve_input(data, plan.span, len(plan.window))
        run = _execute(cfg, pipeline, "local", entry.runner("local"), resolved, progress, verbose)
        after = job.finish_release(base.paths.serving_dir, base.model_name, release,
                                   run.pushed_version if run.pushed else None, pinned,
                                   f"flywheel retrain: {plan.reason}", cfg.paths.metadata_path)
        summary = job.summary_from_records(run.records, plan.span, base.paths.serving_dir, base.model_name, drift)
    return RetrainResult(**{**common, **summary, "status": run.status, "run": run, "release": release,
                            "pushed_version": run.pushed_version if run.pushed else None,
                            "rollout": after.describe() if after is not None else None})


# ---- ingest, monitor -----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class IngestResult:
    """Rows read, written (per split) and quarantined; error is set when the quarantine limit was exceeded
    or a required column is missing (the counts are still those of the attempt)."""

    rows_read: int
    rows_written: dict[str, int]
    rows_quarantined: int
    quarantine_path: str
    examples_path: str
    fingerprint: str
    span: int
    spans: list[int]
    physical_rows: int = 0
    error: Optional[str] = None

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)

    def lines(self) -> list[str]:
        return [f"flywheel ingest: {self.physical_rows:,} physical rows, {self.rows_read:,} rows read, "
                f"written {sum(self.rows_written.values()):,} ({counts(self.rows_written)}), "
                f"{self.rows_quarantined:,} quarantined ({self.quarantine_path}); span {self.span}, "
                f"fingerprint {self.fingerprint[:12]}; examples in {self.examples_path}"]


def ingest(data: str, schema: str, output_dir: str, *, span: int = -1, num_spans: int = 1,
           quarantine_limit: float = 0.01, split_key: tuple[str, ...] = (), verbose: bool = False) -> IngestResult:
    """Ingests CSV/Parquet into gzip tf.Examples under <output_dir>/examples and a quarantine, without a pipeline."""
    quiet.quiet_environment(verbose)
    from flywheel.components.ingest import beam_ingest, quarantine, run
    from flywheel.data import parsing

    resolved = _resolve_input(data, span, num_spans)
    folder_argument(output_dir, "ingest: --output-dir")
    try:
        columns = parsing.columns_from_schema(parsing.load_schema(schema))
        options = beam_ingest.IngestOptions(columns=tuple(columns), split_key_columns=tuple(split_key),
                                            quarantine_limit=quarantine_limit)
    except (ValueError, OSError) as e:
        raise UsageError(str(e)) from e
    quiet.install(verbose, sys.stderr)
    out = os.path.abspath(output_dir)
    examples_uri, quarantine_uri = os.path.join(out, "examples"), os.path.join(out, "quarantine")
    kept_at = os.path.join(quarantine_uri, "quarantine.jsonl")
    common = {"quarantine_path": kept_at, "examples_path": examples_uri, "fingerprint": resolved.fingerprint,
              "span": max(resolved.spans), "spans": list(resolved.spans)}
    try:
        counts = run.run_ingest(resolved, options, examples_uri, quarantine_uri, os.path.join(out, ".work"))
    except parsing.IngestError as e:
        return IngestResult(rows_read=0, rows_written={}, rows_quarantined=0, error=str(e), **common)
    error = None
    try:
        quarantine.check_quarantine_limit(counts, options.quarantine_limit, quarantine_uri, kept_at)
    except parsing.IngestError as e:
        error = str(e)
    return IngestResult(rows_read=counts.rows_read, rows_written=dict(counts.rows_written),
                        rows_quarantined=counts.rows_quarantined, physical_rows=counts.physical_rows, error=error,
                        **common)


@dataclasses.dataclass(frozen=True)
class MonitorResult:
    """The drift monitor's verdict: per-feature checks with values and thresholds, row counts, and the
    report's path when one was written."""

    drift_detected: bool
    features: dict[str, Any]
    rows: dict[str, int]
    report: Optional[str]
    details: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {**self.details, "drift_detected": self.drift_detected, "features": self.features, "rows": self.rows,
                "report": self.report}

    @property
    def drifted(self) -> list[str]:
        return [name for name, f in self.features.items() if f.get("drift")]

    def lines(self) -> list[str]:
        out = [f"flywheel monitor: {'DRIFT in ' + ', '.join(self.drifted) if self.drifted else 'no drift'} "
               f"(baseline {self.rows.get('baseline', 0):,} rows, current {self.rows.get('current', 0):,} rows)"
               + (f"; report {self.report}" if self.report else "")]
        if self.details.get("baseline_from"):
            out.append(f"  baseline: {self.details['baseline_from']}")
        if self.details.get("schema_from"):
            out.append(f"  schema: {self.details['schema_from']}")
        for what, part in (("prediction drift", self.details.get("prediction")),
                           ("label drift", self.details.get("label_drift"))):
            if (part or {}).get("skipped"):
                out.append(f"  {what} not checked: {part['skipped']}")
        return out


def _served_baseline(baseline: str) -> tuple[str, str]:
    """A model's folder in serving (`<serving>/<model>`) stands for the training profile of the version it serves
    by default (the stable one of a rollout, else the newest): (that profile's path, where it came from). Any
    other path is returned as it is, with ""."""

    serving_dir, model = os.path.split(baseline.rstrip("/"))
    if not storage.filesystem(baseline).isdir(baseline) or not layout.versions(serving_dir, model):
        return baseline, ""
    try:
        served = layout.current(serving_dir, model)
    except layout.ManifestError as e:
        raise UsageError(f"monitor: --baseline {baseline}: {e}") from e
    name = served.manifest.get("baseline_profile") if served else None
    if not name:
        raise UsageError(f"monitor: --baseline {baseline}: expected the version it serves by default "
                         f"({served.version if served else 'none'}) to keep a training profile "
                         "(baseline_profile.json, named in its push.json), found none")
    path = os.path.join(served.path, name)
    return path, f"{path}, the training profile of version {served.version}, which {model} serves by default"


def _schema_beside(baseline: str) -> tuple[Optional[str], str]:
    """The schema of the pipeline that pushed a `baseline_profile.json` (the push.json beside it names the model,
    and a registered pipeline of that name has the schema), with where it came from; (None, "") otherwise."""

    folder = os.path.dirname(baseline)
    manifest_path = os.path.join(folder, layout.MANIFEST_FILE)
    if not baseline.lower().endswith(".json") or not storage.filesystem(manifest_path).exists(manifest_path):
        return None, ""
    try:
        name = layout.read_manifest(manifest_path).get("model_name")
        path = registry.get(name).schema_path() if isinstance(name, str) else None
    except (layout.ManifestError, registry.UnknownPipelineError):
        return None, ""
    if path is None:
        return None, ""
    return path, f"{path}, pipeline {name!r}'s (named by {manifest_path})"


def monitor(baseline: str, current: str, *, schema: Optional[str] = None, report_dir: Optional[str] = None,
            save_profile: Optional[str] = None, reference_metrics: Optional[str] = None,
            label_column: str = "label", reference_predictions: Optional[str] = None) -> MonitorResult:
    """Drift between two datasets (CSV/Parquet file or folder, or a saved profile .json); reference_predictions:
    data with a `prediction` column (a request-log span) that stands for the baseline's predictions. Without a
    schema, a model's own `baseline_profile.json` brings its pipeline's (see `_schema_beside`)."""
    from flywheel.monitoring import monitor as drift_monitor

    folder_argument(report_dir, "monitor: --report")
    file_argument(save_profile, "monitor: --save-profile")
    baseline, baseline_from = _served_baseline(baseline)
    schema_from = ""
    if not schema:
        schema, schema_from = _schema_beside(baseline)
    try:
        found = drift_monitor.run_monitor(baseline, current, schema_path=schema, report_dir=report_dir,
                                          save_profile=save_profile, reference_metrics=reference_metrics,
                                          label_column=label_column,
                                          reference_predictions=reference_predictions)
    except (ValueError, OSError) as e:
        raise UsageError(str(e)) from e
    details = {k: v for k, v in found.items() if k not in ("drift_detected", "features", "rows")}
    if schema_from:
        details["schema_from"] = schema_from
    if baseline_from:
        details["baseline_from"] = baseline_from
    return MonitorResult(drift_detected=bool(found["drift_detected"]), features=found["features"],
                         rows=found["rows"], report=os.path.join(report_dir, "report.html") if report_dir else None,
                         details=details)


# ---- lineage, compile, simulate ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LineageResult:
    """What produced a model in serving: its version, path, spans, data fingerprint, the steps, and the rollout
    decisions recorded for the model (oldest first)."""

    model_name: str
    version: int
    path: str
    pushed_at: Optional[str]
    spans: Any
    data_fingerprint: Optional[str]
    steps: list[dict[str, Any]]
    rollouts: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)

    def lines(self) -> list[str]:
        from flywheel.metadata import lineage as mlmd_lineage

        return mlmd_lineage.render(self.to_dict()).splitlines()


def lineage(pipeline: str, output_dir: str = "flywheel_output", *, serving_dir: Optional[str] = None,
            model: str = "latest", model_name: Optional[str] = None) -> LineageResult:
    """The lineage of a served model (`model`: latest or a version number) from the output directory's ML-Metadata."""
    from flywheel.metadata import lineage as mlmd_lineage

    cfg = pipeline_config(pipeline, output_dir, serving_dir=serving_dir)
    metadata = cfg.paths.metadata_path
    if not os.path.isfile(metadata):
        raise UsageError(f"lineage: no ML-Metadata store at {metadata} (is {cfg.paths.output_dir} the --output-dir "
                         "of a run?)")
    if model != "latest" and not model.isdigit():
        raise UsageError(f"lineage: --model: expected 'latest' or a version number, got {model!r}")
    try:
        found = mlmd_lineage.describe(metadata, cfg.paths.serving_dir, model_name or cfg.model_name, model)
    except (LookupError, OSError) as e:
        raise UsageError(str(e)) from e
    return LineageResult(**{f.name: found.get(f.name) for f in dataclasses.fields(LineageResult)})


COMPILE_FORMATS = {".yaml": "KFP PipelineSpec", ".yml": "KFP PipelineSpec", ".json": "Vertex AI PipelineJob"}


@dataclasses.dataclass(frozen=True)
class CompileResult:
    pipeline: str
    output: str
    format: str
    image: Optional[str]

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)

    def lines(self) -> list[str]:
        return [f"flywheel: compiled {self.pipeline} for Kubeflow Pipelines ({self.format}): {self.output}"]


def _writable_folder(output: str) -> None:
    """Fails in one line unless output's folder can be created and written (checked by writing there)."""
    import tempfile

    if os.path.isdir(output):
        raise UsageError(f"compile: --output {output} is a folder; expected a .yaml, .yml or .json file")
    folder = os.path.dirname(os.path.abspath(output))
    existing = folder
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise UsageError(f"compile: cannot write {output}: {existing} is a file, not a folder")
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".flywheel-compile-"):
            pass
    except OSError as e:
        raise UsageError(f"compile: cannot write {output}: {e.strerror or e}") from e


def compile_pipeline(pipeline: str, output: Optional[str] = None, *, image: Optional[str] = None,
                     verbose: bool = False, **options: Any) -> CompileResult:
    """Compiles the pipeline for Kubeflow Pipelines: .yaml/.yml a PipelineSpec, .json a Vertex AI PipelineJob;
    `image`, the container image the steps run in, is required (UsageError without it: none is published).

    options: the pipeline's compile options, e.g. taxi's `data_pvc` and `serving_pvc` (the PersistentVolumeClaims
    mounted at the data and serving folders); None values take the pipeline's defaults.
    """
    entry = registry.get(pipeline)
    output = output or entry.kubeflow_output
    suffix = os.path.splitext(output)[1].lower()
    if suffix not in COMPILE_FORMATS:
        raise UsageError(f"compile: --output {output}: expected a .yaml, .yml or .json file, got "
                         f"{suffix or 'no extension'!r}")
    _writable_folder(output)
    if not image:
        raise UsageError("compile: --image is required: the container image every step runs in, built from "
                         "kubeflow/Dockerfile (`docker build -f kubeflow/Dockerfile -t <registry>/flywheel-taxi:0.1.0 "
                         ".`) and pushed where the cluster pulls from; no image is published for you")
    quiet.quiet_environment(verbose)
    import tfx  # noqa: F401  (imported before install() so absl is configured)

    quiet.install(verbose, sys.stderr)
    try:
        path = entry.compile_pipeline(output, image, **{k: v for k, v in options.items() if v is not None})
    except OSError as e:
        raise UsageError(f"compile: cannot write {output}: {e.strerror or e}") from e
    except Exception as e:  # the KFP/TFX compiler's own error: one line naming it, not a traceback
        raise CompileError(f"compile: {pipeline} failed to compile: {type(e).__name__}: {e}") from e
    return CompileResult(pipeline, path, COMPILE_FORMATS[suffix], image)


@dataclasses.dataclass(frozen=True)
class SimulateResult:
    pipeline: str
    out: str
    files: list[str]
    rows: int
    drift_from: Optional[int]

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)

    @property
    def spans(self) -> list[str]:
        return [os.path.basename(os.path.dirname(f)) for f in self.files]

    def lines(self) -> list[str]:
        return [f"flywheel simulate: {len(self.files)} span(s) of {self.rows:,} rows in {self.out} "
                f"({listing(self.spans)})" + (f"; drift from span {self.drift_from}" if self.drift_from else
                                             "; no drift")]


def simulate(pipeline: str, out: str, *, spans: int = 4, drift_from: Optional[int] = None, rows: int = 5000,
             seed: int = 0) -> SimulateResult:
    """Writes `spans` new spans of labelled production data into `out`, after the span-N folders it already holds
    (span-1 .. span-N in a new folder), drifting from span number `drift_from` on; nothing is overwritten."""
    entry = registry.get(pipeline)
    try:
        files = entry.simulator()(out, spans, drift_from, rows, seed)
    except (ValueError, OSError) as e:
        raise UsageError(str(e)) from e
    return SimulateResult(pipeline, out, files, rows, drift_from)


# ---- request logs: replay, join ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ReplayResult:
    """A replay's counts: rows read, skipped (as Ingest would quarantine them, or lacking a model input) and
    sent; requests sent, ok (2xx), failed and by status (HTTP code, or the client's error name); the achieved
    rate (requests/s) and latency percentiles (ms)."""

    url: str
    features: list[str]
    rows_read: int
    rows_skipped: int
    rows_sent: int
    requests_sent: int
    ok: int
    failed: int
    by_status: dict[str, int]
    achieved_rate: float
    elapsed_s: float
    latency_ms: dict[str, float]
    first_skipped: list[str] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)

    def lines(self) -> list[str]:
        latency = ", ".join(f"{k} {v:.1f}" for k, v in self.latency_ms.items())
        return [f"flywheel replay: {self.requests_sent:,} requests ({self.rows_sent:,} rows) to {self.url} in "
                f"{self.elapsed_s:.1f} s, {self.achieved_rate:,.1f} requests/s: {self.ok:,} ok, {self.failed:,} "
                f"failed (by status {counts(self.by_status, ': ')}); latency ms {latency}; {self.rows_skipped:,} of "
                f"{self.rows_read:,} rows "
                "skipped" + (f" (first: {self.first_skipped[0]})" if self.first_skipped else "")]


def replay(pipeline: str, data: str, url: str, *, rate: Optional[float] = None, id_column: Optional[str] = None,
           batch: int = 1, concurrency: int = 8, features: Optional[tuple[str, ...]] = None,
           wait_s: float = 60.0) -> ReplayResult:
    """Sends the latest span of `data` (rows typed by the pipeline's schema, label left out) to a TF Serving REST
    endpoint (`url`, e.g. http://127.0.0.1:8501/v1/models/taxi) as `:predict` requests, waiting up to wait_s
    seconds for a server whose connections are still refused (one started a moment ago)."""
    from flywheel.traffic import replay as replay_mod

    entry = registry.get(pipeline)
    try:
        found = replay_mod.replay(data, url, entry.schema_path(), features=features, rate=rate, id_column=id_column,
                                  batch=batch, concurrency=concurrency, wait_s=wait_s)
    except (ValueError, OSError) as e:
        raise UsageError(str(e)) from e
    return ReplayResult(**{f.name: found[f.name] for f in dataclasses.fields(ReplayResult)})


@dataclasses.dataclass(frozen=True)
class JoinResult:
    """A join's counts (see flywheel.traffic.join): rows joined, unmatched logs and labels, duplicates, rows
    without key or label value, per span; the first unmatched keys."""

    output: str
    key: str
    log_key: str
    log_rows: int
    label_rows: int
    joined_rows: int
    unmatched_logs: int
    unmatched_labels: int
    duplicate_logs: int
    skipped_logs: int
    duplicate_labels: int
    conflicting_labels: int
    logs_without_key: int
    labels_without_key: int
    labels_without_value: int
    spans: dict[int, dict[str, Any]]
    first_unmatched_logs: list[str] = dataclasses.field(default_factory=list)
    first_unmatched_labels: list[str] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)

    def lines(self) -> list[str]:
        on = repr(self.key) if self.log_key == self.key else f"labels' {self.key!r} = log's {self.log_key!r}"
        return [f"flywheel logs join: {self.joined_rows:,} of {self.log_rows:,} logged rows joined by {on} "
                f"into {self.output} (spans {listing(sorted(s for s, v in self.spans.items() if v['joined']))}); "
                f"{self.skipped_logs:,} logged rows no client was answered with (failed, shadow) left out, "
                f"{self.unmatched_logs:,} logged rows without a label, {self.unmatched_labels:,} labels without a "
                f"logged row, duplicates: {self.duplicate_logs:,} logged, {self.duplicate_labels:,} labels "
                f"({self.conflicting_labels:,} conflicting)"]


def logs_join(logs: str, labels: str, key: str, output: str, *, pipeline: str = "taxi",
              label_column: Optional[str] = None, log_key: Optional[str] = None,
              span: Optional[int] = None) -> JoinResult:
    """Joins labels that arrived later to a request log by `key` (the labels' column; matched with the log's
    `log_key`, by default `key` when the log has it, else `request_id`) into `<output>/span-N/` (the log's spans) that
    Ingest, `flywheel retrain --data` and `flywheel monitor` read; nothing is written when the joined rows would
    lack a column the pipeline's schema requires."""
    from flywheel.data import parsing
    from flywheel.monitoring import drift
    from flywheel.traffic import join as join_mod

    entry = registry.get(pipeline)
    schema = entry.schema_path()
    labels_in_schema = drift.Policy.from_schema(schema).labels
    label = label_column or (labels_in_schema[0] if labels_in_schema else "label")
    required = [c.name for c in parsing.columns_from_schema(parsing.load_schema(schema)) if c.required]
    try:
        found = join_mod.join(logs, labels, key, output, label_column=label, required=required,
                              binary_label=entry.label_rule(), log_key=log_key, span=span)
    except (ValueError, OSError) as e:
        raise UsageError(str(e)) from e
    return JoinResult(output=output, key=key, **{f.name: found[f.name] for f in dataclasses.fields(JoinResult)
                                                  if f.name not in ("output", "key")})


# ---- serve ---------------------------------------------------------------------------------------------------


def serving_app(serving_dir: str, model: str = "taxi", *, max_batch_size: int = 512, batch_timeout_ms: float = 0.0,
                request_log: Any = None, poll_seconds: float = 1.0, rollout_key_header: str = "X-Rollout-Key",
                load_retries: Any = None):
    """The TF Serving-compatible ASGI app over `<serving_dir>/<model>/<version>/` (not started: its lifespan
    loads the latest version, or the versions of the model's rollout state, and polls for changes; see
    `flywheel/server/routing.py`). UsageError for a missing folder or a bad setting."""
    from flywheel.store import layout as serving_layout

    if not serving_layout.filesystem(serving_dir).isdir(serving_dir):
        raise UsageError(f"serve: --serving-dir {serving_dir} is not a folder")
    if max_batch_size < 1:
        raise UsageError(f"serve: --max-batch-size must be at least 1, got {max_batch_size}")
    if batch_timeout_ms < 0:
        raise UsageError(f"serve: --batch-timeout-ms must be >= 0, got {batch_timeout_ms}")
    from flywheel.server import models, server

    registry_ = models.ModelRegistry(serving_dir, model, poll_seconds=poll_seconds,
                                     load_retries=load_retries or models.LoadRetries())
    return server.create_app(registry_, max_batch_size=max_batch_size, batch_timeout_ms=batch_timeout_ms,
                             request_log=request_log, rollout_key_header=rollout_key_header)


def signature_inputs(version_path: str, signature: str = "serving_default") -> dict[str, str]:
    """{input name: dtype name} of a SavedModel's signature, read from saved_model.pb without loading it."""
    import tensorflow as tf

    from flywheel.store import layout as serving_layout

    graphs = [g for g in serving_layout.read_saved_model(version_path).meta_graphs if "serve" in g.meta_info_def.tags]
    signatures = graphs[0].signature_def if graphs else {}
    if signature not in signatures:
        raise UsageError(f"serve: {version_path} has no signature {signature!r}; it has {sorted(signatures)}")
    return {name: tf.dtypes.as_dtype(spec.dtype).name for name, spec in signatures[signature].inputs.items()}


def _request_log(serving_dir: str, model: str, log_dir: str, log_sample: float, log_max_pending_mb: float):
    """The request logger for `serve --log-dir`: one column per raw input of the latest version's default
    signature, typed from it (without a version yet, the first logged row's values type the columns); at most
    `log_max_pending_mb` megabytes of requests wait to be written."""
    from flywheel.server import request_log
    from flywheel.store import layout as serving_layout

    served = serving_layout.current(serving_dir, model)
    features = signature_inputs(served.path) if served is not None else None
    try:
        return request_log.RequestLog(log_dir, sample=log_sample, features=features,
                                      max_pending_bytes=int(log_max_pending_mb * 2**20))
    except ValueError as e:
        raise UsageError(f"serve: --log-dir {log_dir}: {e}") from e


# `serve --log-dir`: megabytes of requests waiting to be written at most (request_log.DEFAULT_MAX_PENDING_BYTES, which
# api does not import: it pulls pyarrow in).
LOG_MAX_PENDING_MB = 256


def serve(serving_dir: str, model: str = "taxi", host: str = "127.0.0.1", port: int = 8501,
          max_batch_size: int = 512, batch_timeout_ms: float = 0.0, log_dir: Optional[str] = None,
          log_sample: float = 1.0, *, request_log: Any = None, rollout_key_header: str = "X-Rollout-Key",
          limits: Any = None, log_max_pending_mb: float = LOG_MAX_PENDING_MB,
          verbose: bool = False, events: Optional[TextIO] = None, load_retries: Any = None) -> None:
    """Serves the model's versions over TF Serving's REST API with uvicorn until SIGINT/SIGTERM.

    log_dir: a sampled share (log_sample) of requests is written there as Parquet under span-N/ folders
    (`flywheel.server.request_log.RequestLog`, columns typed from the served model's raw-feature signature);
    it is closed, everything written, when the server stops. request_log: any object with
    `.log(request_id, model, version, signature, rows, predictions, latency_ms, *, role, status, error)` instead.
    With a rollout state (`flywheel rollout start`), the server follows it without a restart; a request's
    `rollout_key_header` value keeps it on one version during a canary. events: where a line goes per event (each
    version loaded or unloaded, each rollout change, `ready` once it answers, `stopped`; see
    `flywheel.server.console`); none when None. verbose: TensorFlow's own logs too. limits: the connections' limits
    (`flywheel.server.connections.ConnectionLimits`, its defaults when None). log_max_pending_mb: the most
    megabytes of requests (their bodies' length) the log holds until they are written; beyond, a request is not
    logged and counted in `dropped_rows`. load_retries: how a version that failed to load is tried again
    (`flywheel.server.models.LoadRetries`, TF Serving's 5 retries a minute apart when None).
    """
    if not 0.0 < log_sample <= 1.0:
        raise UsageError(f"serve: --log-sample must be in (0, 1], got {log_sample}")
    if not (math.isfinite(log_max_pending_mb) and log_max_pending_mb * 2**20 >= 1):
        raise UsageError(f"serve: --log-max-pending-mb must be a number above 0, got {log_max_pending_mb}")
    from flywheel.server import console
    from flywheel.store import layout as serving_layout

    if not serving_layout.filesystem(serving_dir).isdir(serving_dir):
        raise UsageError(f"serve: --serving-dir {serving_dir} is not a folder")
    folder_argument(log_dir, "serve: --log-dir")
    try:
        listener = console.bind(host, port)
    except console.ListenError as e:
        raise UsageError(str(e)) from None
    quiet.quiet_environment(verbose)
    undo = console.show_events(lambda: events, verbose) if events is not None else (lambda: None)
    try:
        _serve_on(listener, serving_dir, model, host, port, max_batch_size, batch_timeout_ms, log_dir, log_sample,
                  request_log, rollout_key_header, limits, events, verbose, log_max_pending_mb,
                  load_retries=load_retries)
    finally:
        undo()
        listener.close()


def _serve_on(listener: Any, serving_dir: str, model: str, host: str, port: int, max_batch_size: int,
              batch_timeout_ms: float, log_dir: Optional[str], log_sample: float, request_log: Any,
              rollout_key_header: str, limits: Any, events: Optional[TextIO], verbose: bool,
              log_max_pending_mb: float, *, load_retries: Any = None) -> None:
    """`serve` once the address is bound: the app, uvicorn on the bound socket, the ready and stopped lines."""
    import signal

    import uvicorn

    from flywheel.server import console

    quiet.install(verbose, sys.stderr)  # TensorFlow's Python logger (deprecations at load) at ERROR unless verbose
    if log_dir is not None and request_log is None:
        request_log = _request_log(serving_dir, model, log_dir, log_sample, log_max_pending_mb)
    from flywheel.server.connections import ConnectionLimits

    app = serving_app(serving_dir, model, max_batch_size=max_batch_size, batch_timeout_ms=batch_timeout_ms,
                      request_log=request_log, rollout_key_header=rollout_key_header, load_retries=load_retries)

    def stopped(signum, frame):
        raise SystemExit(0)

    # uvicorn shuts down gracefully on SIGINT/SIGTERM (requests in flight finish, the app's shutdown runs),
    # then re-raises the signal to the handler it found: this one, so the process ends with status 0.
    previous = {sig: signal.signal(sig, stopped) for sig in (signal.SIGINT, signal.SIGTERM)}

    def say(line: str) -> None:
        if events is not None:
            print(f"flywheel: serve: {line}", file=events, flush=True)

    def ready() -> None:
        versions = ", ".join(str(v) for v in app.state.registry.loaded_versions()) or "none yet"
        bound = listener.getsockname()[1]  # the port asked for, or the one the system chose for --port 0
        say(f"ready: {model} from {serving_dir} on http://{host}:{bound}/v1/models/{model} (versions loaded: "
            f"{versions})")

    config = uvicorn.Config(app, log_level="warning", access_log=False,
                            **(limits or ConnectionLimits()).uvicorn_options())
    server = console.Server(config, ready)
    try:
        server.run(sockets=[listener])
    except SystemExit as e:
        if e.code not in (0, None):
            raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    said_log = _log_outcome(request_log, log_dir) if log_dir else ""
    say(f"stopped ({server.stop_signal or 'the server exited'}){said_log}")


def _log_outcome(request_log: Any, log_dir: str) -> str:
    """The request log's account at the server's stop: where it is, and the rows it could not keep, if any."""
    counts = request_log.counters() if hasattr(request_log, "counters") else {}
    lost = [f"{counts[key]:,} {words}" for key, words in (("dropped_rows", "rows dropped"),
                                                          ("write_errors", "failed writes")) if counts.get(key)]
    return f"; request log written to {log_dir}" + (f" ({', '.join(lost)})" if lost else "")


# ---- predict -------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PredictResult:
    """A batch inference: which model version scored which rows, where the predictions and the quarantine
    are, and the counts (rows_in == rows_scored + rows_quarantined, checked per file). error is set when a
    file was refused or rows did not add up (the counts are then those known before the failure: zero)."""

    pipeline: str
    engine: str
    model_name: str
    model_version: int
    model_path: str
    signature: str
    spans: list[int]
    files: int
    output: str
    predictions: str
    quarantine_path: str
    counts_path: str
    id_column: Optional[str] = None
    rows_in: int = 0
    rows_scored: int = 0
    rows_quarantined: int = 0
    physical_rows: int = 0
    elapsed: float = 0.0
    error: Optional[str] = None

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)

    def lines(self) -> list[str]:
        return [f"flywheel predict: {self.rows_in:,} rows in, {self.rows_scored:,} scored, {self.rows_quarantined:,} "
                f"quarantined ({self.quarantine_path}); model {self.model_name} version {self.model_version} "
                f"(signature {self.signature}); spans {listing(self.spans)}, {self.files} file(s), "
                f"{self.elapsed:.1f} s",
                f"  predictions: {self.predictions}/part-*.parquet (source_file and source_line key each row"
                + (f"; {self.id_column} carried" if self.id_column else "") + ")",
                f"  counts: {self.counts_path}"]


def _data_error(error: BaseException) -> Optional[str]:
    """The one-line message of a data error raised inside the Beam pipeline (a worker process sends it back
    inside a traceback's text), or None when the error is not one of ours."""
    text = str(error)
    for marker in ("PredictError: ", "IngestError: "):
        if marker in text:
            text = text[text.rindex(marker) + len(marker):]
            break
    else:
        from flywheel.batch.model_version import PredictError
        from flywheel.data.parsing import IngestError

        if not isinstance(error, (PredictError, IngestError)):
            return None
    return text.splitlines()[0].split(" [while running")[0].strip()


def predict(pipeline: str, data: str, serving_dir: str, output: str, span: Optional[int] = None,
            version: Optional[int] = None, engine: str = "local", *, batch_size: int = 1024,
            progress_every: int = 0, verbose: bool = False, id_column: Optional[str] = None) -> PredictResult:
    """Scores a span (`data`: file, folder or folder of span-N folders; latest span unless `span`) with the
    served model (the version serving now unless `version`: the rollout's stable one, else the latest) through
    Beam: Parquet under `output`/predictions/ with `source_file` and `source_line` (where each row was read),
    the input columns (and `id_column`, required in every row, when given), `prediction` and `model_version`;
    bad rows in `output`/quarantine.jsonl; counts.json.

    `progress_every` > 0: a progress line on stderr every that many rows of a file, and per file and stage.
    UsageError for bad arguments (engine, data location, unknown model or version, a non-empty output)."""
    entry = registry.get(pipeline)
    quiet.quiet_environment(verbose)
    from flywheel.batch import model_version, rows
    from flywheel.batch import predict as batch_predict
    from flywheel.data import parsing

    try:
        args = batch_predict.beam_args(engine)
    except ValueError as e:
        raise UsageError(str(e)) from e
    if batch_size < 1:
        raise UsageError(f"predict: batch_size: expected >= 1, got {batch_size}")
    resolved = _resolve_input(data, -1 if span is None else span, 1)
    out = output if "://" in output else os.path.abspath(output)
    model_name = entry.make_config(paths=entry.make_paths(out, data, serving_dir)).model_name
    try:
        model = model_version.resolve(serving_dir, model_name, version, apart=engine == "beam")
        columns = rows.with_id_column(rows.serving_columns(parsing.load_schema(entry.schema_path())), id_column)
        batch_predict.check_output(out)
    except (ValueError, OSError) as e:
        raise UsageError(str(e)) from e
    if engine == "local":  # quiet.install imports TensorFlow; the beam engine's launcher never does
        quiet.install(verbose, sys.stderr)
    elif not verbose:  # the workers' log records, relayed by the runner
        logging.getLogger("apache_beam").setLevel(logging.ERROR)
    options = batch_predict.PredictOptions(columns=columns, model=model, batch_size=batch_size,
                                           progress_every=progress_every)
    common = {"pipeline": pipeline, "engine": engine, "model_name": model.name, "model_version": model.version,
              "model_path": model.path, "signature": model.signature, "spans": list(resolved.spans),
              "files": len(resolved.files), "output": out, "id_column": id_column,
              "predictions": os.path.join(out, batch_predict.PREDICTIONS_DIR),
              "quarantine_path": os.path.join(out, batch_predict.QUARANTINE_FILE),
              "counts_path": os.path.join(out, batch_predict.COUNTS_FILE)}
    started = time.monotonic()
    try:
        counts = batch_predict.run(resolved.files, options, out, args)
    except Exception as e:  # a data error comes back from a Beam worker wrapped: reported in one line, else raised
        message = _data_error(e)
        if message is None:
            raise
        return PredictResult(**common, elapsed=round(time.monotonic() - started, 1), error=message)
    return PredictResult(**common, rows_in=counts[batch_predict.READ], rows_scored=counts[batch_predict.SCORED],
                         rows_quarantined=counts[batch_predict.QUARANTINED],
                         physical_rows=counts[batch_predict.PHYSICAL], elapsed=round(time.monotonic() - started, 1))


# ---- rollout -------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RolloutResult:
    """A rollout command's outcome: the state after it (rollout.json's content; None when the model has none),
    what a server must do (`routes`), the version served by default, the TF Serving mirror, and where the
    decision was recorded in ML-Metadata (metadata None: not recorded, state and models.config only)."""

    action: str
    model: str
    serving_dir: str
    serving_version: Optional[int]
    state: Optional[dict[str, Any]] = None
    routes: Optional[dict[str, Any]] = None
    models_config: Optional[str] = None
    metadata: Optional[str] = None
    execution_id: Optional[int] = None
    pushed_model_id: Optional[int] = None

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)

    def lines(self) -> list[str]:
        head = f"flywheel rollout {self.action}: {self.model} in {self.serving_dir}"
        if self.state is None:
            served = f"version {self.serving_version}" if self.serving_version is not None else "nothing"
            return [f"{head}: no rollout state; the newest version serves: {served}"]
        from flywheel.rollout import state as rollout_state

        found = rollout_state.RolloutState.from_dict(self.state)
        lines = [f"{head}: {found.describe()} (generation {found.generation})",
                 f"  served by default: version {self.serving_version}"
                 + (f"; rolled back: {listing(found.rolled_back)}" if found.rolled_back else "")]
        for decision in found.decisions[-5:]:
            lines.append(f"  {decision.time}  {decision.action:<8} version {decision.version}"
                         + (f": {decision.reason}" if decision.reason else ""))
        if self.models_config:
            lines.append(f"  TF Serving config: {self.models_config}")
        if self.action != "status":
            lines.append(f"  ML-Metadata: execution {self.execution_id} in {self.metadata}"
                         + (f", linked to PushedModel {self.pushed_model_id}" if self.pushed_model_id else "")
                         if self.metadata else "  ML-Metadata: not recorded (no --metadata): state and models.config "
                                               "only")
        return lines


def _serving_folder(serving_dir: str, command: str) -> None:
    from flywheel.store import layout as serving_layout

    if not serving_layout.filesystem(serving_dir).isdir(serving_dir):
        raise UsageError(f"rollout {command}: --serving-dir {serving_dir} is not a folder")


def _rollout_result(action: str, serving_dir: str, model: str, metadata: Optional[str] = None,
                    recorded: tuple[Optional[int], Optional[int]] = (None, None)) -> RolloutResult:
    from flywheel.rollout import manifests
    from flywheel.rollout import state as rollout_state
    from flywheel.store import layout as serving_layout

    try:
        found = rollout_state.load(serving_dir, model)
        served = serving_layout.current(serving_dir, model)
    except ValueError as e:
        raise UsageError(str(e)) from e
    config = os.path.join(serving_dir, manifests.CONFIG_FILE)
    return RolloutResult(action=action, model=model, serving_dir=serving_dir,
                         serving_version=served.version if served else None,
                         state=found.to_dict() if found else None,
                         routes=rollout_state.routes(found).to_dict() if found else None,
                         models_config=config if found and serving_layout.filesystem(config).exists(config) else None,
                         metadata=metadata if recorded[0] is not None else None, execution_id=recorded[0],
                         pushed_model_id=recorded[1])


def _rollout_change(action: str, serving_dir: str, model: str, metadata: Optional[str], change) -> RolloutResult:
    from flywheel.rollout import mlmd
    from flywheel.rollout import state as rollout_state

    _serving_folder(serving_dir, action)
    if metadata is not None and not os.path.isfile(metadata):
        raise UsageError(f"rollout {action}: --metadata {metadata}: expected the ML-Metadata store of a pipeline "
                         "run (metadata.sqlite), found no file")
    try:
        after = change()
        recorded = mlmd.record(metadata, after, after.decisions[-1]) if metadata else (None, None)
    except rollout_state.RolloutError as e:
        raise UsageError(str(e)) from e
    return _rollout_result(action, serving_dir, model, metadata, recorded)


def rollout_start(serving_dir: str, model: str = "taxi", *, version: int, mode: str, percent: Optional[float] = None,
                  reason: str = "", metadata: Optional[str] = None) -> RolloutResult:
    """Starts rolling out `version` (canary with `percent`, shadow or blue_green) against the stable version
    (`flywheel.rollout.state.start`); with `metadata`, the decision is also recorded in that ML-Metadata store."""
    from flywheel.rollout import state as rollout_state

    return _rollout_change("start", serving_dir, model, metadata, lambda: rollout_state.start(
        serving_dir, model, version, mode, percent, reason))


def rollout_promote(serving_dir: str, model: str = "taxi", *, reason: str = "",
                    metadata: Optional[str] = None) -> RolloutResult:
    """The running rollout's candidate becomes stable."""
    from flywheel.rollout import state as rollout_state

    return _rollout_change("promote", serving_dir, model, metadata,
                           lambda: rollout_state.promote(serving_dir, model, reason))


def rollout_rollback(serving_dir: str, model: str = "taxi", *, reason: str = "",
                     metadata: Optional[str] = None) -> RolloutResult:
    """The running rollout's candidate stops taking traffic and is never served by default again."""
    from flywheel.rollout import state as rollout_state

    return _rollout_change("rollback", serving_dir, model, metadata,
                           lambda: rollout_state.rollback(serving_dir, model, reason))


def rollout_status(serving_dir: str, model: str = "taxi") -> RolloutResult:
    """The model's rollout state and the version served by default (nothing is written)."""
    _serving_folder(serving_dir, "status")
    return _rollout_result("status", serving_dir, model)


@dataclasses.dataclass(frozen=True)
class StatusResult:
    """What serves now (`flywheel status`): the versions in the serving folder, oldest first, each with its role
    (stable, canary, ..., rolled back) and what its push.json recorded (pushed_at, auc, spans, blessed,
    evaluation_report, baseline_profile); the version served by default; the rollout (None: none); and, with a
    URL, the running server's own model status (`server`: versions and states, or `error`)."""

    model: str
    serving_dir: str
    serving_version: Optional[int]
    versions: list[dict[str, Any]]
    rollout: Optional[dict[str, Any]] = None
    server: Optional[dict[str, Any]] = None

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)

    def lines(self) -> list[str]:
        served = f"version {self.serving_version} serves by default" if self.serving_version is not None else \
            "no complete version: nothing serves"
        out = [f"flywheel status: {self.model} in {self.serving_dir}: {served}; "
               f"{self.rollout['state'] if self.rollout else 'no rollout state'}"]
        for v in self.versions:
            out.append(f"  version {v['version']}" + (f" ({v['role']})" if v["role"] else ""))
            if "manifest" in v:
                out.append(f"    {v['manifest']}")
                continue
            auc = f"AUC {v['auc']:.4f}" if isinstance(v.get("auc"), (int, float)) else "AUC not recorded"
            spans = f"spans {listing(v['spans'])}" if v.get("spans") is not None else "spans not recorded"
            out.append(f"    pushed {v.get('pushed_at') or 'at an unrecorded time'}, {auc}, trained on {spans}")
            out.append(f"    evaluation report: {v.get('evaluation_report') or 'none recorded (or no longer there)'}")
            out.append(f"    baseline profile: {v.get('baseline_profile') or 'none'}")
        if self.rollout and self.rollout.get("last_decision"):
            d = self.rollout["last_decision"]
            out.append(f"  last rollout decision: {d['action']} version {d['version']} at {d['time']}"
                       + (f": {d['reason']}" if d.get("reason") else ""))
        if self.server:
            if "error" in self.server:
                out.append(f"  server {self.server['url']}: {self.server['error']}")
            else:
                states = "; ".join(f"version {v['version']} {v['state']}" + (f" ({v['error']})" if v["error"] else "")
                                   for v in self.server["versions"])
                out.append(f"  server {self.server['url']}: {states or 'no versions'}")
        return out


def status(serving_dir: str, model: str = "taxi", *, url: Optional[str] = None) -> StatusResult:
    """What serves now: versions with their roles and push records, the rollout and, with `url` (a model URL,
    e.g. http://127.0.0.1:8501/v1/models/taxi), the running server's model status. Nothing is written."""
    from flywheel.server import status as serving_status
    from flywheel.store import layout as serving_layout

    fs = serving_layout.filesystem(serving_dir)
    if not fs.isdir(serving_dir):
        raise UsageError(f"status: --serving-dir {serving_dir}: expected a serving folder, found "
                         f"{'a file' if fs.exists(serving_dir) else 'nothing there'}")
    try:
        found = serving_status.describe(serving_dir, model)
    except ValueError as e:
        raise UsageError(str(e)) from e
    return StatusResult(**found, server=serving_status.server_status(url) if url else None)


@dataclasses.dataclass(frozen=True)
class ManifestsResult:
    """The production manifests written from a rollout state: TF Serving's models.config and KServe
    InferenceServices (file paths), and what they do not cover (notes)."""

    model: str
    output: str
    files: list[str]
    storage_uri: str
    notes: list[str] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)

    def lines(self) -> list[str]:
        return ([f"flywheel rollout manifests: {self.model} -> {self.output}"] + [f"  {f}" for f in self.files]
                + [f"  note: {n}" for n in self.notes])


def rollout_manifests(serving_dir: str, output: str, model: str = "taxi", *,
                      storage_uri: Optional[str] = None) -> ManifestsResult:
    """Writes `models.config` (TF Serving) and `<model>-stable.yaml` / `<model>-candidate.yaml` (KServe
    InferenceService) into `output` from the model's rollout state. storage_uri: a template for a version's
    storage URI (`{model}`, `{version}`; default `manifests.DEFAULT_STORAGE_URI`)."""
    import yaml

    from flywheel import storage
    from flywheel.rollout import manifests
    from flywheel.rollout import state as rollout_state

    _serving_folder(serving_dir, "manifests")
    template = storage_uri or manifests.DEFAULT_STORAGE_URI
    try:
        found = rollout_state.load(serving_dir, model)
        if found is None:
            raise rollout_state.RolloutError(
                f"rollout manifests: {model} has no rollout state in {serving_dir} (start a rollout first)")
        services = manifests.kserve_manifests(found, template)
        config = manifests.models_config(serving_dir)
    except (rollout_state.RolloutError, KeyError, IndexError) as e:
        raise UsageError(str(e)) from e
    storage.makedirs(output)
    files = [os.path.join(output, manifests.CONFIG_FILE)]
    storage.write_text(files[0], config)
    for name, service in services.items():
        files.append(os.path.join(output, name))
        storage.write_text(files[-1], yaml.safe_dump(service, sort_keys=False))
    notes = []
    if found.mode == rollout_state.SHADOW:
        notes.append("KServe has no shadow mode: only the stable InferenceService is written; run the shadow with "
                     "`flywheel serve`")
    notes.append("TF Serving: run with --model_config_file and --allow_version_labels_for_unavailable_models "
                 "(a label may name a version still loading)")
    return ManifestsResult(model=model, output=output, files=files, storage_uri=template, notes=notes)

# ---- rollout analysis ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class AnalyzeResult:
    """`rollout analyze`: the analysis (decision, reasons, checks, evidence) and what was done with it: `applied`
    is promote | rollback | wait when the decision was applied to the rollout state (None: --dry-run), `state`
    the rollout state after it."""

    analysis: Any
    applied: Optional[str]
    state: Optional[dict[str, Any]]
    metadata: Optional[str] = None
    idle: str = ""

    @property
    def decision(self) -> Optional[str]:
        """promote | rollback | wait; None when there was no rollout to analyze (`idle` says so)."""
        return self.analysis.decision if self.analysis is not None else None

    def to_dict(self) -> dict[str, Any]:
        if self.analysis is None:
            return {"decision": None, "applied": None, "state": self.state, "metadata": self.metadata,
                    "idle": self.idle}
        return {**self.analysis.to_dict(), "applied": self.applied, "state": self.state, "metadata": self.metadata}

    def lines(self) -> list[str]:
        if self.analysis is None:
            return [f"rollout analyze: {self.idle}"]
        done = {"promote": "applied: the candidate is now stable",
                "rollback": "applied: rolled back, the candidate no longer takes traffic",
                "wait": "applied: recorded, the rollout keeps running",
                None: "not applied (--dry-run)"}[self.applied]
        return self.analysis.lines() + [f"  {done}"]


def rollout_analyze(serving_dir: str, model: str, log_dir: str, labels: Optional[str] = None, config: Any = None,
                    report_dir: Optional[str] = None, *, apply: bool = True, metadata: Optional[str] = None,
                    idle_ok: bool = False, wait_for_log: float = 0.0) -> AnalyzeResult:
    """`flywheel rollout analyze`: the rollout in progress (its stable and candidate versions and start time, from
    `flywheel.rollout.state`) judged on the request log under `log_dir` (rows logged after the start; `labels`:
    the log with labels joined) -> `flywheel.rollout.analysis.AnalysisResult` (promote | rollback | wait, reasons,
    evidence); analysis.json and report.html into `report_dir` when given. config: an `AnalysisConfig`, the path
    of a JSON/YAML file of thresholds, or None (the defaults).

    apply: the decision is carried out at once — promote, rollback (by itself, when the rule says so), or an
    `analyze` decision recorded while waiting — with the reasons and the checks as its evidence in rollout.json
    (and in ML-Metadata with `metadata`).

    idle_ok: no rollout in progress is a result (decision None, `idle` saying so), not an error — for a job run
    on a schedule, which finds a rollout to judge only now and then.
    wait_for_log: seconds to wait, at most, for the request log to settle before it is read (its newest row two
    of the server's flush intervals old: what the server held when the traffic stopped is then written)."""
    from flywheel.rollout import analysis, mlmd
    from flywheel.rollout import state as rollout_state

    if not 0 <= wait_for_log < math.inf:
        raise UsageError(f"rollout analyze: --wait-for-log: expected seconds >= 0, got {wait_for_log}")
    try:
        if config is None or isinstance(config, analysis.AnalysisConfig):
            rule = config or analysis.AnalysisConfig()
        else:
            rule = analysis.AnalysisConfig.load(str(config))
        current = rollout_state.load(serving_dir, model)
        if current is None or current.candidate is None:
            if idle_ok:
                return AnalyzeResult(None, None, current.to_dict() if current else None,
                                     idle=f"no rollout in progress for {model!r} in {serving_dir}: nothing to analyze")
            raise UsageError(f"rollout analyze: no rollout in progress for {model!r} in {serving_dir}: start one "
                             "with `flywheel rollout start`")
        if wait_for_log > 0:
            analysis.wait_for_settled_log(log_dir, wait_for_log)
        found = analysis.analyze(log_dir, current.stable, current.candidate, since=current.started, labels=labels,
                                 config=rule, model=model, report_dir=report_dir)
        if not apply:
            return AnalyzeResult(found, None, current.to_dict())
        reason = "; ".join(found.reasons) or f"analysis: {found.decision}"
        evidence = {"decision": found.decision, "checks": [c.to_dict() for c in found.checks],
                    "requests": {"stable": found.stable.requests, "candidate": found.candidate.requests},
                    "report": found.report}
        change = {"promote": rollout_state.promote, "rollback": rollout_state.rollback}.get(
            found.decision, rollout_state.record_analysis)
        after = change(serving_dir, model, reason, evidence)
        if metadata:
            mlmd.record(metadata, after, after.decisions[-1])
        return AnalyzeResult(found, found.decision, after.to_dict(), metadata)
    except UsageError:
        raise
    except (ValueError, OSError) as e:
        raise UsageError(str(e)) from e
