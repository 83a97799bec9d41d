"""Runs the taxi pipeline on TFX's BeamDagRunner.

Components' data-parallel work uses the pipeline's beam_pipeline_args: the DirectRunner
in multi-processing mode by default, any Beam runner (Flink, Spark, Dataflow) by flags,
e.g. FLYWHEEL_BEAM_ARGS="--runner=FlinkRunner --flink_master=host:8081".
Also the file `tfx pipeline create --engine beam --pipeline_path pipelines/taxi/beam_runner.py` takes.
"""

from __future__ import annotations

import os
import shlex

from flywheel import quiet

if __name__ == "__main__":  # a script (the TFX CLI runs it): TensorFlow reads its log level once, on import
    quiet.quiet_environment(quiet.verbose_from_environment())

from flywheel.pipelines.taxi import local_runner  # noqa: E402
from flywheel.pipelines.taxi.config import TaxiConfig, with_beam_args  # noqa: E402


def beam_dag_runner():
    """TFX's BeamDagRunner with UNCACHED_NODES' caching off."""
    from tfx.orchestration.beam.beam_dag_runner import BeamDagRunner  # TFX imports TensorFlow: only a run needs it

    class TaxiBeamDagRunner(local_runner.UncachedNodes, BeamDagRunner):
        pass

    return TaxiBeamDagRunner()


def run(cfg: TaxiConfig) -> None:
    if not cfg.beam_pipeline_args:
        cfg = with_beam_args(cfg)
    beam_dag_runner().run(local_runner.build(cfg))


def config_from_env() -> TaxiConfig:
    """local_runner.config_from_env with FLYWHEEL_BEAM_ARGS (default `engines.MULTI_PROCESSING_ARGS`)."""
    raw = os.environ.get("FLYWHEEL_BEAM_ARGS", "")
    try:
        args = tuple(shlex.split(raw))
    except ValueError as e:
        raise ValueError(f"FLYWHEEL_BEAM_ARGS: expected Beam flags quoted as in a shell, got {raw!r} ({e})") from None
    return with_beam_args(local_runner.config_from_env(), args)


if __name__ == "__main__":
    local_runner.run_as_script(run, config_from_env, __file__)
