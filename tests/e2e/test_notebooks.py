"""The walkthrough notebook runs top to bottom and shows its reports (the continuous-training notebook runs in
tests/e2e/test_continuous_training.py, as the scenario its tests read)."""

from __future__ import annotations

from tests.e2e.conftest import execute_notebook


def test_walkthrough_executes_and_shows_reports():
    text, html = execute_notebook("taxi_walkthrough")
    assert "'rows_read': 3000" in text and "gate passed: True" in text and "candidate:" in text
    assert "flywheel data validation gate" in html and "flywheel model evaluation" in html
