"""quiet.install's handlers follow the process's current stdout/stderr (a notebook or test harness swaps them)."""

from __future__ import annotations

import io
import logging
import sys

from flywheel import quiet


def test_progress_and_error_lines_follow_a_swapped_stream_and_never_write_to_a_closed_one(monkeypatch):
    first_out, first_err = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stdout", first_out)
    monkeypatch.setattr(sys, "stderr", first_err)
    to_stdout = quiet.install(verbose=False)
    to_stderr = quiet.ProgressHandler(sys.stderr)
    fixed = io.StringIO()
    to_file = quiet.ProgressHandler(fixed)
    absl = logging.getLogger("absl")
    try:
        absl.addHandler(to_stderr)
        absl.addHandler(to_file)
        absl.info("Component Ingest is running.")
        first_out.close()
        first_err.close()
        later_out, later_err = io.StringIO(), io.StringIO()
        monkeypatch.setattr(sys, "stdout", later_out)
        monkeypatch.setattr(sys, "stderr", later_err)
        absl.info("Component Ingest is finished.")
        absl.error("the store is gone")
    finally:
        for handler in (to_stdout, to_stderr, to_file):
            absl.removeHandler(handler)
        quiet.install(verbose=False)  # the handlers again, now on pytest's own streams
    assert later_out.getvalue().startswith("  ✓ Ingest ")
    assert later_err.getvalue().startswith("  ✓ Ingest ") and "ERROR: the store is gone\n" in later_err.getvalue()
    assert fixed.getvalue().startswith("  ▶ Ingest ...\n  ✓ Ingest "), "a stream given by the caller stays"
