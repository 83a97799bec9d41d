"""Files on TensorFlow's in-process ram:// filesystem for the object-storage tests (the `ram` fixture is in
conftest.py)."""

from __future__ import annotations

import os

from tfx.dsl.io import fileio


def write(path: str, content: bytes) -> None:
    fileio.makedirs(os.path.dirname(path))
    with fileio.open(path, "wb") as f:
        f.write(content)


def read(path: str) -> bytes:
    with fileio.open(path, "rb") as f:
        return f.read()


def upload(local_dir: str, uri: str) -> str:
    """A copy of a local folder at uri (the way data lands in a bucket); returns uri."""
    for folder, _, names in os.walk(local_dir):
        for name in names:
            with open(os.path.join(folder, name), "rb") as f:
                write(f"{uri}/{os.path.relpath(os.path.join(folder, name), local_dir)}", f.read())
    return uri
