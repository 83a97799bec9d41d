"""The command line's discipline: one-line errors, --json is only JSON, help shows defaults and exit codes."""

from __future__ import annotations

import json
import os

import pytest

from flywheel import cli, quiet
from flywheel.api.errors import UsageError
from flywheel.api.pipeline import pipeline_config, simulate
from flywheel.cli import exits
from flywheel.cli.parser import make_parser
from flywheel.pipelines import registry
from tests.conftest import call_cli, run_cli

SUBCOMMANDS = ("run", "ingest", "monitor", "simulate", "retrain", "lineage", "compile")


def _one_line_error(result, code: int, *needles: str) -> None:
    assert result.returncode == code, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("flywheel: ") and "Traceback" not in result.stderr, result.stderr
    assert not lines[0].startswith("flywheel: flywheel:")
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_help_shows_every_option_default_and_the_exit_codes(command, capsys):
    with pytest.raises(SystemExit) as done:
        cli.main([command, "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert "exit status" in text and "\n  0  " in text and "\n  2  " in text
    parser = make_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    for action in sub._actions:
        if action.option_strings and action.dest != "help" and not action.required:
            assert "default" in (sub.formatter_class(command)._get_help_string(action)), action.dest


@pytest.mark.slow  # the flywheel command as a process
@pytest.mark.parametrize("args", [("run", "penguin"), ("retrain", "penguin", "--data", "x"),
                                  ("simulate", "penguin", "--out", "x"), ("compile", "penguin"),
                                  ("lineage", "penguin")])
def test_unknown_pipeline_is_one_line_listing_the_known_ones(args):
    """The installed entry point, one process per command: each subcommand is wired to `flywheel`."""
    _one_line_error(run_cli(*args), 2, "unknown pipeline 'penguin'", "known pipelines: taxi")


def test_registry_lookup_and_registration():
    assert registry.get("taxi").engines == ("local", "beam")
    with pytest.raises(registry.UnknownPipelineError, match="known pipelines: taxi"):
        registry.get("penguin")
    registry.register(registry.PipelineEntry(name="penguin", config="x.y", paths="x.y", runners=(), beam_args="x.y",
                                             compile="x.y", schema="x.y"))
    try:
        assert registry.names() == ("penguin", "taxi")
        with pytest.raises(UsageError, match="unknown engine 'local'"):
            pipeline_config("penguin", "out")
        with pytest.raises(ValueError, match="no data simulator"):
            simulate("penguin", "out")
    finally:
        registry._REGISTRY.pop("penguin")


@pytest.mark.parametrize("drift_from", ["5", "0", "-1"])
def test_simulate_drift_from_outside_the_spans_is_an_error(drift_from, tmp_path, capfd):
    result = call_cli(capfd, "simulate", "taxi", "--out", str(tmp_path), "--spans", "4", "--drift-from", drift_from)
    _one_line_error(result, 2, f"got {drift_from}", "expected a span number from 1 to 4, the last span this writes")
    assert not os.listdir(tmp_path)


def test_simulate_json_is_only_json(tmp_path, capfd):
    result = call_cli(capfd, "simulate", "taxi", "--out", str(tmp_path), "--spans", "2", "--drift-from", "2",
                      "--rows", "50", "--json")
    assert result.returncode == 0 and result.stderr == ""
    out = json.loads(result.stdout)
    assert out["drift_from"] == 2 and [os.path.relpath(f, tmp_path) for f in out["files"]] == [
        os.path.join("span-1", "data.csv"), os.path.join("span-2", "data.csv")]


def test_simulated_rows_carry_a_unique_trip_id_that_ingest_passes_over(tmp_path):
    import pyarrow.csv as pcsv

    from flywheel.api.ingestion import ingest  # Beam and TFX: only this test needs them
    from flywheel.pipelines.taxi import config

    files = simulate("taxi", str(tmp_path / "data"), spans=2, drift_from=2, rows=40).files
    ids = [pcsv.read_csv(f).column("trip_id").to_pylist() for f in files]
    assert ids == [[f"{span}-{row}" for row in range(40)] for span in (1, 2)]
    ingested = ingest(str(tmp_path / "data"), config.default_schema(), str(tmp_path / "out"), num_spans=2)
    assert ingested.error is None and ingested.rows_read == 80 and ingested.rows_quarantined == 0


def test_lineage_without_metadata_is_a_one_line_error(tmp_path, capfd):
    _one_line_error(call_cli(capfd, "lineage", "--output-dir", str(tmp_path)), 2, "no ML-Metadata store", str(tmp_path))
    _one_line_error(call_cli(capfd, "lineage", "taxi", "--output-dir", str(tmp_path), "--model", "v3"), 2)
    assert os.listdir(tmp_path) == [], "a lookup writes nothing"


def test_lineage_with_metadata_but_nothing_served_is_a_one_line_error(tmp_path, capfd):
    (tmp_path / "metadata.sqlite").write_bytes(b"")
    result = call_cli(capfd, "lineage", "--output-dir", str(tmp_path), "--serving-dir", str(tmp_path / "shared"))
    _one_line_error(result, 2, "no model in serving", str(tmp_path / "shared"))


@pytest.mark.parametrize("output, needle", [("spec.txt", "expected a .yaml, .yml or .json file, got '.txt'"),
                                            ("spec", "got 'no extension'"),
                                            ("blocker/spec.yaml", "found a file in its path"),
                                            ("folder.yaml", "is a folder"),
                                            ("/proc/flywheel-nope/spec.yaml", "cannot write it: No such file")])
def test_compile_to_a_bad_output_is_a_one_line_error(output, needle, tmp_path, capfd):
    (tmp_path / "blocker").write_text("")
    (tmp_path / "folder.yaml").mkdir()
    path = str(tmp_path / output)
    _one_line_error(call_cli(capfd, "compile", "taxi", "--output", path), 2, f"compile: --output {path}", needle)


def test_run_with_a_missing_data_path_is_one_line_and_prints_no_json(tmp_path, capfd):
    result = call_cli(capfd, "run", "taxi", "--data", str(tmp_path / "nope"), "--json",
                      output_dir=str(tmp_path / "out"))
    _one_line_error(result, 2, "nope")
    assert result.stdout == ""


@pytest.mark.slow  # a pipeline run (the session's local run) and the flywheel command
def test_run_json_prints_only_json_on_stdout(local_run):
    result = run_cli("run", "taxi", "--train-steps", "150", "--json", output_dir=local_run.output_dir)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["status"] == "up_to_date" and out["serving_version"] is not None
    assert out["serving_path"] == os.path.join(local_run.output_dir, "serving", "taxi", str(out["serving_version"]))


class _Exited(Exception):
    pass


def test_the_command_ends_with_os_exit_after_exit_handlers_and_flushed_output(tmp_path, monkeypatch, capsys):
    """`flywheel` (cli.run) runs the exit handlers and flushes its output, then ends the process without the
    interpreter's teardown, in which pyarrow 10's thread pools can abort a finished command (apache/arrow#34314);
    main() called in a caller's process returns as before."""
    events = []

    def exit_now(code):
        events.append(("os._exit", code))
        raise _Exited()

    monkeypatch.setattr("sys.argv", ["flywheel", "rollout", "status", "--serving-dir", str(tmp_path / "none")])
    monkeypatch.setattr(quiet.atexit, "_run_exitfuncs", lambda: events.append(("atexit", None)))
    monkeypatch.setattr(quiet.os, "_exit", exit_now)
    with pytest.raises(_Exited):
        cli.run()
    assert events == [("atexit", None), ("os._exit", exits.USAGE)]
    assert capsys.readouterr().err.startswith("flywheel: ")
    assert cli.main(["rollout", "status", "--serving-dir", str(tmp_path / "none")]) == exits.USAGE


@pytest.mark.parametrize("command", [["run", "taxi"], ["ingest", "--data", "d", "--schema", "s", "--output-dir", "o"],
                                     ["predict", "taxi", "--data", "d", "--serving-dir", "s", "--output", "o"]])
def test_beam_pipeline_args_are_split_as_a_shell_would_and_bad_quoting_is_a_usage_error(command, capsys):
    options = "--runner=flywheel.dask_runner.DaskRunner --dask_client_address='127.0.0.1:8786'"
    parsed = make_parser().parse_args([*command, "--beam-pipeline-args", options])
    assert parsed.beam_pipeline_args == ("--runner=flywheel.dask_runner.DaskRunner",
                                         "--dask_client_address=127.0.0.1:8786")
    with pytest.raises(SystemExit) as done:
        make_parser().parse_args([*command, "--beam-pipeline-args=--runner='Dask"])
    assert done.value.code == exits.USAGE
    assert "expected Beam options quoted as in a shell, got \"--runner='Dask\" (No closing quotation)" in \
        capsys.readouterr().err


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_help_shows_no_default_on_a_required_option(command):
    """`--data DATA  ... (default: none)` on an option one must give said nothing true."""
    sub = next(a for a in make_parser()._actions if a.dest == "command").choices[command]
    for action in sub._actions:
        if action.required and action.option_strings:
            assert "(default: none)" not in sub.formatter_class(command)._get_help_string(action), action.dest
