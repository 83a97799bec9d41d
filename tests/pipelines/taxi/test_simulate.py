"""`flywheel simulate`: spans of taxi trips, the same for the same seed, appended after the spans already there."""

from __future__ import annotations

from flywheel.pipelines.taxi.config import shipped_data
from tests.conftest import call_cli


def test_simulator_is_deterministic(tmp_path, capfd):
    for name in ("a", "b"):
        assert call_cli(capfd, "simulate", "taxi", "--out", str(tmp_path / name), "--spans", "2", "--drift-from", "2",
                       "--rows", "300", "--seed", "3").returncode == 0
    for span in (1, 2):
        a = (tmp_path / "a" / f"span-{span}" / "data.csv").read_bytes()
        assert a == (tmp_path / "b" / f"span-{span}" / "data.csv").read_bytes()


def test_simulate_appends_after_the_spans_already_there_and_overwrites_nothing(tmp_path, capfd):
    one_call, two_calls = tmp_path / "one", tmp_path / "two"
    assert call_cli(capfd, "simulate", "taxi", "--out", str(one_call), "--spans", "3", "--drift-from", "3", "--rows",
                    "200").returncode == 0
    first = call_cli(capfd, "simulate", "taxi", "--out", str(two_calls), "--spans", "2", "--rows", "200")
    assert first.stdout == f"flywheel simulate: 2 span(s) of 200 rows in {two_calls} (span-1, span-2); no drift\n"
    kept = (two_calls / "span-1" / "data.csv").stat().st_mtime_ns
    second = call_cli(capfd, "simulate", "taxi", "--out", str(two_calls), "--spans", "1", "--drift-from", "3",
                      "--rows", "200")
    assert second.stdout == f"flywheel simulate: 1 span(s) of 200 rows in {two_calls} (span-3); drift from span 3\n"
    assert (two_calls / "span-1" / "data.csv").stat().st_mtime_ns == kept, "nothing already there is rewritten"
    for span in (1, 2, 3):
        assert (one_call / f"span-{span}" / "data.csv").read_bytes() == \
            (two_calls / f"span-{span}" / "data.csv").read_bytes(), "two calls write what one call writes"
    late = call_cli(capfd, "simulate", "taxi", "--out", str(two_calls), "--spans", "1", "--drift-from", "9")
    assert late.returncode == 2 and late.stderr == (
        "flywheel: simulate: --drift-from: expected a span number from 1 to 4, the last span this writes (after the "
        f"span-1 to span-3 already in {two_calls}), got 9\n")
    (tmp_path / "file").write_text("x")
    on_file = call_cli(capfd, "simulate", "taxi", "--out", str(tmp_path / "file"))
    assert on_file.returncode == 2 and on_file.stderr == (f"flywheel: simulate: --out {tmp_path / 'file'}: expected a "
                                                          "folder (new, or holding span-N folders), found a file\n")


def test_files_split_a_span_in_order_and_leave_its_rows_unchanged(tmp_path, capfd):
    assert call_cli(capfd, "simulate", "taxi", "--out", str(tmp_path / "one"), "--spans", "2", "--drift-from", "2",
                    "--rows", "1001", "--seed", "4").returncode == 0
    split = call_cli(capfd, "simulate", "taxi", "--out", str(tmp_path / "three"), "--spans", "2", "--drift-from", "2",
                     "--rows", "1001", "--seed", "4", "--files", "3")
    assert split.returncode == 0
    assert split.stdout == f"flywheel simulate: 2 span(s) of 1,001 rows in {tmp_path / 'three'} (span-1, span-2); " \
                           "drift from span 2\n"
    for span in (1, 2):
        whole = (tmp_path / "one" / f"span-{span}" / "data.csv").read_text().splitlines()
        names = sorted(p.name for p in (tmp_path / "three" / f"span-{span}").iterdir())
        assert names == [f"part-0000{k}-of-00003.csv" for k in range(3)]
        parts = [(tmp_path / "three" / f"span-{span}" / name).read_text().splitlines() for name in names]
        assert [len(p) - 1 for p in parts] == [333, 334, 334]
        assert all(p[0] == whole[0] for p in parts), "each file has the header"
        assert [line for p in parts for line in p[1:]] == whole[1:]
    too_many = call_cli(capfd, "simulate", "taxi", "--out", str(tmp_path / "x"), "--rows", "2", "--files", "3")
    assert too_many.returncode == 2
    assert too_many.stderr == "flywheel: simulate: --files: expected 1 to --rows (2) files per span, got 3\n"


def test_the_header_names_the_columns_unquoted_as_the_shipped_file_does(tmp_path, capfd):
    """Stock CsvExampleGen keeps a quoted header's quotes in its feature names: a simulated span must read as the
    shipped CSV does."""
    assert call_cli(capfd, "simulate", "taxi", "--out", str(tmp_path), "--spans", "1", "--rows", "50").returncode == 0
    header = (tmp_path / "span-1" / "data.csv").read_text().splitlines()[0]
    with open(shipped_data()) as f:
        shipped = f.readline().strip().split(",")
    assert header.split(",") == ["trip_id", *shipped]
