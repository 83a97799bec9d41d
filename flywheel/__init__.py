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

_API = ("CompileError", "CompileResult", "IngestResult", "JoinResult", "LineageResult", "MonitorResult",
        "PredictResult", "PrivacyResult", "ReplayResult", "RetrainResult", "RunResult", "SimulateResult",
        "UsageError", "compile_pipeline", "ingest", "lineage", "logs_join", "monitor", "pipeline_config", "predict",
        "privacy_check", "replay", "retrain", "run_pipeline", "serve", "simulate")
__all__ = sorted(_API + ("LockedError", "UnknownPipelineError"))


def __getattr__(name: str):
    """The public API on first use: importing a library module (`flywheel.storage`) or a component does not load
    the API and everything it reaches."""
    if name in _API:
        from flywheel import api

        return getattr(api, name)
    if name == "LockedError":
        from flywheel.lock import LockedError

        return LockedError
    if name == "UnknownPipelineError":
        from flywheel.pipelines.registry import UnknownPipelineError

        return UnknownPipelineError
    raise AttributeError(f"module 'flywheel' has no attribute {name!r}")
