"""Runs the taxi pipeline on TFX's LocalDagRunner, its ML-Metadata in the config's store (`cfg.paths.metadata_path`:
the embedded SQLite file by default, or a shared MySQL/MariaDB database, `flywheel.metadata.connection`).

Also the file the TFX CLI takes:
    tfx pipeline create --engine local --pipeline_path pipelines/taxi/local_runner.py
    tfx run create --engine local --pipeline_name taxi
FLYWHEEL_OUTPUT_DIR, FLYWHEEL_DATA, FLYWHEEL_SERVING_DIR, FLYWHEEL_METADATA (a SQLite file or
mysql://USER@HOST[:PORT]/DATABASE, the password in FLYWHEEL_METADATA_PASSWORD or FLYWHEEL_METADATA_PASSWORD_FILE)
and FLYWHEEL_TRAIN_STEPS override the defaults there;
FLYWHEEL_CONTINUOUS_TRAINING=1 puts Decide at the pipeline's head; FLYWHEEL_VERBOSE=1 shows TensorFlow's and
Beam's logs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import sys
from typing import Callable

from flywheel import lock, quiet
from flywheel.metadata import connection, run_record

if __name__ == "__main__":  # a script (the TFX CLI runs it): TensorFlow reads its log level once, on import
    quiet.quiet_environment(quiet.verbose_from_environment())

from flywheel.pipelines.taxi.config import UNCACHED_NODES, Paths, TaxiConfig  # noqa: E402
from flywheel.pipelines.taxi.pipeline import create_pipeline  # noqa: E402


def config_from_env(**overrides) -> TaxiConfig:
    paths = Paths.under(os.environ.get("FLYWHEEL_OUTPUT_DIR", "flywheel_output"), os.environ.get("FLYWHEEL_DATA"),
                        os.environ.get("FLYWHEEL_SERVING_DIR"), os.environ.get("FLYWHEEL_METADATA"))
    cfg = TaxiConfig(paths=paths)
    steps = os.environ.get("FLYWHEEL_TRAIN_STEPS", "").strip()
    if steps:
        if not steps.isdecimal() or not steps.isascii():
            raise ValueError(f"FLYWHEEL_TRAIN_STEPS: expected a whole number of steps, got {steps!r}")
        cfg = dataclasses.replace(cfg, train_steps=int(steps))
    continuous = os.environ.get("FLYWHEEL_CONTINUOUS_TRAINING", "").strip()
    if continuous not in ("", "0", "1"):
        raise ValueError(f"FLYWHEEL_CONTINUOUS_TRAINING: expected 1 (Decide heads the pipeline) or 0, "
                         f"got {continuous!r}")
    cfg = dataclasses.replace(cfg, continuous_training=continuous == "1")
    return dataclasses.replace(cfg, **overrides)


def pin_schema(schema_path: str, output_dir: str) -> str:
    """A content-addressed copy of the schema: an edited schema is a new path, so never a stale cache hit."""
    with open(schema_path, "rb") as f:
        content = f.read()
    pinned = os.path.join(output_dir, "schemas", hashlib.sha256(content).hexdigest()[:16], "schema.pbtxt")
    if not os.path.exists(pinned):
        os.makedirs(os.path.dirname(pinned), exist_ok=True)
        with open(pinned + ".tmp", "wb") as f:
            f.write(content)
        os.replace(pinned + ".tmp", pinned)
    return pinned


def build(cfg: TaxiConfig):
    """The pipeline with its metadata store (`connection.runner_config`); fails at build time on a missing schema
    file or a metadata location that is not one."""
    if "://" not in cfg.schema_path and not os.path.exists(cfg.schema_path):
        raise FileNotFoundError(f"TaxiConfig.schema_path: file {cfg.schema_path!r} does not exist")
    cfg = dataclasses.replace(cfg, schema_path=pin_schema(cfg.schema_path, cfg.paths.output_dir))
    return create_pipeline(cfg, connection.runner_config(cfg.paths.metadata_path))


def name_run(ir):
    """The pipeline's IR with its run id set (`run_record.run_id`: the time and a tag of the pipeline root), before
    the runner would set the time alone; in a metadata store shared with other machines' runs of the same
    pipeline, the run's records are then found by its pipeline root (`run_record.latest_run`)."""
    from tfx.dsl.compiler import constants  # TFX: see local_dag_runner
    from tfx.orchestration.portable import runtime_parameter_utils  # (TFX, as above)

    root = ir.runtime_spec.pipeline_root  # a runtime parameter whose default is the config's pipeline root
    root = root.field_value.string_value or root.runtime_parameter.default_value.string_value
    runtime_parameter_utils.substitute_runtime_parameter(
        ir, {constants.PIPELINE_RUN_ID_PARAMETER_NAME: run_record.run_id(root)})
    return ir


def uncache_nodes(ir):
    """The pipeline's IR with caching off for the nodes that must look every run (UNCACHED_NODES: Decide).

    TFX's DSL sets caching for the whole pipeline; the IR holds it per node.
    """
    for node in ir.nodes:
        if node.pipeline_node.node_info.id in UNCACHED_NODES:
            node.pipeline_node.execution_options.caching_options.enable_cache = False
    return ir


def compile_ir(pipeline):
    """The pipeline compiled as the runners run it (uncache_nodes applied)."""
    from tfx.dsl.compiler import compiler  # TFX: see local_dag_runner

    return uncache_nodes(compiler.Compiler().compile(pipeline))


class UncachedNodes:
    """Mixed in before a TFX IR-based runner: the runner's own `run` compiles the pipeline and calls `run_with_ir`,
    where this applies uncache_nodes and name_run. `run` stays the runner's, which is the method the TFX CLI patches to
    capture a pipeline without running it (`tfx pipeline create`)."""

    def run_with_ir(self, pipeline, run_options=None, **kwargs):
        return super().run_with_ir(name_run(uncache_nodes(pipeline)), run_options=run_options, **kwargs)


def local_dag_runner():
    """TFX's LocalDagRunner with UNCACHED_NODES' caching off."""
    # TFX imports TensorFlow: `python local_runner.py` reads its settings and takes the lock before paying for it
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner

    class TaxiLocalDagRunner(UncachedNodes, LocalDagRunner):
        pass

    return TaxiLocalDagRunner()


def run(cfg: TaxiConfig) -> None:
    local_dag_runner().run(build(cfg))


def run_as_script(run_pipeline: Callable[[TaxiConfig], None], config: Callable[[], TaxiConfig], script: str) -> None:
    """What `python <runner>.py` does, so what `tfx run create` runs (and `tfx pipeline create`, with the runner's
    `run` patched to capture the pipeline): TensorFlow, Beam and absl kept quiet unless FLYWHEEL_VERBOSE=1, a line
    per component on stdout, and a failure as one line on stderr with exit status 1. It holds the output
    directory's lock, as `flywheel run` does: a second run there refuses at once. Run as its own process (`python
    <script>`, as `tfx run create` starts it) it ends without the interpreter's teardown (`quiet.end_process`);
    run inside the TFX CLI (`tfx pipeline create` executes the file in its own process) it returns."""
    verbose = quiet.verbose_from_environment()
    quiet.quiet_environment(verbose)
    import tfx  # noqa: F401  (imported before install() so absl is configured)

    quiet.install(verbose)
    try:
        cfg = config()
        os.makedirs(cfg.paths.output_dir, exist_ok=True)
        with lock.exclusive(cfg.paths.output_dir):
            run_pipeline(cfg)
    except Exception as e:  # a bad setting or a failed component: one line, the components' errors are above it
        sys.exit(f"flywheel: taxi pipeline: {str(e) or 'a component failed (its error is above)'}")
    main = getattr(sys.modules.get("__main__"), "__file__", None)  # the TFX CLI's own, when it executes the file
    if main and os.path.realpath(main) == os.path.realpath(script):
        quiet.end_process(0)


if __name__ == "__main__":
    run_as_script(run, config_from_env, __file__)
