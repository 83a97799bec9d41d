"""The package's shape, read from its imports: one direction between layers, no circles, lazy imports only of
heavy packages and each saying why.

Layers, bottom to top (README, "Layout"): libraries (flywheel.*: storage, data, monitoring, store, reports,
metadata, rollout, server, traffic, batch, ...) -> components (TFX components) -> pipelines and jobs -> the
library API (flywheel.api) -> the command line (flywheel.cli). A module imports only from its own layer or
the ones below it.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys

from tests.conftest import REPO

ROOTS = {"flywheel": "flywheel", "components": "flywheel.components", "pipelines": "flywheel.pipelines",
         "schemas": "flywheel.schemas"}
LAYERS = ("library", "component", "job", "api", "cli")
# Third-party packages heavy enough to import only when a function needs them (seconds or hundreds of MB).
HEAVY = {"tensorflow", "tfx", "tfx_bsl", "apache_beam", "tensorflow_data_validation", "tensorflow_model_analysis",
         "tensorflow_transform", "tensorflow_serving", "ml_metadata", "kfp", "pyarrow", "pandas", "numpy", "uvicorn",
         "starlette", "httpx", "prometheus_client", "google", "tf_keras", "keras", "nbclient", "jupytext", "IPython"}


def layer(module: str) -> str:
    if module == "flywheel.cli" or module.startswith("flywheel.cli."):
        return "cli"
    if module in ("flywheel", "flywheel.api") or module.startswith("flywheel.api."):
        return "api"
    if module.startswith("flywheel.pipelines") or module == "flywheel.kfp_executor":
        return "job"
    if module.startswith("flywheel.components"):
        return "component"
    return "library"


def modules() -> dict[str, str]:
    found = {}
    for folder, package in ROOTS.items():
        for dirpath, dirnames, filenames in os.walk(os.path.join(REPO, folder)):
            dirnames[:] = [d for d in dirnames if d not in ("__pycache__", "testdata")]
            for name in filenames:
                if name.endswith(".py"):
                    rel = os.path.relpath(os.path.join(dirpath, name), os.path.join(REPO, folder))
                    parts = rel[:-3].split(os.sep)
                    if parts[-1] == "__init__":
                        parts = parts[:-1]
                    found[".".join([package, *parts]) if parts else package] = os.path.join(dirpath, name)
    return found


MODULES = modules()


def imported(node: ast.AST) -> list[str]:
    """The flywheel modules (or packages) one import statement loads."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names if alias.name.split(".")[0] == "flywheel"]
    if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "flywheel":
        names = [f"{node.module}.{alias.name}" for alias in node.names]
        return [name if name in MODULES else node.module for name in names]
    return []


def imports_of(path: str) -> list[tuple[ast.AST, bool]]:
    """Every import statement of a file, with whether it sits inside a function."""
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found.append((child, in_function))
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)))

    visit(tree, False)
    return found


def graph() -> dict[str, set[str]]:
    return {module: {target for node, _ in imports_of(path) for target in imported(node) if target != module}
            for module, path in MODULES.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each a circle of imports."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(edges):
        if v not in index:
            connect(v)
    return found


def test_imports_only_go_down_the_layers():
    upward = [f"{module} ({layer(module)}) imports {target} ({layer(target)})"
              for module, targets in graph().items() for target in sorted(targets)
              if LAYERS.index(layer(target)) > LAYERS.index(layer(module))
              and not (module == "flywheel" and target == "flywheel.api")]
    assert upward == []


def test_there_is_no_import_circle():
    assert cycles(graph()) == []


def test_a_circle_is_found():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_lazy_imports_are_of_heavy_packages_and_say_why():
    wrong = []
    for module, path in MODULES.items():
        lines = open(path, encoding="utf-8").read().splitlines()
        for node, in_function in imports_of(path):
            if not in_function:
                continue
            names = [node.module] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            tops = {(name or "").split(".")[0] for name in names}
            where = f"{os.path.relpath(path, REPO)}:{node.lineno}"
            if module == "flywheel" and tops == {"flywheel"}:
                continue  # the package's __getattr__: the public API loads on first use
            if not tops <= HEAVY:
                wrong.append(f"{where}: {', '.join(sorted(tops))} is imported inside a function")
            elif not any("#" in lines[i] for i in range(max(0, node.lineno - 2), node.end_lineno)):
                wrong.append(f"{where}: a lazy import of {', '.join(sorted(tops))} without a comment saying why")
    assert wrong == []


def test_importing_a_library_or_a_component_does_not_load_the_api():
    """One fresh interpreter imports each module in turn (the lightest first) and says, after each, whether the API
    or the command line has been loaded."""
    modules = ["flywheel.reports.html_report", "flywheel.server.server", "flywheel.components.ingest.component",
               "flywheel.components.push.executor"]
    code = ("import importlib, sys\n"
            f"for name in {modules!r}:\n"
            "    importlib.import_module(name)\n"
            "    print(name, any(m in sys.modules for m in ('flywheel.api', 'flywheel.cli')))\n")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert loaded.stdout.split() == [word for name in modules for word in (name, "False")]
