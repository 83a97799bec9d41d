"""`flywheel status`: what serves now, read from a real serving folder (versions Push published, a rollout)."""

from __future__ import annotations

import json
import os

from flywheel.api.rollout import rollout_promote, rollout_start
from tests.conftest import call_cli
from tests.server.conftest import MODEL, add_version


def test_status_lists_versions_with_roles_records_and_the_rollout(serving_dir, capfd):
    add_version(serving_dir, os.path.join(serving_dir, MODEL, "1"), 2)
    add_version(serving_dir, os.path.join(serving_dir, MODEL, "1"), 3)
    os.remove(os.path.join(serving_dir, MODEL, "3", "push.json"))
    before = call_cli(capfd, "status", "--serving-dir", serving_dir).stdout.splitlines()
    assert "  version 3: serves by default (the newest version)" in before, "a role after a colon, no nested ()"
    rollout_start(serving_dir, MODEL, version=2, mode="canary", percent=25.0, reason="try it")
    text = call_cli(capfd, "status", "--serving-dir", serving_dir)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0] == (f"flywheel status: {MODEL} in {serving_dir}: version 3 serves by default; canary 25% of "
                        f"version 2 against stable 3, started " + lines[0].rsplit("started ", 1)[1])
    assert "  version 2: canary, 25% of requests" in lines and "  version 3: stable, serves by default" in lines
    assert "  version 1" in lines, "a version with no role is listed, without one"
    assert "    no push.json: not published by flywheel's Push" in lines
    assert lines[-1].startswith("  last rollout decision: start version 2 at ") and lines[-1].endswith(": try it")
    out = json.loads(call_cli(capfd, "status", "--serving-dir", serving_dir, "--json").stdout)
    first = out["versions"][0]
    manifest = json.loads(open(os.path.join(serving_dir, MODEL, "1", "push.json")).read())
    assert first["auc"] == manifest["metrics"]["auc"] and first["spans"] == manifest["spans"]
    assert first["baseline_profile"] == os.path.join(serving_dir, MODEL, "1", "baseline_profile.json")
    assert first["evaluation_report"] == os.path.join(manifest["evaluation_uri"], "report.html")
    assert os.path.isfile(first["evaluation_report"])
    assert out["rollout"]["running"] is True and out["serving_version"] == 3 and out["server"] is None


def test_status_of_a_folder_that_is_not_one(tmp_path, capfd):
    for path, found in ((tmp_path / "nope", "nothing there"), (tmp_path / "file", "a file")):
        if found == "a file":
            path.write_text("x")
        result = call_cli(capfd, "status", "--serving-dir", str(path))
        assert result.returncode == 2 and result.stderr == (f"flywheel: status: --serving-dir {path}: expected a "
                                                            f"serving folder, found {found}\n")


def test_monitor_takes_a_models_folder_in_serving_as_its_baseline(serving_dir, capfd):
    """`--baseline <serving>/<model>`: the training profile of the version served by default, with its schema."""
    add_version(serving_dir, os.path.join(serving_dir, MODEL, "1"), 2)
    rollout_start(serving_dir, MODEL, version=1, mode="shadow")  # stable: 2, the newest
    rollout_promote(serving_dir, MODEL)  # stable: 1, while 2 is the newest
    result = call_cli(capfd, "monitor", "--baseline", os.path.join(serving_dir, MODEL), "--current",
                      "components/ingest/testdata/spans/span-1")
    assert result.returncode in (0, 1), result.stderr
    profile = os.path.join(serving_dir, MODEL, "1", "baseline_profile.json")
    assert f"  baseline: {profile}, the training profile of version 1, which {MODEL} serves by default" in \
        result.stdout.splitlines(), result.stdout
    assert "  schema: " in result.stdout and "prediction drift not checked" in result.stdout
