"""Pipelines: their config, a run (or the answer that nothing changed), the lineage of a served model, a
compiled Kubeflow spec and simulated data, each returning a typed result.

A run holds the output directory's lock, answers `up_to_date` from the stamp when nothing changed, and reads
its summary back from ML-Metadata. A component that fails, or a data gate that stops the run, is not an
exception: it is the result's `status`.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import sys
import tempfile
import time
from typing import Any, Optional, TextIO

from flywheel import lock, quiet
from flywheel.api.errors import CompileError, UsageError, creatable, folder_argument, resolve_input
from flywheel.api.results import as_dict
from flywheel.metadata import connection, run_record
from flywheel.metadata.lineage import describe
from flywheel.pipelines import registry, stamp
from flywheel.store import layout

FINISHED, UP_TO_DATE, STOPPED, FAILED = "finished", "up_to_date", "stopped", "failed"


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
        out = as_dict(self)
        out["failed_nodes"] = list(self.failed_nodes)
        return out


def pipeline_config(pipeline: str, output_dir: str = "flywheel_output", *, data: Optional[str] = None,
                    serving_dir: Optional[str] = None, metadata: Optional[str] = None, engine: str = "local",
                    beam_pipeline_args: tuple[str, ...] = (), **options: Any) -> Any:
    """The registered pipeline's typed config from generic options (train_steps, span, num_spans,
    allowed_anomalies, warm_start); engine 'beam' adds Beam args (defaults when none are given).

    metadata: the ML-Metadata store, a SQLite file or mysql://USER@HOST[:PORT]/DATABASE (`flywheel.metadata.
    connection`; the password from the environment); None: <output_dir>/metadata.sqlite."""
    entry = registry.get(pipeline)
    if engine not in entry.engines:
        raise UsageError(f"pipeline {pipeline!r}: unknown engine {engine!r}; engines: {', '.join(entry.engines)}")
    folder_argument(output_dir, "--output-dir")
    folder_argument(serving_dir, "--serving-dir")
    try:
        cfg = entry.make_config(paths=entry.make_paths(output_dir, data, serving_dir), **options)
        if metadata is not None:
            cfg = dataclasses.replace(cfg, paths=dataclasses.replace(cfg.paths,
                                                                     metadata_path=connection.canonical(metadata)))
    except (ValueError, FileNotFoundError) as e:
        raise UsageError(str(e)) from e
    if engine == "beam":
        return entry.with_beam_args(cfg, tuple(beam_pipeline_args))
    return dataclasses.replace(cfg, beam_pipeline_args=tuple(beam_pipeline_args)) if beam_pipeline_args else cfg


def serving_now(cfg) -> Optional[int]:
    """The version the config's model serves by default now (None: none)."""
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
    resolved = resolve_input(config.paths.data_root, config.span, config.num_spans, "run: --data")
    output_dir = config.paths.output_dir
    os.makedirs(output_dir, exist_ok=True)
    with lock.exclusive(output_dir):
        run_stamp = stamp.compute(config.to_dict(), resolved.fingerprint, engine, serving_now(config))
        previous = stamp.load(output_dir)
        if stamp.still_valid(previous, run_stamp):
            names = {f.name for f in dataclasses.fields(RunResult)}
            saved = {k: v for k, v in previous["summary"].items() if k in names}
            saved["failed_nodes"] = tuple(saved.get("failed_nodes", ()))
            return RunResult(**{**saved, "status": UP_TO_DATE, "engine": engine, "elapsed": 0.0})
        stamp.clear(output_dir)
        result = execute_run(config, entry.name, engine, runner, resolved, progress, verbose)
        if result.status == FINISHED:
            stamp.save(output_dir, stamp.compute(config.to_dict(), resolved.fingerprint, engine, serving_now(config)),
                       result.to_dict(), must_exist(result))
    return result


def check_metadata(cfg) -> None:
    """UsageError before anything runs when the config's ML-Metadata store cannot be opened (a MySQL/MariaDB server
    that does not answer or refuses the user; a SQLite file is made by the run)."""
    try:
        connection.check(cfg.paths.metadata_path)
    except connection.MetadataStoreError as e:
        raise UsageError(str(e)) from e


def must_exist(result: RunResult) -> list[str]:
    """The files a valid stamp needs: the metadata store (a SQLite file), the serving version and every local
    artifact."""
    store_file = connection.local_file(result.metadata)
    paths = ([store_file] if store_file else []) + ([result.serving_path] if result.serving_path else [])
    for record in result.records.values():
        for artifacts in record.outputs.values():
            paths += [a["uri"] for a in artifacts if a.get("uri") and "://" not in a["uri"]]
    return sorted(set(paths))


def execute_run(cfg, pipeline: str, engine: str, runner, resolved, progress: Optional[TextIO],
                verbose: bool) -> RunResult:
    """Runs the pipeline once (no stamp, no lock: the caller holds it) and reads what it did from ML-Metadata."""
    out = progress if progress is not None else sys.stdout
    out.write(f"flywheel: running {pipeline} on the {engine} engine: spans {', '.join(map(str, resolved.spans))}, "
              f"{len(resolved.files)} file(s), data {resolved.fingerprint[:12]}; output {cfg.paths.output_dir}\n")
    out.flush()
    started = time.monotonic()
    import tfx  # noqa: F401  (TFX: seconds to import, only a real run needs it; before install() so absl is configured)

    quiet.install(verbose, out)
    check_metadata(cfg)
    error: Optional[BaseException] = None
    try:
        runner(cfg)
    except Exception as e:  # the runner re-raises a component's error: it is the result's status, with the summary
        error = e
    records = run_record.latest_run(cfg.paths.metadata_path, cfg.pipeline_name, cfg.paths.pipeline_root)
    fields, gate_stopped = registry.get(cfg.pipeline_name).summarize(records, cfg)
    status = FAILED if error is not None or fields["failed_nodes"] else STOPPED if gate_stopped else FINISHED
    return RunResult(pipeline=pipeline, engine=engine, status=status, elapsed=round(time.monotonic() - started, 1),
                     error=f"{type(error).__name__}: {error}" if error is not None else None,
                     finished_at=datetime.datetime.now().isoformat(timespec="seconds"), records=records, **fields)


# ---- lineage -------------------------------------------------------------------------------------------------


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
        return as_dict(self)


def lineage(pipeline: str, output_dir: str = "flywheel_output", *, serving_dir: Optional[str] = None,
            model: str = "latest", model_name: Optional[str] = None, metadata: Optional[str] = None) -> LineageResult:
    """The lineage of a served model (`model`: latest or a version number) from ML-Metadata: the output directory's
    SQLite store, or `metadata` (a SQLite file or a MySQL/MariaDB store shared by several machines)."""
    cfg = pipeline_config(pipeline, output_dir, serving_dir=serving_dir, metadata=metadata)
    metadata = cfg.paths.metadata_path
    if connection.local_file(metadata) and not os.path.isfile(metadata):
        raise UsageError(f"lineage: no ML-Metadata store at {metadata} (is {cfg.paths.output_dir} the --output-dir "
                         "of a run?)")
    if model != "latest" and not model.isdigit():
        raise UsageError(f"lineage: --model: expected 'latest' or a version number, got {model!r}")
    try:
        connection.check(metadata)
        found = describe(metadata, cfg.paths.serving_dir, model_name or cfg.model_name, model)
    except (LookupError, OSError, connection.MetadataStoreError) as e:
        raise UsageError(str(e)) from e
    return LineageResult(**{f.name: found.get(f.name) for f in dataclasses.fields(LineageResult)})


# ---- compile -------------------------------------------------------------------------------------------------


COMPILE_FORMATS = {".yaml": "KFP PipelineSpec", ".yml": "KFP PipelineSpec", ".json": "Vertex AI PipelineJob"}


@dataclasses.dataclass(frozen=True)
class CompileResult:
    pipeline: str
    output: str
    format: str
    image: Optional[str]

    def to_dict(self) -> dict[str, Any]:
        return as_dict(self)


def _writable_folder(output: str) -> None:
    """Fails in one line unless output's folder can be created and written (checked by writing there)."""
    if os.path.isdir(output):
        raise UsageError(f"compile: --output {output} is a folder; expected a .yaml, .yml or .json file")
    folder = os.path.dirname(os.path.abspath(output))
    existing = folder
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise UsageError(f"compile: --output {output}: expected a folder (new or existing) to write it in, found a "
                         f"file in its path: {existing}")
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".flywheel-compile-"):
            pass
    except OSError as e:
        raise UsageError(f"compile: --output {output}: cannot write it: {e.strerror or e}") from e


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
    import tfx  # noqa: F401  (TFX: seconds to import, only compiling needs it; before install() so absl is configured)

    quiet.install(verbose, sys.stderr)
    try:
        path = entry.compile_pipeline(output, image, **{k: v for k, v in options.items() if v is not None})
    except OSError as e:
        raise UsageError(f"compile: --output {output}: cannot write it: {e.strerror or e}") from e
    except Exception as e:  # the KFP/TFX compiler's own error: one line naming it, not a traceback
        raise CompileError(f"compile: {pipeline} failed to compile: {type(e).__name__}: {e}") from e
    return CompileResult(pipeline, path, COMPILE_FORMATS[suffix], image)


# ---- simulate ------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SimulateResult:
    pipeline: str
    out: str
    files: list[str]
    rows: int
    drift_from: Optional[int]

    def to_dict(self) -> dict[str, Any]:
        return as_dict(self)

    @property
    def spans(self) -> list[str]:
        return list(dict.fromkeys(os.path.basename(os.path.dirname(f)) for f in self.files))


def simulate(pipeline: str, out: str, *, spans: int = 4, drift_from: Optional[int] = None, rows: int = 5000,
             seed: int = 0, files: int = 1) -> SimulateResult:
    """Writes `spans` new spans of labelled production data into `out`, after the span-N folders it already holds
    (span-1 .. span-N in a new folder), drifting from span number `drift_from` on; nothing is overwritten. Each
    span is `files` files (its rows split in order; the rows do not depend on it)."""
    entry = registry.get(pipeline)
    creatable(out, "simulate: --out")
    try:
        written = entry.simulator()(out, spans, drift_from, rows, seed, files)
    except (ValueError, OSError) as e:
        raise UsageError(str(e)) from e
    return SimulateResult(pipeline, out, written, rows, drift_from)
