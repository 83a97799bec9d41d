"""The walkthrough notebook runs top to bottom, and its .ipynb is in sync with the .py it is paired with."""

from __future__ import annotations

import os
import re

import jupytext
import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import REPO

NOTEBOOKS = os.path.join(REPO, "notebooks")


def _sources(nb) -> list[str]:
    return [c.source.strip() for c in nb.cells]


@pytest.mark.parametrize("name", ["taxi_walkthrough", "continuous_training"])
def test_ipynb_is_paired_with_py(name):
    py = jupytext.read(os.path.join(NOTEBOOKS, f"{name}.py"))
    ipynb = nbformat.read(os.path.join(NOTEBOOKS, f"{name}.ipynb"), as_version=4)
    assert _sources(py) == _sources(ipynb), f"run: jupytext --sync notebooks/{name}.py"


def _execute(name: str) -> tuple[str, str]:
    nb = nbformat.read(os.path.join(NOTEBOOKS, f"{name}.ipynb"), as_version=4)
    NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": REPO}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    text = "".join(o.get("text", "") for o in outputs)
    html = "".join(o.get("data", {}).get("text/html", "") for o in outputs)
    return text, html


def test_walkthrough_executes_and_shows_reports():
    text, html = _execute("taxi_walkthrough")
    assert "'rows_read': 3000" in text and "gate passed: True" in text and "candidate:" in text
    assert "flywheel data validation gate" in html and "flywheel model evaluation" in html


def test_continuous_training_notebook_walks_the_loop():
    text, html = _execute("continuous_training")
    assert "'span': 1, 'drift_detected': None, 'retrained': True" in text and "no baseline" in text
    assert "'span': 2, 'drift_detected': False, 'retrained': False" in text
    assert " 0 failed" in text, "every replayed request of span 3 answered"
    assert "drift detected: True" in text and "prediction drift: True" in text
    retrained = "'window': [1, 2, 3], 'drift_detected': True, 'retrained': True, 'blessed': True, 'pushed': True"
    assert retrained in text, text
    assert "'release': 'canary:50'" in text and "canary 50% of version" in text, "released as a canary"
    # Each release answered by both versions (the log's counts), then analysed: the retrained model is promoted
    # (the AUC on joined labels decides), the constant one rolled back by itself on its predictions.
    assert len(re.findall(r"answered by \(version, role\): \{\(\d+, '(?:canary|stable)'\): \d+, "
                          r"\(\d+, '(?:canary|stable)'\): \d+\}", text)) == 2, text
    assert "decision: promote - applied: promote" in text, text
    promoted, rolled_back = text.split("decision: promote - applied: promote", 1)
    assert "flywheel rollout analyze: PROMOTE candidate" in promoted and re.search(r"check auc +pass", promoted)
    assert "decision: rollback - applied: rollback" in rolled_back, text
    assert re.search(r"check constant_output +FAIL +prediction std candidate 0 ", rolled_back), text
    assert "  - constant_output: " in rolled_back and "  - prediction_drift: " in rolled_back
    assert "failed requests across the release: 0 of" in text, "no client request failed across the release"
    assert text.count("the same server process: True") == 2, "the candidate and the rollback, without a restart"
    assert re.search(r"no rollout: stable (\d+) .*\n  served by default: version \1; rolled back: \d+$",
                     rolled_back, re.M), "after the rollback: the promoted version serves, the bad one rolled back"
    lineage = text[text.index("rollouts of taxi"):]
    assert [line.split()[1] for line in lineage.splitlines()[1:]] == ["start", "promote", "start", "rollback"]
    assert html.count("flywheel rollout analysis") >= 1 and "flywheel drift report" in html
    assert "Trainer" in text and "Push" in text
    assert "WARNING" not in text and "Warning" not in text
