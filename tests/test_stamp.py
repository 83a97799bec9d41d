"""The up-to-date stamp never says "nothing to do" when something that decides a run's outputs changed."""

from __future__ import annotations

import json
import os
import shutil

import pytest

import flywheel
import flywheel.api.pipeline
import flywheel.api.retraining
from flywheel import lock, retraining
from flywheel.api.pipeline import FINISHED, RunResult, pipeline_config
from flywheel.cli.pipeline import run_lines
from flywheel.pipelines import stamp

DATA = "trip_miles,fare\n1.5,7.25\n2.0,9.5\n"


def _served(serving_dir, version: int) -> str:
    path = os.path.join(serving_dir, "taxi", str(version))
    os.makedirs(path)
    with open(os.path.join(path, "push.json"), "w") as f:
        json.dump({"version": version}, f)
    with open(os.path.join(path, "saved_model.pb"), "wb"):
        pass  # a version is complete with its manifest and saved_model.pb
    return path


def _args(**changes):
    base = {"config": {"train_steps": 100, "span": -1}, "data_fingerprint": "abc", "engine": "local",
            "serving_version": 7}
    return {**base, **changes}


@pytest.mark.parametrize("changes", [
    {"data_fingerprint": "abd"},
    {"config": {"train_steps": 101, "span": -1}},
    {"engine": "beam"},
    {"serving_version": 8},
    {"serving_version": None},
], ids=["data", "config", "engine", "serving-version-pushed", "serving-version-removed"])
def test_any_changed_input_changes_the_stamp(changes):
    assert stamp.compute(**_args()) == stamp.compute(**_args())
    assert stamp.compute(**_args(**changes)) != stamp.compute(**_args())


@pytest.mark.parametrize("package", stamp.STACK)
def test_a_different_stack_version_changes_the_stamp(package, monkeypatch):
    before = stamp.compute(**_args())
    real = stamp.metadata.version
    monkeypatch.setattr(stamp.metadata, "version", lambda name: "0.0.1" if name == package else real(name))
    assert stamp.stack_versions()[package] == "0.0.1"
    assert stamp.compute(**_args()) != before


def test_stack_versions_are_the_installed_ones_without_importing_them():
    import subprocess
    import sys

    code = ("import sys, json; from flywheel.pipelines import stamp; v = stamp.stack_versions(); "
            "print(json.dumps([v, sorted(m for m in sys.modules if m.split('.')[0] in "
            "('tensorflow', 'tfx', 'apache_beam', 'tensorflow_model_analysis'))]))")
    versions, imported = json.loads(subprocess.check_output([sys.executable, "-c", code], text=True))
    assert imported == []
    assert versions["tfx"] == "1.16.0" and versions["tensorflow"].startswith("2.16")
    assert all(versions[p] != "absent" for p in stamp.STACK)


def test_edited_code_changes_the_stamp(tmp_path, monkeypatch):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "model.py").write_text("UNITS = 16\n")
    monkeypatch.setattr(stamp, "_package_dirs", lambda: [str(package)])
    before = stamp.compute(**_args())
    (package / "model.py").write_text("UNITS = 32\n")
    assert stamp.compute(**_args()) != before
    (package / "__pycache__").mkdir()
    (package / "__pycache__" / "model.json").write_text("{}")
    after = stamp.compute(**_args())
    (package / "__pycache__" / "model.json").write_text("{1}")
    assert stamp.compute(**_args()) == after, "caches are not code"


def test_code_digest_covers_every_flywheel_package():
    roots = {os.path.basename(os.path.realpath(d)) for d in stamp._package_dirs()}
    assert {"components", "pipelines", "schemas"} <= roots and len(stamp._package_dirs()) == 4


def test_deleted_outputs_invalidate_a_saved_stamp(tmp_path):
    outputs = [tmp_path / "metadata.sqlite", tmp_path / "pipeline" / "Trainer" / "model" / "6"]
    outputs[0].write_text("")
    outputs[1].mkdir(parents=True)
    value = stamp.compute(**_args())
    stamp.save(str(tmp_path), value, {"status": "finished"}, [str(p) for p in outputs])
    assert stamp.still_valid(stamp.load(str(tmp_path)), value)
    assert not stamp.still_valid(stamp.load(str(tmp_path)), stamp.compute(**_args(serving_version=8)))
    shutil.rmtree(outputs[1])
    assert not stamp.still_valid(stamp.load(str(tmp_path)), value)


def test_a_truncated_stamp_is_no_stamp(tmp_path):
    stamp.save(str(tmp_path), "x", {}, [])
    path = tmp_path / stamp.STAMP_FILE
    path.write_text(path.read_text()[:10])
    assert stamp.load(str(tmp_path)) is None


# ---- the stamp in run_pipeline's orchestration (the pipeline run itself replaced by a recorded result) ----------

@pytest.fixture
def setup(tmp_path, monkeypatch):
    data = tmp_path / "data.csv"
    data.write_text(DATA)
    cfg = pipeline_config("taxi", str(tmp_path / "out"), data=str(data))
    runs = []

    def fake_execute(cfg, pipeline, engine, runner, resolved, progress, verbose):
        with pytest.raises(lock.LockedError):  # the run happens while this process holds the lock
            with lock.exclusive(cfg.paths.output_dir):
                pass
        runs.append(resolved.fingerprint)
        os.makedirs(os.path.dirname(cfg.paths.metadata_path), exist_ok=True)
        open(cfg.paths.metadata_path, "a").close()
        return RunResult(pipeline=pipeline, engine=engine, status=FINISHED, output_dir=cfg.paths.output_dir,
                         metadata=cfg.paths.metadata_path, pipeline_root=cfg.paths.pipeline_root,
                         serving_dir=cfg.paths.serving_dir, finished_at="2026-01-01T00:00:00", serving_path=None)

    monkeypatch.setattr(flywheel.api.pipeline, "execute_run", fake_execute)
    monkeypatch.setattr(flywheel.api.retraining, "execute_run", fake_execute)
    return {"cfg": cfg, "runs": runs, "data": data}


def test_unchanged_rerun_is_answered_from_the_stamp(setup):
    first = flywheel.run_pipeline(setup["cfg"])
    again = flywheel.run_pipeline(setup["cfg"])
    assert first.status == "finished" and again.status == "up_to_date" and len(setup["runs"]) == 1
    assert "Nothing to do" in run_lines(again)[0]


def test_the_stamp_is_saved_while_the_lock_is_held(setup, monkeypatch):
    real_save = stamp.save
    held = []

    def save(output_dir, *args):
        try:
            with lock.exclusive(output_dir):
                held.append(False)
        except lock.LockedError:
            held.append(True)
        real_save(output_dir, *args)

    monkeypatch.setattr(stamp, "save", save)
    flywheel.run_pipeline(setup["cfg"])
    assert held == [True]


@pytest.mark.parametrize("change", ["data", "push-by-another-process", "version-removed", "metadata-deleted"])
def test_a_changed_input_or_output_runs_again(setup, change):
    cfg = setup["cfg"]
    serving_dir = cfg.paths.serving_dir
    if change == "version-removed":
        _served(serving_dir, 1)
        _served(serving_dir, 2)
    flywheel.run_pipeline(cfg)
    if change == "data":
        setup["data"].write_text(DATA + "3.0,11.0\n")
    elif change == "push-by-another-process":
        _served(serving_dir, 3)
    elif change == "version-removed":
        shutil.rmtree(os.path.join(serving_dir, "taxi", "2"))
    else:
        os.remove(cfg.paths.metadata_path)
    assert flywheel.run_pipeline(cfg).status == "finished" and len(setup["runs"]) == 2


def test_a_retrain_that_runs_the_pipeline_clears_the_run_stamp(setup, tmp_path, monkeypatch):
    cfg = setup["cfg"]
    flywheel.run_pipeline(cfg)
    assert stamp.load(cfg.paths.output_dir) is not None
    spans = tmp_path / "spans" / "span-1"
    spans.mkdir(parents=True)
    (spans / "data.csv").write_text(DATA)
    planned = retraining.RetrainPlan(1, (1,), "/serving/taxi/3/baseline_profile.json", 3,
                                     {"drift_detected": True, "reason": "fare"})
    monkeypatch.setattr(flywheel.api.retraining, "plan", lambda *a, **kw: planned)
    monkeypatch.setattr(flywheel.api.retraining, "summary_from_records",
                        lambda *a: {"retrained": True, "blessed": True, "pushed": True, "model_version": 4})
    result = flywheel.retrain("taxi", str(tmp_path / "spans"), cfg.paths.output_dir, if_drift=True)
    assert result.retrained and result.model_version == 4 and result.previous_version == 3
    assert stamp.load(cfg.paths.output_dir) is None
    assert flywheel.run_pipeline(cfg).status == "finished" and len(setup["runs"]) == 3


def test_serving_dir_defaults_under_the_output_dir_and_can_be_shared(tmp_path, monkeypatch):
    from flywheel.pipelines.taxi import local_runner

    default = pipeline_config("taxi", str(tmp_path / "a"), data=str(tmp_path))
    shared = pipeline_config("taxi", str(tmp_path / "b"), data=str(tmp_path), serving_dir=str(tmp_path / "srv"))
    assert default.paths.serving_dir == str(tmp_path / "a" / "serving")
    assert shared.paths.serving_dir == str(tmp_path / "srv") and shared.paths.output_dir == str(tmp_path / "b")
    monkeypatch.setenv("FLYWHEEL_SERVING_DIR", str(tmp_path / "srv"))
    assert local_runner.config_from_env().paths.serving_dir == str(tmp_path / "srv")
