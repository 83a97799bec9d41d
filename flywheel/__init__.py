"""flywheel: TFX components and pipelines that carry a model through its production life.

Import names: `flywheel.components.*` (the components), `flywheel.pipelines.*` (pipeline builders,
runners, the retraining job, lineage, the registry), `flywheel.schemas` (curated schemas). The library
(`from flywheel import run_pipeline, retrain, ...`) is `flywheel.api`; the command line (`flywheel ...`)
is a thin adapter over it.
"""

import os

# tf.keras means Keras 2 (tf_keras) everywhere in flywheel, so that training,
# export and loading agree whatever was imported first.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

try:
    from importlib.metadata import PackageNotFoundError, version

    __version__ = version("tfx-flywheel")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

from flywheel.api import (  # noqa: E402  (after the environment is set)
    CompileError,
    CompileResult,
    IngestResult,
    JoinResult,
    LineageResult,
    MonitorResult,
    ReplayResult,
    RetrainResult,
    RunResult,
    SimulateResult,
    UsageError,
    compile_pipeline,
    ingest,
    lineage,
    logs_join,
    monitor,
    pipeline_config,
    replay,
    retrain,
    run_pipeline,
    simulate,
)
from flywheel.pipelines.lock import LockedError  # noqa: E402
from flywheel.pipelines.registry import UnknownPipelineError  # noqa: E402

__all__ = ["CompileError", "CompileResult", "IngestResult", "JoinResult", "LineageResult", "LockedError",
           "MonitorResult", "ReplayResult", "RetrainResult", "RunResult", "SimulateResult", "UnknownPipelineError",
           "UsageError", "compile_pipeline", "ingest", "lineage", "logs_join", "monitor", "pipeline_config", "replay",
           "retrain", "run_pipeline", "simulate"]
