"""The command line's text output is for people: counts and lists written out, no Python dicts, lists or nested
parentheses."""

from __future__ import annotations

import re

import pytest

from flywheel import schemas
from flywheel.api.retraining import RetrainResult
from flywheel.api.rollout import RolloutResult
from flywheel.api.traffic import ReplayResult
from flywheel.cli.retraining import retrain_lines
from flywheel.cli.rollout import rollout_lines
from flywheel.cli.text import counts, listing
from flywheel.cli.traffic import replay_lines
from flywheel.rollout import analysis
from tests.conftest import call_cli

SPANS = "components/ingest/testdata/spans"
PYTHON_LITERAL = re.compile(r"[{\[]'|[{\[]\d|\d[}\]]|'[}\]]")


def _depth(text: str) -> int:
    deepest = level = 0
    for char in text:
        level += {"(": 1, ")": -1}.get(char, 0)
        deepest = max(deepest, level)
    return deepest


def test_lists_and_counts_are_written_out():
    assert listing([1, 2, 3]) == "1, 2, 3" and listing([]) == "none" and listing("0") == "0"
    assert listing([1796679337]) == "1796679337", "a version (or span) is a name: no thousands separators"
    assert counts({"train": 3388, "eval": 1612}) == "train 3,388, eval 1,612"
    assert counts({"200": 4999, "503": 1}, ": ") == "200: 4,999, 503: 1" and counts({}) == "none"


def test_ingest_prints_its_split_counts_as_words(tmp_path, capfd):
    result = call_cli(capfd, "ingest", "--data", SPANS, "--schema", schemas.schema_path("taxi"), "--output-dir",
                      str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert re.search(r"written [\d,]+ \(train [\d,]+, eval [\d,]+\)", result.stdout), result.stdout
    assert not PYTHON_LITERAL.search(result.stdout), result.stdout


def test_replay_counts_by_status_as_words():
    found = ReplayResult(url="http://h/v1/models/taxi", features=["fare"], rows_read=5000, rows_skipped=1,
                         rows_sent=4999, requests_sent=4999, ok=4999, failed=0, by_status={"200": 4999},
                         achieved_rate=100.0, elapsed_s=50.0, latency_ms={"p50": 1.0})
    line = replay_lines(found)[0]
    assert "0 failed (by status 200: 4,999)" in line and not PYTHON_LITERAL.search(line), line


@pytest.mark.parametrize("window", [(3,), (1, 2, 3)])
def test_retrain_names_its_window_as_spans(window):
    found = RetrainResult(pipeline="taxi", span=window[-1], window=window, drift_detected=False,
                          drift_reason="no drift", drift_report=None, retrained=False, blessed=None, pushed=False,
                          model_version=7, previous_version=7, status="no_drift")
    lines = retrain_lines(found)
    assert lines[0].startswith(f"flywheel retrain taxi: span {window[-1]}, window of spans "
                               f"{', '.join(map(str, window))}: no drift"), lines
    assert not PYTHON_LITERAL.search("\n".join(lines))


@pytest.mark.parametrize("folder", ["empty", "span-less"])
def test_data_without_spans_or_files_says_so_without_a_span_number(tmp_path, capfd, folder):
    data = tmp_path / folder
    data.mkdir()
    if folder == "span-less":
        (data / "archive").mkdir()
    result = call_cli(capfd, "retrain", "taxi", "--data", str(data), "--output-dir", str(tmp_path / "state"))
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == (f"flywheel: retrain: --data {data}: expected a folder of span-N folders "
                                     "(span-1/, span-2/, ... as `flywheel simulate` and `flywheel logs join` write), "
                                     "found none"), result.stderr


def test_a_rollback_reason_nests_no_parentheses_in_parentheses():
    def side(version: int, std: float) -> analysis.SideStats:
        return analysis.SideStats(version=version, requests=2500, rows=2500, shadow_requests=0, model_errors=0,
                                  client_errors=0, error_rate=0.0, client_error_rate=0.0, latency_ms={"p99": 5.0},
                                  predictions={"std": std, "min": 0.3, "max": 0.3 + std, "mean": 0.3})

    check = analysis.constant_check(side(1, 0.08944), side(2, 0.0), analysis.AnalysisConfig())
    assert check.passed is False
    assert _depth(check.reason()) <= 1, check.reason()


def test_lineage_and_rollout_status_write_spans_and_versions_out():
    from flywheel.metadata import lineage
    from flywheel.rollout.state import RolloutState

    text = lineage.render({"model_name": "taxi", "version": 7, "path": "s/taxi/7", "pushed_at": "t",
                           "spans": [1, 2, 3], "data_fingerprint": "abcdef0123456789", "steps": []})
    assert "trained on spans 1, 2, 3, data abcdef012345" in text and not PYTHON_LITERAL.search(text)
    state = RolloutState(model="taxi", stable=2, generation=3, rolled_back=(1, 5)).to_dict()
    status = RolloutResult(action="status", model="taxi", serving_dir="s", serving_version=2, state=state)
    assert "  served by default: version 2; rolled back: 1, 5" in rollout_lines(status)


def test_retrain_without_a_baseline_says_so_once():
    """The README's first retrain: `no baseline: no model in serving`, not `no baseline (no baseline: ...)`."""
    found = RetrainResult(pipeline="taxi", span=2, window=(1, 2), drift_detected=None,
                          drift_reason="no baseline: no model in serving", drift_report=None, retrained=True,
                          blessed=True, pushed=True, model_version=7, previous_version=None, status="finished",
                          pushed_version=7)
    line = retrain_lines(found)[0]
    assert line == "flywheel retrain taxi: span 2, window of spans 1, 2: no baseline: no model in serving", line
