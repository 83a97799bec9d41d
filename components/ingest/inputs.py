"""Which files an ingestion reads: span resolution and the data fingerprint.

Plain functions with no TensorFlow import, so the command line can fingerprint
data in milliseconds. Layout: `<input_base>/span-<N>/...` (any depth below the
span folder); a plain file, or a folder with no `span-N` folders, is span 0.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from typing import Iterator

SUPPORTED_SUFFIXES = (".csv", ".parquet")
_SPAN_DIR = re.compile(r"^span-(\d+)$")


class InputError(ValueError):
    """The input location does not hold what ingestion needs."""


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


def _is_remote(path: str) -> bool:
    return "://" in path


def _isdir(path: str) -> bool:
    if _is_remote(path):
        from tfx.dsl.io import fileio

        return fileio.isdir(path)
    return os.path.isdir(path)


def _exists(path: str) -> bool:
    if _is_remote(path):
        from tfx.dsl.io import fileio

        return fileio.exists(path)
    return os.path.exists(path)


def _listdir(path: str) -> list[str]:
    if _is_remote(path):
        from tfx.dsl.io import fileio

        return [p.rstrip("/") for p in fileio.listdir(path)]
    return os.listdir(path)


def open_binary(path: str):
    """Opens a local or remote (gs://, s3://, ...) file for binary reading."""
    if _is_remote(path):
        from tfx.dsl.io import fileio

        return fileio.open(path, "rb")
    return open(path, "rb")


def _walk_files(root: str) -> Iterator[str]:
    for name in sorted(_listdir(root)):
        if name.startswith((".", "_")):
            continue
        path = os.path.join(root, name)
        if _isdir(path):
            yield from _walk_files(path)
        elif name.lower().endswith(SUPPORTED_SUFFIXES):
            yield path


def span_of(path: str, input_base: str) -> int:
    """The span a resolved file belongs to: N for `<input_base>/span-N/...`, else 0."""
    if not _isdir(input_base):
        return 0
    head = os.path.relpath(path, input_base).split(os.sep)[0]
    m = _SPAN_DIR.match(head)
    return int(m.group(1)) if m else 0


def available_spans(input_base: str) -> list[int]:
    """The span numbers under input_base (`span-N` folders); [] when there is no span layout."""
    if not _isdir(input_base):
        return []
    spans = []
    for name in _listdir(input_base):
        m = _SPAN_DIR.match(name)
        if m and _isdir(os.path.join(input_base, name)):
            spans.append(int(m.group(1)))
    return sorted(spans)


def data_files(input_base: str, spans: tuple[int, ...] | None) -> list[str]:
    """The CSV/Parquet files of the given spans, in a stable order (span, then path)."""
    if spans is None:
        if not _isdir(input_base):
            return [input_base]
        return list(_walk_files(input_base))
    files = []
    for span in spans:
        files.extend(_walk_files(os.path.join(input_base, f"span-{span}")))
    return files


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


def resolve_input(input_base: str, span: int = -1, num_spans: int = 1) -> ResolvedInput:
    """Resolves which spans and files to read.

    Args:
      input_base: a file, a folder of files, or a folder of `span-N` folders.
      span: the last span to read; -1 means the latest one.
      num_spans: how many consecutive spans ending at `span` to read (a rolling window).
    """
    if not _exists(input_base):
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
            raise InputError(f"ingest: span {last} not found under {input_base!r}; available spans: {found}")
        spans = tuple(s for s in found if last - num_spans < s <= last)
        files = data_files(input_base, spans)
    if not files:
        raise InputError(
            f"ingest: no {'/'.join(SUPPORTED_SUFFIXES)} files for span(s) {list(spans)} under {input_base!r}"
        )
    return ResolvedInput(spans=spans, files=tuple(files), fingerprint=fingerprint_files(files))
