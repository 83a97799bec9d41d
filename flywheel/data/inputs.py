"""Which files an ingestion reads: data-file discovery, span resolution and the data fingerprint.

The one place data files are found: Ingest, the retraining check, `flywheel predict` and `replay` read a span
(`resolve_input`); `flywheel monitor` and `logs join` read every file of a file or folder (`files_under`). All of
them accept and refuse the same files, with the same words.

Plain functions; every file is reached through TFX's filesystem layer (`common.storage`), so the
data may be local or on gs://, s3:// or any fileio filesystem, and local data needs no TensorFlow
import (the command line fingerprints it in milliseconds). Layout: `<input_base>/span-<N>/...` (any
depth below the span folder); a plain file, or a folder with no `span-N` folders, is span 0.

What is refused, and why (nothing in a data folder is skipped in silence):
- a file whose name ends in none of SUPPORTED_SUFFIXES (names starting with `.` or `_`, such as
  `_SUCCESS` markers, Parquet's `_metadata` or `.ipynb_checkpoints`, are not data and are passed over);
- two folders that name the same span (`span-1` and `span-01`), an entry next to span folders that is
  not one (`span-x`, `span--1`, a stray file), a span folder with no data file;
- a dangling symlink, a symlink loop, and one real file or folder reached through two paths: each real
  file is read at most once, and every path that leads to it is named in the error. Links exist only on
  a local disk: on object storage each object is its own data, and these checks have nothing to find.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import hashlib
import json
import os
import re
from typing import IO, Iterator

from flywheel import storage

CSV_SUFFIXES = (".csv", ".csv.gz")
PARQUET_SUFFIXES = (".parquet",)
SUPPORTED_SUFFIXES = CSV_SUFFIXES + PARQUET_SUFFIXES
_SPAN_DIR = re.compile(r"span-([0-9]+)")


class InputError(ValueError):
    """The input location does not hold what ingestion needs. The message starts `ingest: `; the other commands
    that find data files here say the same words under their own name (`for_command`)."""

    def for_command(self, command: str) -> str:
        return f"{command}: {str(self).removeprefix('ingest: ')}"


@dataclasses.dataclass(frozen=True)
class ResolvedInput:
    """The data one ingestion reads: its spans, its files and their fingerprint."""

    spans: tuple[int, ...]
    files: tuple[str, ...]
    fingerprint: str

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ResolvedInput":
        d = json.loads(text)
        return cls(spans=tuple(d["spans"]), files=tuple(d["files"]), fingerprint=d["fingerprint"])


def _identity(path: str):
    """What makes two paths the same data: the path itself on object storage, (device, inode) on a local disk
    (symlinks and hard links exist only there)."""
    if not storage.is_local(path):
        return path
    st = os.stat(path)
    return st.st_dev, st.st_ino


def _check_not_dangling(path: str) -> None:
    if storage.is_local(path) and os.path.islink(path) and not os.path.exists(path):
        raise InputError(f"ingest: {path} is a dangling symlink (to {os.readlink(path)!r}); its data is missing")


def is_data_name(name: str) -> bool:
    """False for names that are never data: hidden (`.x`) and marker/metadata files (`_SUCCESS`)."""
    return not name.startswith((".", "_"))


def is_supported(path: str) -> bool:
    return path.lower().endswith(SUPPORTED_SUFFIXES)


def is_parquet(path: str) -> bool:
    return path.lower().endswith(PARQUET_SUFFIXES)


def open_binary(path: str) -> IO[bytes]:
    """Opens a data file for binary reading on any filesystem (local, gs://, s3://, ...): seekable, so pyarrow
    reads Parquet from it."""
    return storage.open_binary(path)


@contextlib.contextmanager
def open_data(path: str) -> Iterator[IO[bytes]]:
    """A data file's bytes, decompressed when its name says so (`.gz`)."""
    with open_binary(path) as raw:
        if path.lower().endswith(".gz"):
            with gzip.GzipFile(fileobj=raw, mode="rb") as unzipped:
                yield unzipped
        else:
            yield raw


def _unsupported(path: str) -> InputError:
    return InputError(f"ingest: {path}: unsupported file type; expected a name ending in "
                      f"{', '.join(SUPPORTED_SUFFIXES)} (names starting with '.' or '_' are not data)")


class _Walk:
    """Data files under folders, in a stable order; each real file or folder is visited once."""

    def __init__(self) -> None:
        self.files: list[str] = []
        self._seen: dict = {}  # identity -> the path it was first reached by

    def _claim(self, path: str) -> None:
        identity = _identity(path)
        if identity in self._seen:
            kind = "folder" if storage.isdir(path) else "file"
            raise InputError(f"ingest: {path} and {self._seen[identity]} are the same {kind} (a symlink or hard "
                             f"link); one real file is never read twice: remove one of them")
        self._seen[identity] = path

    def folder(self, root: str, ancestors: tuple[tuple, ...] = ()) -> None:
        identity = _identity(root)
        if identity in ancestors:
            raise InputError(f"ingest: {root} is a symlink loop: it leads back to a folder above it "
                             f"({os.path.realpath(root)})")
        self._claim(root)
        for name in sorted(storage.listdir(root)):
            if not is_data_name(name):
                continue
            path = os.path.join(root, name)
            _check_not_dangling(path)
            if storage.isdir(path):
                self.folder(path, ancestors + (identity,))
            elif is_supported(name):
                self._claim(path)
                self.files.append(path)
            else:
                raise _unsupported(path)


def _walk_files(root: str) -> list[str]:
    walk = _Walk()
    walk.folder(root)
    return walk.files


def span_folders(input_base: str) -> dict[int, str]:
    """{span: folder name} of a span layout; {} when input_base has no `span-N` folders.

    Raises InputError when two folders name one span (`span-1`, `span-01`), when a `span-…` name is not
    `span-<digits>`, or when a span layout also holds other entries, which would never be read.
    """
    if not storage.isdir(input_base):
        return {}
    names = sorted(n for n in storage.listdir(input_base) if is_data_name(n))
    spans: dict[int, str] = {}
    others = []
    for name in names:
        m = _SPAN_DIR.fullmatch(name)
        if m is None:
            if name.lower().startswith("span"):
                raise InputError(f"ingest: {os.path.join(input_base, name)}: not a span folder name; expected "
                                 f"'span-<N>' with N in digits 0-9 (e.g. span-3)")
            others.append(name)
            continue
        _check_not_dangling(os.path.join(input_base, name))
        if not storage.isdir(os.path.join(input_base, name)):
            raise InputError(f"ingest: {os.path.join(input_base, name)}: a span must be a folder, found a file")
        span = int(m.group(1))
        if span in spans:
            raise InputError(f"ingest: folders {os.path.join(input_base, spans[span])} and "
                             f"{os.path.join(input_base, name)} are both span {span}; keep one")
        spans[span] = name
    if spans and others:
        raise InputError(f"ingest: {input_base} holds span folders and also {others}, which are not "
                         f"span-<N> folders and would never be read; move them into a span or rename them "
                         f"to start with '_' or '.'")
    return dict(sorted(spans.items()))


def span_of(path: str, input_base: str) -> int:
    """The span a resolved file belongs to: N for `<input_base>/span-N/...`, else 0."""
    if not storage.isdir(input_base):
        return 0
    head = storage.relative(path, input_base).split("/")[0]
    m = _SPAN_DIR.fullmatch(head)
    return int(m.group(1)) if m else 0


def available_spans(input_base: str) -> list[int]:
    """The span numbers under input_base (`span-N` folders); [] when there is no span layout."""
    return list(span_folders(input_base))


def data_files(input_base: str, spans: tuple[int, ...] | None) -> list[str]:
    """The data files of the given spans, in a stable order (span, then path); each real file once."""
    if spans is None:
        if not storage.isdir(input_base):
            if not is_supported(input_base):
                raise _unsupported(input_base)
            return [input_base]
        return _walk_files(input_base)
    folders = span_folders(input_base)
    walk = _Walk()
    for span in spans:
        before = len(walk.files)
        walk.folder(os.path.join(input_base, folders[span]))
        if len(walk.files) == before:
            raise InputError(f"ingest: {os.path.join(input_base, folders[span])}: span {span} holds no "
                             f"{_kinds()} file")
    return walk.files


def fingerprint_files(files: list[str] | tuple[str, ...]) -> str:
    """sha256 over each file's name (relative order) and bytes: the data version."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(os.path.basename(path).encode("utf-8") + b"\0")
        with open_binary(path) as f:
            while True:
                block = f.read(1 << 20)
                if not block:
                    break
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()


def _kinds() -> str:
    return "/".join(SUPPORTED_SUFFIXES)


def files_under(path: str) -> list[str]:
    """Every data file of a file, a folder, or a folder of span-N folders (all of its spans), found and refused as
    `resolve_input` finds and refuses them: each real file once, in a stable order (span, then path)."""
    if not storage.exists(path):
        raise InputError(f"ingest: input {path!r} does not exist")
    spans = available_spans(path)
    files = data_files(path, tuple(spans) if spans else None)
    if not files:
        raise InputError(f"ingest: {path!r}: expected {_kinds()} files or span-N folders, found neither")
    return files


def resolve_input(input_base: str, span: int = -1, num_spans: int = 1) -> ResolvedInput:
    """Resolves which spans and files to read.

    Args:
      input_base: a file, a folder of files, or a folder of `span-N` folders.
      span: the last span to read; -1 means the latest one.
      num_spans: how many consecutive spans ending at `span` to read (a rolling window).
    """
    if not storage.exists(input_base):
        raise InputError(f"ingest: input {input_base!r} does not exist")
    if num_spans < 1:
        raise InputError(f"ingest: num_spans must be >= 1, got {num_spans}")
    found = available_spans(input_base)
    if not found:
        if span not in (-1, 0):
            raise InputError(f"ingest: span {span} requested but {input_base!r} has no span-N folders (it is span 0)")
        spans: tuple[int, ...] = (0,)
        files = data_files(input_base, None)
    else:
        last = found[-1] if span == -1 else span
        if last not in found:
            raise InputError(f"ingest: span {last} not found under {input_base!r}; available spans: "
                             f"{', '.join(map(str, found))}")
        spans = tuple(s for s in found if last - num_spans < s <= last)
        files = data_files(input_base, spans)
    if not files:
        if not found:
            raise InputError(f"ingest: {input_base!r}: expected {_kinds()} files or span-N folders, found neither")
        raise InputError(f"ingest: no {_kinds()} files in span {', '.join(map(str, spans))} under {input_base!r}")
    return ResolvedInput(spans=spans, files=tuple(files), fingerprint=fingerprint_files(files))
