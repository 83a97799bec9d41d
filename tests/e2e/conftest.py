"""The end-to-end lane: whole pipeline runs, the continuous-training scenario, the notebooks, the TFX CLI and the
compiled Kubeflow spec's nights. Every test collected here is marked `e2e` (`pytest -m "not e2e"` leaves them out)."""

from __future__ import annotations

import os

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


def pytest_collection_modifyitems(config, items):
    for item in items:
        if str(item.path).startswith(HERE + os.sep):
            item.add_marker(pytest.mark.e2e)


def execute_notebook(name: str, env: dict | None = None, then: str = "") -> tuple[str, str]:
    """notebooks/<name>.ipynb run top to bottom in a fresh kernel started from the repository root (its
    environment: this one's, updated with `env`), followed by the code `then` (the tests' own, to record what the
    notebook computed); the text and the HTML the notebook's cells showed."""
    import nbformat
    from nbclient import NotebookClient

    from tests.conftest import REPO

    nb = nbformat.read(os.path.join(REPO, "notebooks", f"{name}.ipynb"), as_version=4)
    shown = len(nb.cells)
    if then:
        nb.cells.append(nbformat.v4.new_code_cell(then))
    NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": REPO}}).execute(
        env={**os.environ, **(env or {})})
    outputs = [o for c in nb.cells[:shown] if c.cell_type == "code" for o in c.get("outputs", [])]
    text = "".join(o.get("text", "") for o in outputs)
    html = "".join(o.get("data", {}).get("text/html", "") for o in outputs)
    return text, html
