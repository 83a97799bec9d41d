"""Runs the taxi pipeline on TFX's BeamDagRunner.

Components' data-parallel work uses the pipeline's beam_pipeline_args: the DirectRunner
in multi-processing mode by default, any Beam runner (Flink, Spark, Dataflow) by flags,
e.g. FLYWHEEL_BEAM_ARGS="--runner=FlinkRunner --flink_master=host:8081".
Also the file `tfx pipeline create --engine beam --pipeline_path pipelines/taxi/beam_runner.py` takes.
"""

from __future__ import annotations

import dataclasses
import os
import shlex

from flywheel.pipelines.taxi import local_runner
from flywheel.pipelines.taxi.config import TaxiConfig

DEFAULT_BEAM_ARGS = ("--direct_running_mode=multi_processing", "--direct_num_workers=2")


def with_beam_args(cfg: TaxiConfig, args: tuple[str, ...] | None = None) -> TaxiConfig:
    return dataclasses.replace(cfg, beam_pipeline_args=tuple(args) if args else DEFAULT_BEAM_ARGS)


def run(cfg: TaxiConfig) -> None:
    from tfx.orchestration.beam.beam_dag_runner import BeamDagRunner

    if not cfg.beam_pipeline_args:
        cfg = with_beam_args(cfg)
    BeamDagRunner().run_with_ir(local_runner.compile_ir(local_runner.build(cfg)))


if __name__ == "__main__":
    run(with_beam_args(local_runner.config_from_env(), tuple(shlex.split(os.environ.get("FLYWHEEL_BEAM_ARGS", "")))))
