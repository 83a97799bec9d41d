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
    LineageResult,
    MonitorResult,
    RetrainResult,
    RunResult,
    SimulateResult,
    UsageError,
    compile_pipeline,
    ingest,
    lineage,
    monitor,
    pipeline_config,
    retrain,
    run_pipeline,
    simulate,
)
from flywheel.pipelines.lock import LockedError  # noqa: E402
from flywheel.pipelines.registry import UnknownPipelineError  # noqa: E402

# flywheel's artifact types by their TYPE_NAME, `flywheel.<Name>`: TFX's Kubeflow container entrypoint
# imports a custom artifact class from its type name (the compiled spec's schema title), so each must be an
# attribute of this package. Resolved on first use: importing them imports TFX.
ARTIFACT_TYPES = {
    "DataProfile": "flywheel.components.monitor.spec",
    "DriftReport": "flywheel.components.monitor.spec",
    "GateVerdict": "flywheel.components.data_gate.spec",
    "Quarantine": "flywheel.components.ingest.spec",
    "RetrainDecision": "flywheel.components.decide.spec",
}


def __getattr__(name: str):
    if name in ARTIFACT_TYPES:
        import importlib

        return getattr(importlib.import_module(ARTIFACT_TYPES[name]), name)
    raise AttributeError(f"module 'flywheel' has no attribute {name!r}")


__all__ = ["CompileError", "CompileResult", "IngestResult", "LineageResult", "LockedError", "MonitorResult",
           "RetrainResult", "RunResult", "SimulateResult", "UnknownPipelineError", "UsageError", "compile_pipeline",
           "ingest", "lineage", "monitor", "pipeline_config", "retrain", "run_pipeline", "simulate"]
