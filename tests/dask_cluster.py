"""A real dask.distributed cluster on loopback for the tests: `dask scheduler` and `dask worker` processes.

    with running_cluster(folder, workers=2) as cluster:
        cluster.address        # tcp://127.0.0.1:PORT, for --dask_client_address
        cluster.client         # a dask.distributed Client of the test's own, to ask the workers what they ran

Each worker process has one thread (`--nthreads 1`). Start-up waits on events with deadlines: the scheduler file
written (or the scheduler exiting), then `Client.wait_for_workers`. Tear-down asks the scheduler to stop the
workers and itself, waits for each process to exit and ends any still running after a deadline (each by its own
process group, started here). Every process's output goes to a log file in `folder`, quoted when start-up fails.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from typing import Iterator

START_TIMEOUT = 60.0  # seconds for the scheduler file and then every worker to register
STOP_TIMEOUT = 20.0  # seconds for each process to exit once asked to
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class ClusterError(RuntimeError):
    """The cluster did not come up within its deadline (the message quotes the processes' logs)."""


@dataclasses.dataclass
class Cluster:
    address: str
    client: object  # dask.distributed.Client
    folder: str

    def executed(self) -> dict[str, int]:
        """Tasks each worker has run so far, by worker address."""
        return self.client.run(lambda dask_worker: dask_worker.state.executed_count)


def _dask_command(*args: str) -> list[str]:
    return [os.path.join(os.path.dirname(sys.executable), "dask"), *args]


def _tail(path: str, lines: int = 20) -> str:
    with open(path, errors="replace") as f:
        return "".join(f.readlines()[-lines:])


def _start(command: list[str], log: str) -> subprocess.Popen:
    # The repository on the path: DoFns defined in test modules are unpickled by the scheduler and the workers.
    path = os.pathsep.join(p for p in (REPO, os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONWARNINGS": "ignore", "PYTHONPATH": path}
    with open(log, "wb") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                start_new_session=True)


def _wait_for_file(path: str, process: subprocess.Popen, log: str, deadline: float) -> dict:
    """The scheduler file's content once written; ClusterError if the scheduler exits or the deadline passes."""
    while True:
        if os.path.exists(path) and os.path.getsize(path):
            with open(path) as f:
                return json.load(f)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ClusterError(f"dask scheduler wrote no {path} within {START_TIMEOUT:.0f} s; its log:\n{_tail(log)}")
        try:
            code = process.wait(timeout=min(0.1, remaining))  # returns at once if the scheduler exits
        except subprocess.TimeoutExpired:
            continue
        raise ClusterError(f"dask scheduler exited with {code} before writing {path}; its log:\n{_tail(log)}")


def _stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=STOP_TIMEOUT)


@contextlib.contextmanager
def running_cluster(folder: str, workers: int = 2) -> Iterator[Cluster]:
    """A scheduler and `workers` one-thread worker processes on 127.0.0.1, logs and scheduler file in `folder`."""
    import dask.distributed  # the tests' own client to the cluster: only tests that start one import it

    os.makedirs(folder, exist_ok=True)
    scheduler_file = os.path.join(folder, "scheduler.json")
    deadline = time.monotonic() + START_TIMEOUT
    scheduler_log = os.path.join(folder, "scheduler.log")
    processes = [_start(_dask_command("scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                                      "--scheduler-file", scheduler_file), scheduler_log)]
    client = None
    try:
        address = _wait_for_file(scheduler_file, processes[0], scheduler_log, deadline)["address"]
        for n in range(workers):
            processes.append(_start(_dask_command(
                "worker", address, "--nthreads", "1", "--nworkers", "1", "--no-dashboard", "--name", f"worker-{n}",
                "--local-directory", os.path.join(folder, f"worker-{n}"), "--death-timeout", str(START_TIMEOUT)),
                os.path.join(folder, f"worker-{n}.log")))
        client = dask.distributed.Client(scheduler_file=scheduler_file, timeout=max(deadline - time.monotonic(), 1))
        try:
            client.wait_for_workers(workers, timeout=max(deadline - time.monotonic(), 1))
        except TimeoutError as e:
            logs = "\n".join(f"{name}:\n{_tail(os.path.join(folder, name))}" for name in sorted(os.listdir(folder))
                             if name.endswith(".log"))
            raise ClusterError(f"{workers} dask worker(s) did not register within {START_TIMEOUT:.0f} s:\n{logs}") \
                from e
        yield Cluster(address=address, client=client, folder=folder)
    finally:
        if client is not None:
            client.shutdown()  # the scheduler stops its workers, then itself
            client.close()
        else:
            for process in processes:
                process.terminate()
        _stop(processes)
