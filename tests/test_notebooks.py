"""The walkthrough notebook runs top to bottom, and its .ipynb is in sync with the .py it is paired with."""

from __future__ import annotations

import os

import jupytext
import nbformat
from nbclient import NotebookClient

from tests.conftest import REPO

NOTEBOOKS = os.path.join(REPO, "notebooks")


def _sources(nb) -> list[str]:
    return [c.source.strip() for c in nb.cells]


def test_ipynb_is_paired_with_py():
    py = jupytext.read(os.path.join(NOTEBOOKS, "taxi_walkthrough.py"))
    ipynb = nbformat.read(os.path.join(NOTEBOOKS, "taxi_walkthrough.ipynb"), as_version=4)
    assert _sources(py) == _sources(ipynb), "run: jupytext --sync notebooks/taxi_walkthrough.py"


def test_walkthrough_executes_and_shows_reports():
    nb = nbformat.read(os.path.join(NOTEBOOKS, "taxi_walkthrough.ipynb"), as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": REPO}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    text = "".join(o.get("text", "") for o in outputs)
    html = "".join(o.get("data", {}).get("text/html", "") for o in outputs)
    assert "'rows_read': 3000" in text and "gate passed: True" in text and "candidate:" in text
    assert "flywheel data validation gate" in html and "flywheel model evaluation" in html
