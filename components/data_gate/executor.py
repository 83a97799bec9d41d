"""DataGate's execution: read anomalies and statistics per split, decide, write verdict + report."""

from __future__ import annotations

import json
import os
from typing import Optional

import tensorflow_data_validation as tfdv
from tensorflow_data_validation.utils import anomalies_util
from tfx import types
from tfx.dsl.io import fileio
from tfx.types import artifact_utils

from flywheel.components.common import ui_artifacts
from flywheel.components.data_gate import gate, report, spec

_ANOMALIES_FILE = "SchemaDiff.pb"
_STATISTICS_FILE = "FeatureStats.pb"


def _per_split(artifact: types.Artifact, filename: str, load):
    out = {}
    for split in artifact_utils.decode_split_names(artifact.split_names):
        path = os.path.join(artifact_utils.get_split_uri([artifact], split), filename)
        if fileio.exists(path):
            out[split] = load(path)
    return out


def run_gate(anomalies: types.Artifact, statistics: types.Artifact, verdict_artifact: types.Artifact,
             allowed_anomalies: str, report_html: Optional[types.Artifact] = None,
             summary: Optional[types.Artifact] = None, quarantine: Optional[types.Artifact] = None) -> gate.Verdict:
    """Decides, writes verdict.json and report.html into the verdict, and the same report (report_html) and a
    Markdown summary (summary) as the artifacts the KFP UI shows, when given; with Ingest's `quarantine`, the
    report says how many rows were quarantined and where they are."""
    per_split = _per_split(anomalies, _ANOMALIES_FILE, anomalies_util.load_anomalies_binary)
    if not per_split:
        raise ValueError(f"DataGate: no {_ANOMALIES_FILE} in any split of anomalies artifact {anomalies.uri}")
    verdict = gate.decide(per_split, allowed_anomalies)
    stats = _per_split(statistics, _STATISTICS_FILE, tfdv.load_stats_binary)
    fileio.makedirs(verdict_artifact.uri)
    with fileio.open(os.path.join(verdict_artifact.uri, spec.VERDICT_FILE), "w") as f:
        f.write(json.dumps(verdict.to_dict(), indent=2))
    quarantined = report.QuarantineSummary.of(quarantine) if quarantine is not None else None
    html = report.render(verdict, stats, quarantined)
    with fileio.open(os.path.join(verdict_artifact.uri, spec.REPORT_FILE), "w") as f:
        f.write(html)
    if report_html is not None:
        ui_artifacts.write_html(report_html, html)
    if summary is not None:
        ui_artifacts.write_markdown(summary, report.render_markdown(verdict, quarantined))
    verdict_artifact.set_string_custom_property(spec.GATE, "data_validation")
    verdict_artifact.set_int_custom_property(spec.PASSED, int(verdict.passed))
    verdict_artifact.set_int_custom_property(spec.NUM_ANOMALIES, len(verdict.findings))
    verdict_artifact.set_int_custom_property(spec.NUM_BLOCKING, len(verdict.blocking))
    verdict_artifact.set_string_custom_property(spec.REPORT, os.path.join(verdict_artifact.uri, spec.REPORT_FILE))
    return verdict
