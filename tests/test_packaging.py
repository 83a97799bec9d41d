"""flywheel installs under one import name: nothing called components/pipelines/schemas lands in site-packages."""

from __future__ import annotations

import ast
import glob
import os
import subprocess
import sys
import zipfile

import pytest

from tests.conftest import REPO

BARE = ("components", "pipelines", "schemas")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", REPO, "-w",
                    str(out)], check=True, capture_output=True, cwd=str(out))
    (path,) = glob.glob(str(out / "*.whl"))
    return zipfile.ZipFile(path)


def test_wheel_has_only_the_flywheel_package_at_top_level(wheel):
    names = wheel.namelist()
    assert {n.split("/")[0] for n in names} == {"flywheel", "tfx_flywheel-0.1.0.dist-info"}
    for package in BARE:
        assert f"flywheel/{package}/__init__.py" in names
    assert "flywheel/schemas/taxi/schema.pbtxt" in names
    assert "flywheel/components/ingest/README.md" in names
    for folder, _, files in os.walk(os.path.join(REPO, "flywheel")):  # every subpackage of flywheel/ too
        if "__init__.py" in files:
            assert os.path.relpath(os.path.join(folder, "__init__.py"), REPO) in names, folder
    assert "flywheel/batch/predict.py" in names
    entry_points = wheel.read("tfx_flywheel-0.1.0.dist-info/entry_points.txt").decode()
    assert "flywheel = flywheel.cli:run" in entry_points


def test_a_users_own_components_and_pipelines_packages_do_not_collide(tmp_path):
    for package in ("components", "pipelines"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text(f"OWNER = 'user {package}'\n")
    code = ("import components, pipelines; import flywheel.data.parsing as p; "
            "from flywheel.pipelines.taxi import config; "
            "print(components.OWNER, pipelines.OWNER, p.__name__, config.PIPELINE_NAME)")
    out = subprocess.run([sys.executable, "-c", code], cwd=str(tmp_path), capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["user", "components", "user", "pipelines",
                                  "flywheel.data.parsing", "taxi"]


def _python_files() -> list[str]:
    roots = ["flywheel", *BARE, "tests", "benchmarks", "notebooks", "kubeflow"]
    return [p for r in roots for p in glob.glob(os.path.join(REPO, r, "**", "*.py"), recursive=True)]


def test_nothing_imports_a_bare_components_or_pipelines_package():
    offenders = []
    for path in _python_files():
        tree = ast.parse(open(path, encoding="utf-8").read(), path)
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            offenders += [f"{os.path.relpath(path, REPO)}:{node.lineno} {n}" for n in names
                          if n.split(".")[0] in BARE]
    assert offenders == []


def test_compiled_kubeflow_spec_names_flywheel_executors_only():
    spec = open(os.path.join(REPO, "kubeflow", "taxi_pipeline.yaml"), encoding="utf-8").read()
    assert "flywheel.components.ingest.executor.Executor" in spec
    for package in BARE:
        assert f"- {package}." not in spec and f": {package}." not in spec
