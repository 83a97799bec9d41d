"""A pipeline run's summary from its ML-Metadata records: data counts, the data gate's verdict, the evaluation,
the push and what serves now — the fields of `flywheel.api.pipeline.RunResult`.

It reads the outputs of flywheel's components by their node ids (Ingest, DataGate, Evaluate, Push) and keys;
a registered pipeline names it (`PipelineEntry.summary`), so looking a pipeline up does not import them.
"""

from __future__ import annotations

import os
from typing import Any

import flywheel.components.data_gate.spec
import flywheel.components.evaluate.spec
from flywheel.components.data_gate.spec import PASSED, VERDICT_KEY
from flywheel.components.evaluate.spec import AUC, BLESSED, BLESSING_KEY, EVALUATION_KEY
from flywheel.components.ingest.spec import (
    EXAMPLES_KEY,
    FINGERPRINT,
    QUARANTINE_FILE,
    QUARANTINE_KEY,
    ROWS_QUARANTINED,
    ROWS_READ,
    ROWS_WRITTEN,
    SPANS,
)
from flywheel.components.push.spec import PUSHED_MODEL_KEY
from flywheel.metadata import artifacts
from flywheel.metadata.run_record import NodeRecord
from flywheel.store import layout


def summarize(records: dict[str, NodeRecord], cfg: Any) -> tuple[dict[str, Any], bool]:
    """(RunResult's fields but pipeline, engine, status and timing; whether the data gate stopped the run) from
    the run's records (`run_record.latest_run`) and the config's paths."""
    fields: dict[str, Any] = {"output_dir": cfg.paths.output_dir, "metadata": cfg.paths.metadata_path,
                              "pipeline_root": cfg.paths.pipeline_root,
                              "serving_dir": os.path.join(cfg.paths.serving_dir, cfg.model_name),
                              "states": {node: rec.state for node, rec in records.items()},
                              "failed_nodes": tuple(n for n, r in records.items() if r.state == "FAILED")}
    fields.update(_data(records.get("Ingest")))
    verdict = records["DataGate"].output(VERDICT_KEY) if "DataGate" in records else None
    if verdict:
        fields["gate_report"] = verdict.get(flywheel.components.data_gate.spec.REPORT)
    fields.update(_evaluation(records.get("Evaluate")))
    fields.update(_push(records.get("Push")))
    served = layout.current(cfg.paths.serving_dir, cfg.model_name)
    fields["serving_version"] = served.version if served else None
    fields["serving_path"] = served.path if served else None
    return fields, bool(verdict) and not verdict.get(PASSED)


def _data(record: NodeRecord | None) -> dict[str, Any]:
    examples = record.output(EXAMPLES_KEY) if record else None
    if not examples:
        return {}
    data = {k: examples.get(k) for k in (ROWS_READ, ROWS_WRITTEN, ROWS_QUARANTINED, FINGERPRINT, SPANS)}
    data["uri"] = examples["uri"]
    quarantined = record.output(QUARANTINE_KEY)
    if quarantined:
        data["quarantine"] = os.path.join(quarantined["uri"], QUARANTINE_FILE)
    return {"data": data}


def _evaluation(record: NodeRecord | None) -> dict[str, Any]:
    evaluation = record.output(EVALUATION_KEY) if record else None
    if not evaluation:
        return {}
    return {"evaluation_report": evaluation.get(flywheel.components.evaluate.spec.REPORT),
            "auc": evaluation.get(AUC), "blessed": bool((record.output(BLESSING_KEY) or {}).get(BLESSED))}


def _push(record: NodeRecord | None) -> dict[str, Any]:
    pushed = record.output(PUSHED_MODEL_KEY) if record else None
    if not pushed:
        return {}
    done = bool(pushed.get(artifacts.PUSHED))
    version = pushed.get(artifacts.PUSHED_VERSION)  # a string, as the stock Pusher stores it
    return {"pushed": done, "pushed_version": int(version) if done and version is not None else None,
            "push_reason": pushed.get(artifacts.PUSH_REASON)}
