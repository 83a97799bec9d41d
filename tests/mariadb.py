"""The `mariadb` fixture: a throwaway MariaDB server for the shared ML-Metadata store's tests.

Once per test session (per xdist worker) it initializes a data folder in a temporary folder, starts Debian's
`mariadbd` on a free loopback port and its own socket, as the current user, waits for the port with a deadline,
creates a user with a password, and stops the server at the end. `server.database(name)` creates a database the
user may use and returns its `mysql://` location; the password goes in the environment (`server.env`), never in
the location. Skipped, saying why, only where the server binaries are not installed (CI installs them:
`apt-get install mariadb-server`, in .ci/run).
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from typing import Iterator

import pytest

from flywheel.metadata import connection

USER = "flywheel"
START_SECONDS = 60.0
STOP_SECONDS = 30.0
SEARCH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin", "/usr/bin"])


@dataclasses.dataclass(frozen=True)
class MariaDB:
    host: str
    port: int
    socket: str
    password: str
    client: str
    version: str

    def sql(self, statement: str) -> str:
        """Runs SQL as the server's root (over its socket; the statements on stdin, not in the process list)."""
        done = subprocess.run([self.client, "--no-defaults", "--user=root", f"--socket={self.socket}", "--batch",
                               "--skip-column-names"], input=statement, capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"mariadb client: exit {done.returncode}: {done.stderr.strip()}")
        return done.stdout

    def database(self, name: str) -> str:
        """A new, empty database the fixture's user may use; its ML-Metadata location (no password in it)."""
        self.sql(f"CREATE DATABASE `{name}`; GRANT ALL PRIVILEGES ON `{name}`.* TO '{USER}'@'127.0.0.1';")
        return f"mysql://{USER}@{self.host}:{self.port}/{name}"

    @property
    def env(self) -> dict[str, str]:
        return {connection.PASSWORD_ENV: self.password}


def _binary(name: str) -> str | None:
    return shutil.which(name, path=SEARCH)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _log_tail(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return "".join(f.readlines()[-15:])
    except OSError:
        return "(no log)"


def _wait_for_port(process: subprocess.Popen, port: int, log: str) -> None:
    """Returns once the server accepts connections on the port; fails, with its log, when it exits or the deadline
    passes first."""
    deadline = time.monotonic() + START_SECONDS
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"mariadbd exited with status {process.returncode} before listening:\n{_log_tail(log)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"mariadbd did not listen on port {port} within {START_SECONDS:.0f} s:\n"
                                   f"{_log_tail(log)}") from None
        time.sleep(0.1)  # polling the port, with the deadline above


def _as_user() -> list[str]:
    """mariadbd refuses to run as root unless told to: the current user either way."""
    return ["--user=root"] if os.geteuid() == 0 else []


@pytest.fixture(scope="session")
def mariadb() -> Iterator[MariaDB]:
    server, install_db, client = _binary("mariadbd"), _binary("mariadb-install-db"), _binary("mariadb")
    missing = [name for name, found in (("mariadbd", server), ("mariadb-install-db", install_db), ("mariadb", client))
               if not found]
    if missing:
        pytest.skip(f"MariaDB is not installed here ({', '.join(missing)} not found): `apt-get install "
                    "mariadb-server` (Debian) to run the shared ML-Metadata store's tests")
    root = tempfile.mkdtemp(prefix="flywheel-mariadb-")  # short: a socket's path must stay under ~100 bytes
    datadir, sock, log = os.path.join(root, "data"), os.path.join(root, "mysqld.sock"), os.path.join(root, "log")
    try:
        init = subprocess.run([install_db, "--no-defaults", f"--datadir={datadir}", *_as_user(),
                               "--auth-root-authentication-method=normal", "--skip-test-db"],
                              capture_output=True, text=True, timeout=120)
        if init.returncode != 0:
            raise RuntimeError(f"mariadb-install-db: exit {init.returncode}: {init.stderr.strip()[-2000:]}")
        port = _free_port()
        process = subprocess.Popen([server, "--no-defaults", f"--datadir={datadir}", *_as_user(),
                                    "--bind-address=127.0.0.1", f"--port={port}", f"--socket={sock}",
                                    f"--pid-file={os.path.join(root, 'mariadbd.pid')}", f"--log-error={log}",
                                    "--skip-name-resolve", "--innodb-buffer-pool-size=64M"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait_for_port(process, port, log)
            password = secrets.token_urlsafe(18)
            found = MariaDB("127.0.0.1", port, sock, password, client, "")
            version = found.sql(f"CREATE USER '{USER}'@'127.0.0.1' IDENTIFIED BY '{password}'; SELECT VERSION();")
            yield dataclasses.replace(found, version=version.strip())
        finally:
            process.terminate()
            try:
                process.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    finally:
        shutil.rmtree(root, ignore_errors=True)
