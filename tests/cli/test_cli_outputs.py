"""Every folder a command creates (--output-dir, --out, --output, --report, --log-dir, ...) that cannot be made —
a file in its path, or a place where no folder can be made (/proc) — is one line naming the command and the
option, exit 2, never a traceback. Through `flywheel.cli.main` in this process: none reach TensorFlow."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.cli.test_cli import _one_line_error
from tests.conftest import call_cli

SPANS = "components/ingest/testdata/spans"
SCHEMA = "schemas/taxi/schema.pbtxt"

# (command line with {p} for the folder, the one line's start)
CASES = [
    ("run taxi --output-dir {p}", "run: --output-dir {p}"),
    ("run taxi --output-dir {tmp}/out --serving-dir {p}", "run: --serving-dir {p}"),
    ("retrain taxi --data " + SPANS + " --output-dir {p}", "retrain: --output-dir {p}"),
    ("ingest --data " + SPANS + " --schema " + SCHEMA + " --output-dir {p}", "ingest: --output-dir {p}"),
    ("simulate taxi --out {p} --spans 1 --rows 10", "simulate: --out {p}"),
    ("logs join --logs " + SPANS + " --labels " + SPANS + " --key trip_id --output {p}", "logs join: --output {p}"),
    ("monitor --baseline " + SPANS + " --current " + SPANS + " --report {p}", "monitor: --report {p}"),
    ("monitor --baseline " + SPANS + " --current " + SPANS + " --save-profile {p}/profile.json",
     "monitor: --save-profile's folder {p}"),
    ("serve --serving-dir " + SPANS + " --log-dir {p}", "serve: --log-dir {p}"),
    ("rollout manifests --serving-dir " + SPANS + " --output {p}", "rollout manifests: --output {p}"),
]


@pytest.mark.parametrize("line,start", CASES, ids=[c[1].split(" {p}")[0] for c in CASES])
@pytest.mark.parametrize("where", ["proc", "under-a-file"])
def test_a_folder_that_cannot_be_made_is_one_line_naming_command_and_option(tmp_path, capfd, line, start, where):
    if where == "proc":  # /proc takes no new folder, for any user (root too): mkdir fails with ENOENT
        path = "/proc/flywheel-nope"
        what = f"expected a folder (new or existing), but making {path} failed: No such file or directory"
    else:
        (tmp_path / "a-file").write_text("x\n")
        path, what = str(tmp_path / "a-file" / "out"), f"found a file in its path: {tmp_path / 'a-file'}"
    result = call_cli(capfd, *line.format(p=path, tmp=tmp_path).split())
    _one_line_error(result, 2, "flywheel: " + start.format(p=path) + ": ", what)
    assert not result.stdout.strip()


def test_the_check_leaves_no_folder_behind(tmp_path, capfd):
    """The folder is made to see that it can be, then removed: a command refused for another reason (here an
    unknown drift span) leaves nothing."""
    out = tmp_path / "new" / "spans"
    result = call_cli(capfd, "simulate", "taxi", "--out", str(out), "--spans", "1", "--drift-from", "9")
    assert result.returncode == 2, result.stderr
    assert not os.path.exists(tmp_path / "new")


def test_replay_says_connection_refused_in_words_naming_the_url(capfd):
    url = "http://127.0.0.1:9/v1/models/taxi"
    result = call_cli(capfd, "replay", "taxi", "--data", SPANS, "--url", url, "--wait", "0")
    _one_line_error(result, 2, f"nothing answers at {url}", ": connection refused;")
    assert "Errno" not in result.stderr


def test_predict_refuses_a_non_empty_output_before_importing_beam_or_tensorflow(tmp_path):
    """`flywheel predict --output <a folder with files>` took 4-7 s to refuse (its handler imports Beam and
    TensorFlow first): the check comes first, and neither is imported."""
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "earlier.parquet").write_text("x")
    code = ("import json, sys; from flywheel import cli; "
            f"code = cli.main(['predict', 'taxi', '--data', {SPANS!r}, '--serving-dir', {str(tmp_path)!r}, "
            f"'--output', {str(tmp_path / 'out')!r}]); "
            "print(json.dumps([code, sorted(m for m in sys.modules if m.split('.')[0] in "
            "('tensorflow', 'apache_beam'))]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    code, imported = json.loads(done.stdout.strip().splitlines()[-1])
    assert code == 2 and imported == [], (code, imported)
    assert done.stderr.strip() == (f"flywheel: predict: --output {tmp_path / 'out'} already exists and is not an "
                                   "empty folder; give a new folder (earlier predictions would mix with these)")
