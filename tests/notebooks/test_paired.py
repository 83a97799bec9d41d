"""Each notebook's .ipynb is in sync with the .py it is paired with (tests/e2e/test_notebooks.py runs them)."""

from __future__ import annotations

import os

import jupytext
import nbformat
import pytest

from tests.conftest import REPO

NOTEBOOKS = os.path.join(REPO, "notebooks")


def _sources(nb) -> list[str]:
    return [c.source.strip() for c in nb.cells]


@pytest.mark.parametrize("name", ["taxi_walkthrough", "continuous_training"])
def test_ipynb_is_paired_with_py(name):
    py = jupytext.read(os.path.join(NOTEBOOKS, f"{name}.py"))
    ipynb = nbformat.read(os.path.join(NOTEBOOKS, f"{name}.ipynb"), as_version=4)
    assert _sources(py) == _sources(ipynb), f"run: jupytext --sync notebooks/{name}.py"
