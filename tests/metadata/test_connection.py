"""The metadata location: a SQLite file or mysql://USER@HOST[:PORT]/DATABASE, the password from the environment, the
one ConnectionConfig (the same TFX's own helpers build), and the errors -- no server needed."""

from __future__ import annotations

import logging
import os
import socket

import pytest
from absl import logging as absl_logging

from flywheel.metadata import connection
from tests.conftest import call_cli

SECRET = "pa55-word"


@pytest.mark.parametrize("location, expected", [
    ("mysql://flywheel@db.example:3307/mlmd", connection.MySQLStore("flywheel", "db.example", 3307, "mlmd")),
    ("mysql://flywheel@db.example/mlmd", connection.MySQLStore("flywheel", "db.example", 3306, "mlmd")),
    ("MYSQL://ci%40corp@10.0.0.5:3306/ml_md$1", connection.MySQLStore("ci@corp", "10.0.0.5", 3306, "ml_md$1")),
    ("mysql://u@[::1]:3306/m", connection.MySQLStore("u", "::1", 3306, "m")),
])
def test_mysql_locations(location, expected):
    assert connection.parse(location) == expected
    assert connection.is_shared(location) and connection.local_file(location) is None


def test_canonical_form_names_the_port_and_quotes_the_user():
    assert connection.canonical("mysql://flywheel@db/mlmd") == "mysql://flywheel@db:3306/mlmd"
    assert connection.canonical("mysql://ci%40corp@db:1/m") == "mysql://ci%40corp@db:1/m"
    assert connection.canonical("mysql://u@[::1]/m") == "mysql://u@[::1]:3306/m"


def test_a_path_is_a_sqlite_file_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert connection.parse("out/metadata.sqlite") == connection.SQLiteStore(str(tmp_path / "out/metadata.sqlite"))
    assert connection.local_file("m.sqlite") == str(tmp_path / "m.sqlite") and not connection.is_shared("m.sqlite")


@pytest.mark.parametrize("location, message", [
    ("postgres://u@h/db", r"expected mysql://USER@HOST\[:PORT\]/DATABASE or a SQLite file path, got scheme "
                          r"'postgres'"),
    ("gs://bucket/metadata.sqlite", r"got scheme 'gs'"),
    ("mysql://h:3306/db", r"got no USER@ before the host"),
    ("mysql://u@:3306/db", r"got no HOST"),
    ("mysql://u@h:port/db", r"got a PORT that is not a number in 1\.\.65535"),
    ("mysql://u@h:70000/db", r"got a PORT that is not a number in 1\.\.65535"),
    ("mysql://u@h:0/db", r"got PORT 0"),
    ("mysql://u@h", r"got DATABASE '' \(expected 1 to 64 letters, digits, _ or \$\)"),
    ("mysql://u@h/", r"got DATABASE ''"),
    ("mysql://u@h/a/b", r"got DATABASE 'a/b'"),
    ("mysql://u@h/my-db", r"got DATABASE 'my-db'"),
    ("mysql://u@h/db?ssl=1", r"got options after the database \(\?ssl=1\)"),
    ("", r"metadata '': expected mysql://"),
    ("   ", r"metadata '   ': expected mysql://"),
])
def test_bad_locations_say_what_was_expected(location, message):
    with pytest.raises(connection.MetadataStoreError, match=message):
        connection.parse(location)


def test_a_folder_is_not_a_store(tmp_path):
    with pytest.raises(connection.MetadataStoreError, match=r"got a folder \(the file is .*metadata\.sqlite\?\)"):
        connection.parse(str(tmp_path))


@pytest.mark.parametrize("location", [f"mysql://u:{SECRET}@h/db", f"mysql://u:{SECRET}@h:3306/db",
                                      f"postgres://u:{SECRET}@h/db"])
def test_a_password_in_the_location_is_refused_and_never_shown(location):
    with pytest.raises(connection.MetadataStoreError) as raised:
        connection.parse(location)
    assert SECRET not in str(raised.value) and "u:***@h" in str(raised.value)
    if location.startswith("mysql"):
        assert "FLYWHEEL_METADATA_PASSWORD" in str(raised.value)


def test_the_password_comes_from_the_environment_or_a_file(tmp_path):
    assert connection.password({}) == ""
    assert connection.password({connection.PASSWORD_ENV: SECRET}) == SECRET
    secret_file = tmp_path / "password"
    secret_file.write_text(SECRET + "\n")
    assert connection.password({connection.PASSWORD_FILE_ENV: str(secret_file)}) == SECRET
    secret_file.write_text(SECRET + "\r\n")
    assert connection.password({connection.PASSWORD_FILE_ENV: str(secret_file)}) == SECRET


def test_password_errors_name_the_variable(tmp_path):
    with pytest.raises(connection.MetadataStoreError, match="expected one of FLYWHEEL_METADATA_PASSWORD and "
                                                            "FLYWHEEL_METADATA_PASSWORD_FILE, found both set"):
        connection.password({connection.PASSWORD_ENV: "a", connection.PASSWORD_FILE_ENV: str(tmp_path / "p")})
    missing = tmp_path / "nowhere"
    with pytest.raises(connection.MetadataStoreError, match=f"FLYWHEEL_METADATA_PASSWORD_FILE={missing}: expected "
                                                            "a readable UTF-8 file, No such file or directory"):
        connection.password({connection.PASSWORD_FILE_ENV: str(missing)})


def test_the_configs_are_those_of_tfx_own_helpers(tmp_path):
    from tfx.orchestration import metadata  # TFX's helpers, to compare with

    path = str(tmp_path / "metadata.sqlite")
    assert connection.connection_config(path) == metadata.sqlite_metadata_connection_config(path)
    environ = {connection.PASSWORD_ENV: SECRET}
    assert (connection.connection_config("mysql://flywheel@db.example:3307/mlmd", environ=environ)
            == metadata.mysql_metadata_connection_config("db.example", 3307, "mlmd", "flywheel", SECRET))
    readonly = connection.connection_config(path, writable=False)
    assert readonly.sqlite.connection_mode == readonly.sqlite.READONLY and readonly.sqlite.filename_uri == path


def test_runner_config_makes_the_sqlite_folder(tmp_path):
    path = tmp_path / "new" / "folder" / "metadata.sqlite"
    assert connection.runner_config(str(path)).sqlite.filename_uri == str(path)
    assert path.parent.is_dir() and not path.exists()


def test_the_password_is_kept_out_of_absl_logs(caplog):
    connection.password({connection.PASSWORD_ENV: SECRET})
    with caplog.at_level(logging.INFO, logger="absl"):
        absl_logging.info("Using connection config:\n %s", f'password: "{SECRET}"')
    assert caplog.messages == ['Using connection config:\n password: "***"']


def test_reading_a_sqlite_store_that_is_not_there(tmp_path):
    with pytest.raises(connection.MetadataStoreError, match="expected the ML-Metadata store of a pipeline run, "
                                                            "found no file"):
        connection.open_store(str(tmp_path / "metadata.sqlite"))


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_no_server_at_the_port_is_said_in_words(monkeypatch):
    monkeypatch.setenv(connection.PASSWORD_ENV, SECRET)
    port = _closed_port()
    with pytest.raises(connection.MetadataStoreError) as raised:
        connection.open_store(f"mysql://flywheel@127.0.0.1:{port}/mlmd")
    assert str(raised.value) == (f"metadata mysql://flywheel@127.0.0.1:{port}/mlmd: cannot open the ML-Metadata "
                                 f"store: no server answers at 127.0.0.1:{port} (Connection refused)")


# ---- the command line: exit 2 before anything runs, the password never echoed -------------------------------------

@pytest.mark.parametrize("command", [["run", "taxi"], ["retrain", "taxi", "--data", "SPANS"], ["lineage"]])
def test_commands_refuse_a_bad_location_with_exit_2(capfd, tmp_path, command):
    (tmp_path / "spans" / "span-1").mkdir(parents=True)  # retrain checks its --data first
    command = [str(tmp_path / "spans") if word == "SPANS" else word for word in command]
    result = call_cli(capfd, *command, "--metadata", f"mysql://u:{SECRET}@h/db", output_dir=str(tmp_path))
    assert result.returncode == 2 and SECRET not in result.stdout + result.stderr
    assert result.stderr.startswith("flywheel: metadata mysql://u:***@h/db: a password in the URL is refused")
    result = call_cli(capfd, *command, "--metadata", "sqlite://x", output_dir=str(tmp_path))
    assert result.returncode == 2
    assert "expected mysql://USER@HOST[:PORT]/DATABASE or a SQLite file path, got scheme 'sqlite'" in result.stderr


def test_rollout_refuses_an_unreachable_store_before_changing_anything(capfd, tmp_path):
    (tmp_path / "taxi").mkdir()
    port = _closed_port()
    result = call_cli(capfd, "rollout", "promote", "--serving-dir", str(tmp_path), "--metadata",
                      f"mysql://flywheel@127.0.0.1:{port}/mlmd")
    assert result.returncode == 2 and "no server answers at 127.0.0.1" in result.stderr, result.stderr
    assert sorted(os.listdir(tmp_path)) == ["taxi"]
