"""The walkthrough notebook runs top to bottom, and its .ipynb is in sync with the .py it is paired with."""

from __future__ import annotations

import os

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
    assert "the same server process: True" in text
    assert "flywheel drift report" in html and "Trainer" in text and "Push" in text
    assert "WARNING" not in text and "Warning" not in text
