"""Every path argument of every command that can be wrong — missing, a folder for a file or a file for a folder,
empty, not what it should hold — is one line naming the argument or the file and what was expected, exit 2 (or the
command's own status for a data file it refuses), never a traceback or an empty message. Through `flywheel.cli.main`
in this process: none of these reach TensorFlow."""

from __future__ import annotations

import pytest

from tests.conftest import call_cli, shipped_data

SPANS = "components/ingest/testdata/spans"
SCHEMA = "schemas/taxi/schema.pbtxt"
NO_SERVER = "http://127.0.0.1:9/v1/models/taxi"


def _make(tmp_path, kind: str) -> str:
    """A path of the given kind: missing, folder, file (a CSV), empty (a file), garbage (a file), empty-folder."""
    path = tmp_path / f"the-{kind}"
    if kind == "folder":
        path.mkdir()
        (path / "notes").mkdir()
    elif kind == "empty-folder":
        path.mkdir()
    elif kind == "file":
        path.write_text("a,b\n1,2\n")
    elif kind == "empty":
        path.write_text("")
    elif kind == "garbage":
        path.write_bytes(b"\x00\xff not what it should be {{")
    return str(path)


# (command line with {p} for the path, kind of path, what the one line must say, exit status)
CASES = [
    # monitor
    ("monitor --baseline {p} --current " + SPANS, "missing", "monitor: input '{p}' does not exist", 2),
    ("monitor --baseline {p} --current " + SPANS, "empty-folder",
     "monitor: '{p}': expected .csv/.csv.gz/.parquet files or span-N folders, found neither", 2),
    ("monitor --baseline {p}.json --current " + SPANS, "missing", "monitor: input '{p}.json' does not exist", 2),
    ("monitor --current {p} --baseline " + SPANS, "missing", "monitor: input '{p}' does not exist", 2),
    ("monitor --baseline " + SPANS + " --current " + SPANS + " --schema {p}", "missing",
     "schema {p}: expected a file, found nothing there", 2),
    ("monitor --baseline " + SPANS + " --current " + SPANS + " --schema {p}", "folder",
     "schema {p}: expected a file, found a folder", 2),
    ("monitor --baseline " + SPANS + " --current " + SPANS + " --schema {p}", "empty",
     "schema {p}: expected a file with content, found an empty file", 2),
    ("monitor --baseline " + SPANS + " --current " + SPANS + " --schema {p}", "garbage",
     "schema {p}: expected a file of UTF-8 text", 2),
    ("monitor --baseline " + SPANS + " --current " + SPANS + " --reference-metrics {p}", "missing",
     "monitor: --reference-metrics {p}: expected a file, found nothing there", 2),
    ("monitor --baseline " + SPANS + " --current " + SPANS + " --reference-predictions {p}", "missing",
     "monitor: input '{p}' does not exist", 2),
    ("monitor --baseline " + SPANS + " --current " + SPANS + " --report {p}", "file",
     "monitor: --report {p}: expected a folder (new or existing), found a file", 2),
    ("monitor --baseline " + SPANS + " --current " + SPANS + " --save-profile {p}", "folder",
     "monitor: --save-profile {p}: expected a file to write, found a folder", 2),
    # ingest, run, retrain: data and output folders
    ("ingest --data {p} --schema " + SCHEMA + " --output-dir {p}-out", "missing", "input '{p}' does not exist", 2),
    ("ingest --data {p} --schema " + SCHEMA + " --output-dir {p}-out", "empty-folder",
     "'{p}': expected .csv/.csv.gz/.parquet files or span-N folders, found neither", 2),
    ("ingest --data " + SPANS + " --schema {p} --output-dir {p}-out", "missing",
     "schema {p}: expected a file, found nothing there", 2),
    ("ingest --data " + SPANS + " --schema " + SCHEMA + " --output-dir {p}", "file",
     "ingest: --output-dir {p}: expected a folder (new or existing), found a file", 2),
    ("run taxi --data {p}", "missing", "flywheel: run: --data {p} does not exist", 2),
    ("run taxi --output-dir {p}", "file", "--output-dir {p}: expected a folder (new or existing), found a file", 2),
    ("run taxi --output-dir {p}-out --serving-dir {p}", "file",
     "--serving-dir {p}: expected a folder (new or existing), found a file", 2),
    ("retrain taxi --data {p} --output-dir {p}-out", "missing", "flywheel: retrain: --data {p} does not exist", 2),
    ("retrain taxi --data {p} --output-dir {p}-out", "empty-folder",
     "flywheel: retrain: --data {p}: expected a folder of span-N folders (span-1/, span-2/, ... as `flywheel "
     "simulate` and `flywheel logs join` write), found none", 2),
    ("retrain taxi --data {p} --output-dir {p}-out", "folder", "retrain: --data {p}: expected a folder of span-N "
                                                               "folders", 2),
    ("retrain taxi --data {p} --output-dir {p}-out", "file", "retrain: --data {p}: expected a folder of span-N "
                                                             "folders", 2),
    ("retrain taxi --data " + SPANS + " --output-dir {p}", "file",
     "--output-dir {p}: expected a folder (new or existing), found a file", 2),
    ("simulate taxi --out {p}", "file", "simulate: --out {p}: expected a folder (new, or holding span-N folders), "
                                        "found a file", 2),
    ("lineage --output-dir {p}", "missing", "lineage: no ML-Metadata store at {p}/metadata.sqlite", 2),
    # serving and rollouts
    ("replay taxi --data {p} --url " + NO_SERVER, "missing", "replay: input '{p}' does not exist", 2),
    ("replay taxi --data {p} --url " + NO_SERVER, "empty-folder",
     "replay: '{p}': expected .csv/.csv.gz/.parquet files or span-N folders, found neither", 2),
    ("logs join --logs {p} --labels " + SPANS + " --key trip_id --output {p}-out", "missing",
     "logs join: {p} holds no span-N folders; expected a request log's folder", 2),
    ("serve --serving-dir {p}", "missing", "serve: --serving-dir {p} is not a folder", 2),
    ("serve --serving-dir {p}", "file", "serve: --serving-dir {p} is not a folder", 2),
    ("serve --serving-dir " + SPANS + " --log-dir {p}", "file",
     "serve: --log-dir {p}: expected a folder (new or existing), found a file", 2),
    ("status --serving-dir {p}", "missing", "status: --serving-dir {p}: expected a serving folder, found nothing "
                                            "there", 2),
    ("status --serving-dir {p}", "file", "status: --serving-dir {p}: expected a serving folder, found a file", 2),
    ("rollout status --serving-dir {p}", "missing", "rollout status: --serving-dir {p} is not a folder", 2),
    ("rollout analyze --serving-dir " + SPANS + " --log-dir " + SPANS + " --config {p}", "missing",
     "rollout analysis: config {p}: expected a file, found nothing there", 2),
    ("rollout analyze --serving-dir " + SPANS + " --log-dir " + SPANS + " --config {p}", "folder",
     "rollout analysis: config {p}: expected a file, found a folder", 2),
    ("rollout analyze --serving-dir " + SPANS + " --log-dir " + SPANS + " --config {p}.json", "missing",
     "rollout analysis: config {p}.json: expected a file, found nothing there", 2),
]


@pytest.mark.parametrize("line,kind,message,code", CASES, ids=[f"{c[0].split(' {p}')[0]}-{c[1]}" for c in CASES])
def test_a_bad_path_is_one_line_naming_it(tmp_path, capfd, line, kind, message, code):
    path = _make(tmp_path, kind)
    args = line.format(p=path).split()
    result = call_cli(capfd, *args)
    expected = message.format(p=path)
    assert result.returncode == code, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("flywheel: ") and expected in lines[0], result.stderr


def test_save_profile_makes_its_folder(tmp_path, capfd):
    target = tmp_path / "new" / "folder" / "profile.json"
    result = call_cli(capfd, "monitor", "--baseline", SPANS, "--current", SPANS, "--save-profile", str(target))
    assert result.returncode == 0, result.stderr
    assert target.read_text().startswith('{"format"')


@pytest.mark.parametrize("line", [
    "monitor --baseline " + SPANS + " --current " + SPANS + " --schema {p}",
    "ingest --data " + SPANS + " --schema {p} --output-dir {out}",
    "monitor --baseline " + SPANS + " --current " + SPANS + " --reference-metrics {p}",
    "rollout analyze --serving-dir " + SPANS + " --log-dir " + SPANS + " --config {p}",
])
def test_a_file_that_cannot_be_read_is_named(tmp_path, capfd, line):
    """/proc/self/mem exists and is a file, but reading it from its start fails (EIO) for every user, root too:
    the unreadable file a test run as root can make."""
    result = call_cli(capfd, *line.format(p="/proc/self/mem", out=tmp_path / "out").split())
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "/proc/self/mem: expected a file this user can read, could not read " \
                                              "it: Input/output error" in result.stderr, result.stderr


def test_a_refused_ingest_file_is_one_line_without_a_summary(tmp_path, capfd):
    """A file missing a required column: the one error line on stderr, not also `0 physical rows, 0 rows read` on
    stdout (the file has rows; none were read)."""
    header, *rows = open(shipped_data()).read().splitlines()[:50]
    path = tmp_path / "wrongcol.csv"
    path.write_text("\n".join([header.replace("fare", "fares", 1), *rows]) + "\n")
    result = call_cli(capfd, "ingest", "--data", str(path), "--schema", SCHEMA, "--output-dir", str(tmp_path / "o"))
    assert result.returncode == 1 and not result.stdout.strip(), result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"flywheel: ingest: {path}: missing required column(s) ['fare']")


@pytest.mark.parametrize("command", ["run taxi", "predict taxi --serving-dir {tmp} --output {tmp}/p"])
def test_data_errors_name_the_command_and_option(tmp_path, capfd, command):
    """`run`, `predict` said `ingest: input 'tour/spanz' does not exist`; a folder with other files deep inside is
    named by the option too."""
    name = command.split()[0]
    missing = str(tmp_path / "spanz")
    result = call_cli(capfd, *command.format(tmp=tmp_path).split(), "--data", missing)
    assert result.stderr.strip() == f"flywheel: {name}: --data {missing} does not exist", result.stderr
    (tmp_path / "x" / "cm").mkdir(parents=True)
    (tmp_path / "x" / "cm" / "build.py").write_text("x = 1\n")
    result = call_cli(capfd, *command.format(tmp=tmp_path).split(), "--data", str(tmp_path / "x"))
    assert result.returncode == 2
    assert result.stderr.startswith(f"flywheel: {name}: --data {tmp_path / 'x'}: {tmp_path / 'x' / 'cm' / 'build.py'}"
                                    ": unsupported file type"), result.stderr


def test_retrain_wants_span_folders_and_says_so(tmp_path, capfd):
    (tmp_path / "x" / "cm").mkdir(parents=True)
    (tmp_path / "x" / "cm" / "build.py").write_text("x = 1\n")
    result = call_cli(capfd, "retrain", "taxi", "--data", str(tmp_path / "x"), "--output-dir", str(tmp_path / "o"))
    assert result.returncode == 2 and "unsupported file type" not in result.stderr
    assert result.stderr.strip().startswith(f"flywheel: retrain: --data {tmp_path / 'x'}: expected a folder of "
                                            "span-N folders"), result.stderr
