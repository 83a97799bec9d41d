"""flywheel's library API: one function per job, each returning a typed result; the `flywheel` command line is a
thin adapter over it, and notebooks and tests call it directly.

Its modules, by domain (each result beside its function):
  errors      UsageError, CompileError, the checks of arguments
  pipeline    pipeline_config, run_pipeline (RunResult), lineage, compile_pipeline, simulate
  ingestion   ingest (IngestResult): imports Beam and TFX
  retraining  retrain (RetrainResult)
  monitoring  monitor (MonitorResult)
  traffic     replay (ReplayResult), logs_join (JoinResult)
  serving     serve, serving_app, status (StatusResult)
  batch       predict (PredictResult): imports Beam
  rollout     rollout_start, _promote, _rollback, _status, _manifests, _analyze
  privacy     privacy_check (PrivacyResult): k-anonymity and l-diversity under a pipeline's privacy policy

The public names below load their module on first use (`from flywheel.api import monitor` imports the monitoring
module alone), so that a caller pays only for the domain it uses: some import Beam, TFX or the HTTP server.
Errors: `UsageError` for a bad argument or input location, `registry.UnknownPipelineError` for an unknown
pipeline name, `lock.LockedError` when another process holds the output directory.
"""

import importlib

_PUBLIC = {
    "UsageError": "errors", "CompileError": "errors",
    "RunResult": "pipeline", "LineageResult": "pipeline", "CompileResult": "pipeline", "SimulateResult": "pipeline",
    "pipeline_config": "pipeline", "run_pipeline": "pipeline", "lineage": "pipeline", "compile_pipeline": "pipeline",
    "simulate": "pipeline",
    "IngestResult": "ingestion", "ingest": "ingestion",
    "RetrainResult": "retraining", "retrain": "retraining",
    "MonitorResult": "monitoring", "monitor": "monitoring",
    "ReplayResult": "traffic", "JoinResult": "traffic", "replay": "traffic", "logs_join": "traffic",
    "serve": "serving",
    "PredictResult": "batch", "predict": "batch",
    "PrivacyResult": "privacy", "privacy_check": "privacy",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    """A public name, its module imported on first use."""
    if name not in _PUBLIC:
        raise AttributeError(f"module 'flywheel.api' has no attribute {name!r}")
    return getattr(importlib.import_module(f"flywheel.api.{_PUBLIC[name]}"), name)
