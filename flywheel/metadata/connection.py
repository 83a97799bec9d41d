"""Where a pipeline's ML-Metadata lives, and the one connection every reader, writer and the pipeline runner use.

A location is either a SQLite file (the default: `<output-dir>/metadata.sqlite`, one store per machine) or a
MySQL/MariaDB database several machines share:

    mysql://USER@HOST[:PORT]/DATABASE        (port 3306 when left out)

The password never travels in the location (it would show in process lists, shell history, run summaries and
logs): it is read from the environment, `FLYWHEEL_METADATA_PASSWORD`, or from the file that
`FLYWHEEL_METADATA_PASSWORD_FILE` names (a mounted Kubernetes or Docker secret). A location with a password in it
is refused, and the password is kept out of the absl logs TFX writes once it has been read.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import socket
import time
import urllib.parse
from typing import Mapping, Optional, Union

SCHEME = "mysql"
DEFAULT_PORT = 3306
PASSWORD_ENV = "FLYWHEEL_METADATA_PASSWORD"
PASSWORD_FILE_ENV = "FLYWHEEL_METADATA_PASSWORD_FILE"
SQLITE_FILE = "metadata.sqlite"
EXPECTED = f"expected {SCHEME}://USER@HOST[:PORT]/DATABASE or a SQLite file path"
_DATABASE = re.compile(r"[A-Za-z0-9_$]{1,64}")
_PROBE_SECONDS = 3.0


class MetadataStoreError(ValueError):
    """A metadata location that is not one, a password that cannot be read, or a store that cannot be reached; the
    message names what was expected and never holds the password."""


@dataclasses.dataclass(frozen=True)
class SQLiteStore:
    """An ML-Metadata store in a SQLite file on this machine."""

    path: str

    @property
    def url(self) -> str:
        return self.path


@dataclasses.dataclass(frozen=True)
class MySQLStore:
    """An ML-Metadata store in a MySQL or MariaDB database; the password comes from the environment (`password`)."""

    user: str
    host: str
    port: int
    database: str

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{SCHEME}://{urllib.parse.quote(self.user, safe='')}@{host}:{self.port}/{self.database}"


Store = Union[SQLiteStore, MySQLStore]


def _redacted(location: str) -> str:
    """The location with whatever stands between '://' + user ':' and '@' replaced by ***."""
    return re.sub(r"(://[^/@:]*):[^/@]*@", r"\1:***@", location)


def _mysql(location: str) -> MySQLStore:
    shown = _redacted(location)
    parts = urllib.parse.urlsplit(location)
    if parts.password is not None:
        raise MetadataStoreError(f"metadata {shown}: a password in the URL is refused (it would show in process "
                                 f"lists, shell history and logs); give it in {PASSWORD_ENV}, or in a file named by "
                                 f"{PASSWORD_FILE_ENV}")
    if parts.query or parts.fragment:
        raise MetadataStoreError(f"metadata {shown}: {EXPECTED}, got options after the database "
                                 f"({'?' + parts.query if parts.query else '#' + parts.fragment})")
    if not parts.username:
        raise MetadataStoreError(f"metadata {shown}: {EXPECTED}, got no USER@ before the host")
    if not parts.hostname:
        raise MetadataStoreError(f"metadata {shown}: {EXPECTED}, got no HOST")
    try:
        port = parts.port
    except ValueError:
        raise MetadataStoreError(f"metadata {shown}: {EXPECTED}, got a PORT that is not a number in 1..65535"
                                 ) from None
    if port == 0:
        raise MetadataStoreError(f"metadata {shown}: {EXPECTED}, got PORT 0")
    database = parts.path[1:] if parts.path.startswith("/") else ""
    if not _DATABASE.fullmatch(database):
        raise MetadataStoreError(f"metadata {shown}: {EXPECTED}, got DATABASE {database!r} (expected 1 to 64 "
                                 "letters, digits, _ or $)")
    return MySQLStore(urllib.parse.unquote(parts.username), parts.hostname, port or DEFAULT_PORT, database)


def parse(location: str) -> Store:
    """The store a location names: `mysql://USER@HOST[:PORT]/DATABASE`, or a SQLite file path (made absolute).

    MetadataStoreError naming what was expected for anything else: another scheme, a password in the URL, no
    user, host or database, a bad port, query options."""
    if not isinstance(location, str) or not location.strip():
        raise MetadataStoreError(f"metadata {location!r}: {EXPECTED}")
    scheme = location.split("://", 1)[0].lower() if "://" in location else None
    if scheme == SCHEME:
        return _mysql(location)
    if scheme is not None:
        raise MetadataStoreError(f"metadata {_redacted(location)}: {EXPECTED}, got scheme {scheme!r}")
    if os.path.isdir(location):
        raise MetadataStoreError(f"metadata {location}: {EXPECTED}, got a folder (the file is "
                                 f"{os.path.join(location, SQLITE_FILE)}?)")
    return SQLiteStore(os.path.abspath(location))


def canonical(location: str) -> str:
    """The location as every record shows it: an absolute SQLite path, or mysql://USER@HOST:PORT/DATABASE."""
    return parse(location).url


def is_shared(location: str) -> bool:
    """True for a MySQL/MariaDB store (no file on this machine), False for a SQLite file."""
    return isinstance(parse(location), MySQLStore)


def local_file(location: str) -> Optional[str]:
    """The SQLite file of a location, None for a MySQL/MariaDB store (nothing on this machine's disk)."""
    found = parse(location)
    return found.path if isinstance(found, SQLiteStore) else None


class _HidePassword(logging.Filter):
    """Replaces the password in absl's log records (TFX's runners log the whole connection config at INFO)."""

    def __init__(self, secret: str) -> None:
        super().__init__()
        self.secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if self.secret in message:
            record.msg, record.args = message.replace(self.secret, "***"), None
        return True


def _hide_in_logs(secret: str) -> None:
    for name in ("absl", ""):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _HidePassword) and f.secret == secret for f in logger.filters):
            logger.addFilter(_HidePassword(secret))


def password(environ: Optional[Mapping[str, str]] = None) -> str:
    """The MySQL/MariaDB password: the file named by FLYWHEEL_METADATA_PASSWORD_FILE (one trailing newline
    dropped), else FLYWHEEL_METADATA_PASSWORD, else '' (no password). Setting both is an error."""
    environ = os.environ if environ is None else environ
    path, value = environ.get(PASSWORD_FILE_ENV), environ.get(PASSWORD_ENV)
    if path and value is not None:
        raise MetadataStoreError(f"metadata password: expected one of {PASSWORD_ENV} and {PASSWORD_FILE_ENV}, "
                                 "found both set")
    if path:
        try:
            with open(path, encoding="utf-8") as f:
                value = f.read()
        except (OSError, UnicodeDecodeError) as e:
            raise MetadataStoreError(f"metadata password: {PASSWORD_FILE_ENV}={path}: expected a readable UTF-8 "
                                     f"file, {getattr(e, 'strerror', None) or type(e).__name__}") from None
        value = value[:-1] if value.endswith("\n") else value
        value = value[:-1] if value.endswith("\r") else value
    if value:
        _hide_in_logs(value)
    return value or ""


def connection_config(location: str, *, writable: bool = True, environ: Optional[Mapping[str, str]] = None):
    """The `metadata_store_pb2.ConnectionConfig` of a location: what TFX's `sqlite_metadata_connection_config`
    (writable: create the file if missing; else read-only) or `mysql_metadata_connection_config` (the password from
    `password(environ)`) returns."""
    from ml_metadata.proto import metadata_store_pb2  # ML-Metadata: its native library loads with its protos

    found = parse(location)
    config = metadata_store_pb2.ConnectionConfig()
    if isinstance(found, SQLiteStore):
        modes = metadata_store_pb2.SqliteMetadataSourceConfig
        config.sqlite.filename_uri = found.path
        config.sqlite.connection_mode = modes.READWRITE_OPENCREATE if writable else modes.READONLY
        return config
    config.mysql.host = found.host
    config.mysql.port = found.port
    config.mysql.database = found.database
    config.mysql.user = found.user
    config.mysql.password = password(environ)
    return config


def runner_config(location: str):
    """The connection a pipeline run writes through; a SQLite file's folder is made first (as TFX's
    `sqlite_metadata_connection_config` does)."""
    path = local_file(location)
    if path:
        os.makedirs(os.path.dirname(path), exist_ok=True)
    return connection_config(location, writable=True)


def _unreachable(store: MySQLStore, error: BaseException) -> MetadataStoreError:
    """Why MLMD could not connect, in words. On a failed connect its message is only 'mysql_real_connect failed:
    errno: , error: ': a probe of the port then tells a server that is not there from one that refused the user."""
    said = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
    if "mysql_real_connect failed" not in said:
        return MetadataStoreError(f"metadata {store.url}: cannot open the ML-Metadata store: {said}")
    try:
        with socket.create_connection((store.host, store.port), timeout=_PROBE_SECONDS):
            pass
    except OSError as e:
        why = f"no server answers at {store.host}:{store.port} ({e.strerror or type(e).__name__})"
    else:
        why = (f"the server at {store.host}:{store.port} refused user {store.user!r} on database "
               f"{store.database!r} (a wrong or missing password in {PASSWORD_ENV} or {PASSWORD_FILE_ENV}, or no "
               "access to that database)")
    return MetadataStoreError(f"metadata {store.url}: cannot open the ML-Metadata store: {why}")


# MLMD creates its tables on the first connection to an empty database, not atomically: a second process connecting
# meanwhile finds some tables and gives up ("There are a subset of tables in MLMD instance. This may be due to
# concurrent connection to the empty database. Please retry the connection."), or MySQL answers "Table definition
# has changed, please retry transaction". Both ask for a retry; the tables are complete once the first one is done.
_RETRY = ("concurrent connection to the empty database", "please retry transaction")
_RETRY_SECONDS = 60.0


def _open_mysql(store: MySQLStore, config):
    from ml_metadata.metadata_store import metadata_store  # ML-Metadata: only the commands that open a store need it

    deadline = time.monotonic() + _RETRY_SECONDS
    pause = 0.1
    while True:
        try:
            return metadata_store.MetadataStore(config)
        except RuntimeError as e:  # MLMD's MySQL source raises a bare RuntimeError on any failed connect
            retry = any(reason in str(e).lower() for reason in _RETRY)
            if not retry or time.monotonic() + pause > deadline:
                raise _unreachable(store, e) from None
        time.sleep(pause)  # another process is creating the tables: give it time to finish before looking again
        pause = min(pause * 2, 2.0)


def open_store(location: str, *, writable: bool = False):
    """An `ml_metadata.MetadataStore` on the location (a SQLite file read-only unless `writable`).

    MetadataStoreError saying why when a MySQL/MariaDB store cannot be reached (nothing listens, the user is
    refused), and when a SQLite store to read does not exist. A MySQL/MariaDB database that another process is
    initializing at the same moment is waited for (`_RETRY`)."""
    from ml_metadata.metadata_store import metadata_store  # ML-Metadata: only the commands that open a store need it

    found = parse(location)
    if isinstance(found, SQLiteStore) and not writable and not os.path.isfile(found.path):
        raise MetadataStoreError(f"metadata {found.path}: expected the ML-Metadata store of a pipeline run, found "
                                 "no file")
    config = connection_config(location, writable=writable)
    if isinstance(found, SQLiteStore):
        return metadata_store.MetadataStore(config)
    return _open_mysql(found, config)


def check(location: str) -> str:
    """The canonical location once its store is known to open (a MySQL/MariaDB store is connected to; a SQLite file
    needs no check: a run creates it); MetadataStoreError otherwise."""
    if is_shared(location):
        open_store(location, writable=True)
    return canonical(location)
