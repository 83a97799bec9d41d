"""Data, artifact and report files on any filesystem TFX's filesystem layer reaches: local, gs://, s3://, ram://.

`filesystem` picks the filesystem for a path: TFX's local plugin for local paths (no TensorFlow
import, so the command line's fingerprint and drift checks stay fast) and `tfx.dsl.io.fileio` for any URI.
Text is UTF-8 both ways, whatever the machine's locale. Files opened for reading are seekable Python file
objects, which pyarrow reads Parquet and CSV from on any of these filesystems.
"""

from __future__ import annotations

import io
import json
import os
from typing import IO, Any

__all__ = ["FileArgumentError", "JSONObjectError", "exists", "filesystem", "is_local", "isdir", "json_object",
           "listdir", "makedirs", "open_binary", "read_file", "read_text", "relative", "walk_files", "write_text",
           "write_whole"]


class FileArgumentError(ValueError):
    """A file someone named (an argument, a path in a manifest) that is missing, a folder, unreadable or empty."""


class JSONObjectError(ValueError):
    """A file's text that is not one JSON object: truncated by a crash, or edited by hand."""


def json_object(text: str, where: str) -> dict:
    """The JSON object `text` holds (`where`: the file it was read from, for the error); JSONObjectError naming
    `where` when the text is not valid JSON or not an object."""
    try:
        data = json.loads(text)
    except ValueError as e:
        raise JSONObjectError(f"{where} is not valid JSON ({e}; {len(text)} characters, truncated by a crash?)") from e
    if not isinstance(data, dict):
        raise JSONObjectError(f"{where}: expected a JSON object, got {type(data).__name__}")
    return data


def is_local(path: str) -> bool:
    return "://" not in path


def filesystem(*paths: str) -> Any:
    """TFX's filesystem for these paths: `tfx.dsl.io.fileio` when any has a scheme (gs://, s3://, ram://...);
    for local paths only, the local plugin fileio itself uses without TensorFlow (no TensorFlow import)."""
    if all(is_local(path) for path in paths):
        from tfx.dsl.io.plugins.local import LocalFilesystem  # TFX's local plugin: no TensorFlow behind it

        return LocalFilesystem
    from tfx.dsl.io import fileio  # imports TensorFlow (its gfile): only paths with a scheme need it

    return fileio


def listdir(path: str) -> list[str]:
    """Entry names of a folder ([] when it does not exist), without the trailing '/' gfile adds."""
    fs = filesystem(path)
    if not fs.isdir(path):
        return []
    return [name.rstrip("/") for name in fs.listdir(path)]


class _Readable(io.RawIOBase):
    """A fileio (TensorFlow gfile) file as a standard raw stream: gfile has no `closed`, which pyarrow needs."""

    def __init__(self, f: Any):
        super().__init__()
        self._f = f

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self._f.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._f.seek(offset, whence)
        return self._f.tell()

    def tell(self) -> int:
        return self._f.tell()

    def close(self) -> None:
        if not self.closed:
            self._f.close()
        super().close()


def exists(path: str) -> bool:
    return filesystem(path).exists(path)


def isdir(path: str) -> bool:
    return filesystem(path).isdir(path)


def makedirs(path: str) -> None:
    filesystem(path).makedirs(path)


def open_binary(path: str, mode: str = "rb") -> IO[bytes]:
    """A file opened in binary mode ("rb" or "wb"); when reading, a buffered, seekable stream on every filesystem."""
    f = filesystem(path).open(path, mode)
    if is_local(path) or "r" not in mode:
        return f
    return io.BufferedReader(_Readable(f), buffer_size=1 << 20)


def read_text(path: str) -> str:
    with open_binary(path) as f:
        return f.read().decode("utf-8")


def read_file(path: str, what: str, *, empty_ok: bool = False) -> str:
    """The UTF-8 text of a file given as `what` (e.g. "--schema"): FileArgumentError naming the file and what was
    expected when it does not exist, is a folder, cannot be read, is not UTF-8 text, or is empty (unless
    `empty_ok`: a file whose emptiness means "all defaults")."""
    expected = f"{what} {path}: expected a file"
    if not exists(path):
        raise FileArgumentError(f"{expected}, found nothing there (no such file)")
    if isdir(path):
        raise FileArgumentError(f"{expected}, found a folder")
    try:
        text = read_text(path)
    except UnicodeDecodeError as e:
        raise FileArgumentError(f"{expected} of UTF-8 text, found byte {e.object[e.start]:#04x} at "
                                f"offset {e.start}") from None
    except Exception as e:  # gfile raises its own errors (tf.errors.OpError), not OSError
        raise FileArgumentError(f"{expected} this user can read, could not read it: "
                                f"{getattr(e, 'strerror', None) or getattr(e, 'message', None) or e}") from None
    if not empty_ok and not text.strip():
        raise FileArgumentError(f"{expected} with content, found an empty file")
    return text


def write_text(path: str, text: str) -> None:
    with open_binary(path, "wb") as f:
        f.write(text.encode("utf-8"))


def walk_files(root: str) -> list[str]:
    """Every file below a folder, at any depth, as full paths in sorted order."""
    return sorted(f"{folder.rstrip('/')}/{name.rstrip('/')}"
                  for folder, _, names in filesystem(root).walk(root) for name in names)


def relative(path: str, base: str) -> str:
    """path relative to base: os.path.relpath locally; for a URI below base, compared as strings (no local
    working directory is involved)."""
    if is_local(path) and is_local(base):
        return os.path.relpath(path, base)
    prefix = base.rstrip("/") + "/"
    if not path.startswith(prefix):
        raise ValueError(f"{path} is not below {base}")
    return path[len(prefix):]


def write_whole(folder: str, name: str, data: bytes) -> str:
    """Writes `folder/name` so that it appears whole or not at all; returns its path.

    Local: a hidden temporary file, fsynced, renamed into place (the folder fsynced after; `os` only for the
    fsyncs, which the filesystem layer has no call for). Object storage:
    the object is written once under its final name (it becomes visible when the upload completes).
    """
    fs = filesystem(folder)
    fs.makedirs(folder)
    final = os.path.join(folder, name)
    if not is_local(folder):
        with fs.open(final, "wb") as f:
            f.write(data)
        return final
    temporary = os.path.join(folder, f".{name}.tmp")
    try:
        with fs.open(temporary, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        fs.rename(temporary, final, overwrite=True)
    finally:
        if fs.exists(temporary):
            fs.remove(temporary)
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    return final
