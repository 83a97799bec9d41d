"""DriftMonitor's executor on real Ingest output: per-span profiles, verdict property, JSON and HTML."""

from __future__ import annotations

import json
import os

from flywheel.components.monitor import executor, profile, spec
from tests.components.test_ingest_executor import TESTDATA, _run_executor


def _report(tmp_path, name):
    artifact = spec.DriftReport()
    artifact.uri = str(tmp_path / name)
    return artifact


def test_monitor_reads_the_newest_span_profile_written_by_ingest(tmp_path):
    data_profile = _run_executor(tmp_path, TESTDATA)[2]
    profiles = {k: os.path.join(data_profile.uri, spec.profile_file(k)) for k in (1, 2)}
    assert data_profile.get_string_custom_property(spec.SPANS) == "1,2"
    assert all(os.path.exists(p) for p in profiles.values())

    same = _report(tmp_path, "same")
    result = executor.run_drift_monitor(data_profile, same, profiles[2])
    assert result["span"] == 2 and result["drift_detected"] is False
    assert same.get_int_custom_property(spec.DRIFT_DETECTED) == 0
    assert os.path.exists(os.path.join(same.uri, spec.REPORT_FILE))

    shifted = profile.DatasetProfile.from_json(open(profiles[2]).read())
    fare = shifted.columns["fare"]
    fare.quantiles = [q * 3 + 20 for q in fare.quantiles]
    fare.mean, fare.std = fare.mean * 3 + 20, fare.std * 3
    baseline = tmp_path / "baseline.json"
    baseline.write_text(shifted.to_json())
    drifted = _report(tmp_path, "drifted")
    result = executor.run_drift_monitor(data_profile, drifted, str(baseline))
    assert result["features"]["fare"]["drift"] and drifted.get_int_custom_property(spec.DRIFT_DETECTED) == 1
    assert "fare" in drifted.get_string_custom_property(spec.REASON)


def test_no_baseline_means_train(tmp_path):
    data_profile = _run_executor(tmp_path, TESTDATA)[2]
    report = _report(tmp_path, "none")
    result = executor.run_drift_monitor(data_profile, report, "")
    assert result["drift_detected"] is True and "no baseline" in result["reason"]
    assert json.loads(open(os.path.join(report.uri, spec.RESULT_FILE)).read())["drift_detected"] is True
