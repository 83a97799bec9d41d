"""ML-Metadata on a real MariaDB server (the `mariadb` fixture, Debian's mariadb-server): opening an empty database
from two processes at once, a refused user said in words, and rollout decisions read back the same as from SQLite.
The pipeline runs sharing the store are tests/e2e/test_shared_metadata.py."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from flywheel.metadata import connection
from flywheel.rollout import mlmd, store
from flywheel.store import layout
from tests.conftest import REPO, call_cli
from tests.fixtures import copy_run

pytestmark = pytest.mark.slow  # a database server process

OPEN = "import sys; from flywheel.metadata import connection; connection.open_store(sys.argv[1], writable=True)"


def test_the_server_is_mariadb_10_11(mariadb):
    assert mariadb.version.startswith("10.11.") and "MariaDB" in mariadb.version, mariadb.version


@pytest.mark.parametrize("attempt", range(3))
def test_two_processes_opening_an_empty_database_at_once_both_get_the_store(mariadb, attempt):
    """MLMD creates its tables on the first connection, not atomically: the second process finds some of them and
    fails asking for a retry, which `connection.open_store` does."""
    url = mariadb.database(f"empty_{attempt}")
    env = {**os.environ, **mariadb.env}
    opening = [subprocess.Popen([sys.executable, "-c", OPEN, url], cwd=REPO, env=env, stderr=subprocess.PIPE,
                                text=True) for _ in range(2)]
    errors = [p.communicate(timeout=120)[1] for p in opening]
    assert [p.returncode for p in opening] == [0, 0], errors
    tables = mariadb.sql(f"SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'empty_{attempt}'")
    assert int(tables) >= 15


def test_a_wrong_password_is_said_in_words_and_never_echoed(mariadb, capfd, monkeypatch, tmp_path):
    url = mariadb.database("refused")
    monkeypatch.setenv(connection.PASSWORD_ENV, "not-the-password")
    with pytest.raises(connection.MetadataStoreError) as raised:
        connection.open_store(url)
    assert str(raised.value) == (
        f"metadata {url}: cannot open the ML-Metadata store: the server at {mariadb.host}:{mariadb.port} refused user "
        "'flywheel' on database 'refused' (a wrong or missing password in FLYWHEEL_METADATA_PASSWORD or "
        "FLYWHEEL_METADATA_PASSWORD_FILE, or no access to that database)")
    result = call_cli(capfd, "lineage", "--metadata", url, output_dir=str(tmp_path))
    assert result.returncode == 2 and "refused user 'flywheel'" in result.stderr
    assert "not-the-password" not in result.stdout + result.stderr


def test_the_password_file_opens_the_store(mariadb, monkeypatch, tmp_path):
    url = mariadb.database("from_file")
    secret = tmp_path / "secret"
    secret.write_text(mariadb.password + "\n")
    monkeypatch.delenv(connection.PASSWORD_ENV, raising=False)
    monkeypatch.setenv(connection.PASSWORD_FILE_ENV, str(secret))
    assert connection.open_store(url).get_contexts() == []


def _comparable(decisions: list[dict]) -> list[dict]:
    """Decisions without what differs between two stores: execution ids and the linked artifact's uri."""
    return [{k: v for k, v in d.items() if k not in ("execution", "pushed_model")} for d in decisions]


def test_rollout_decisions_read_back_the_same_as_from_sqlite(mariadb, monkeypatch, tmp_path):
    """The same decisions recorded in the checked-in run's SQLite store and in MariaDB read back equal."""
    monkeypatch.setenv(connection.PASSWORD_ENV, mariadb.password)
    url = mariadb.database("rollouts")
    out = copy_run(str(tmp_path / "runs"))
    sqlite, serving = os.path.join(out, "metadata.sqlite"), os.path.join(out, "serving")
    first, second = layout.versions(serving, "taxi")
    started = store.start(serving, "taxi", first, "canary", 25.0, "an older version, as a canary")
    promoted = store.promote(serving, "taxi", "it did well")
    for location in (sqlite, url):
        for after in (started, promoted):
            mlmd.record(location, after, after.decisions[-1])
    from_sqlite, from_mariadb = mlmd.decisions(sqlite, "taxi"), mlmd.decisions(url, "taxi")
    assert [d["action"] for d in from_mariadb] == ["start", "promote"]
    assert _comparable(from_mariadb) == _comparable(from_sqlite)
    assert all(d["pushed_model"] for d in from_sqlite), "the SQLite store holds the pushes, the decisions link them"
    assert [d["pushed_model"] for d in from_mariadb] == [None, None], "MariaDB holds no push of these versions"
    assert mlmd.decisions(url, "another_model") == [] and second != first
