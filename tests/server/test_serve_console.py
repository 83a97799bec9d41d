"""What `flywheel serve` tells its user, as a real process: errors first, a line per event, `ready` only once it
answers, and a replay started with the server (as `flywheel serve ... &` then `flywheel replay`) waits for it."""

from __future__ import annotations

import queue
import signal
import socket
import subprocess
import threading
import time

import httpx
import pytest

from flywheel.api.rollout import rollout_rollback, rollout_start
from tests.conftest import FLYWHEEL, REPO, call_cli
from tests.server.conftest import MODEL, add_version

DEADLINE = 180.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Lines:
    """A process's stderr lines as they come, waited for with a deadline."""

    def __init__(self, stream):
        self.seen: list[str] = []
        self._queue: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream) -> None:
        for line in stream:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, text: str, deadline: float = DEADLINE) -> str:
        end = time.monotonic() + deadline
        while True:
            try:
                line = self._queue.get(timeout=max(0.0, end - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no line with {text!r} within {deadline:g} s; seen: {self.seen}") from None
            if line is None:
                raise AssertionError(f"the process ended without a line with {text!r}; seen: {self.seen}")
            self.seen.append(line)
            if text in line:
                return line


@pytest.mark.slow  # a flywheel process
def test_serve_says_ready_once_it_answers_and_a_line_per_event(serving_dir, tmp_path, capfd):
    port = _free_port()
    url = f"http://127.0.0.1:{port}/v1/models/{MODEL}"
    proc = subprocess.Popen([FLYWHEEL, "serve", "--serving-dir", serving_dir, "--port", str(port), "--log-dir",
                             str(tmp_path / "logs")], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        lines = _Lines(proc.stderr)
        # started at once, as the README's `flywheel serve ... &` then `flywheel replay`: it waits for the server
        replayed = call_cli(capfd, "replay", "taxi", "--data", "components/ingest/testdata/spans", "--url", url,
                            "--wait", str(DEADLINE))
        assert replayed.returncode == 0 and " 0 failed" in replayed.stdout, replayed.stdout + replayed.stderr
        ready = lines.wait_for("ready")
        assert ready == (f"flywheel: serve: ready: {MODEL} from {serving_dir} on {url} (versions loaded: 1)")
        assert len(lines.seen) == 2 and lines.seen[0].startswith(f"flywheel: serve: {MODEL} version 1 available ("), \
            f"a line per version loaded, no TensorFlow or CUDA noise, nothing claimed before it was true: {lines.seen}"
        status = httpx.get(url, timeout=10)
        assert status.status_code == 200 and status.json()["model_version_status"][0]["state"] == "AVAILABLE"
        live = call_cli(capfd, "status", "--serving-dir", serving_dir, "--url", url)
        assert f"  server {url}: version 1 AVAILABLE" in live.stdout.splitlines(), live.stdout

        add_version(serving_dir, f"{serving_dir}/{MODEL}/1", 2)
        lines.wait_for(f"{MODEL} version 2 available")
        lines.wait_for(f"{MODEL} version 1 unloaded")
        rollout_start(serving_dir, MODEL, version=1, mode="canary", percent=10.0)
        lines.wait_for(f"{MODEL} version 1 available")
        assert lines.wait_for("routing follows") == (f"flywheel: serve: {MODEL}: routing follows rollout generation "
                                                     "1 (stable 2, candidate 1, canary)")
        rollout_rollback(serving_dir, MODEL, reason="test")
        lines.wait_for("routing follows rollout generation 2 (stable 2, no candidate)")
        lines.wait_for(f"{MODEL} version 1 unloaded (not in rollout generation 2)")
        proc.send_signal(signal.SIGTERM)
        assert lines.wait_for("stopped") == f"flywheel: serve: stopped (SIGTERM); request log written to " \
                                            f"{tmp_path / 'logs'}"
        assert proc.wait(timeout=DEADLINE) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert all(line.startswith("flywheel: serve: ") for line in lines.seen), lines.seen
    assert list((tmp_path / "logs").glob("span-*/*.parquet")), "the replayed requests were logged"


@pytest.mark.parametrize("case", ["missing folder", "a file as folder", "port in use", "unknown host"])
def test_serve_errors_come_before_any_other_line(tmp_path, capfd, case):
    folder = tmp_path / "serving"
    folder.mkdir()
    args = ["serve", "--serving-dir", str(folder)]
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        if case == "missing folder":
            args[2], expected = str(tmp_path / "nope"), f"serve: --serving-dir {tmp_path / 'nope'} is not a folder"
        elif case == "a file as folder":
            (tmp_path / "file").write_text("x")
            args[2], expected = str(tmp_path / "file"), f"serve: --serving-dir {tmp_path / 'file'} is not a folder"
        elif case == "port in use":
            port = held.getsockname()[1]
            args += ["--port", str(port)]
            expected = f"serve: cannot listen on 127.0.0.1:{port}: Address already in use"
        else:
            args += ["--host", "no-such-host.invalid"]
            expected = "serve: --host no-such-host.invalid: expected an address of this machine, found none"
        result = call_cli(capfd, *args)
    assert result.returncode == 2 and result.stdout == "", result.stdout
    assert result.stderr.startswith(f"flywheel: {expected}") and result.stderr.count("\n") == 1, result.stderr
