"""The `ram` fixture: a filesystem that is not the local one, TensorFlow's in-process ram://, through fileio.

While a test runs, every os/shutil/open call and every pyarrow local-file reader given a ram:// path raises,
so a local-only call slipping into a component is caught (on gs:// it would fail, or create a local folder
named "gs:", or skip the data in silence).
"""

from __future__ import annotations

import builtins
import io
import os
import shutil
import uuid

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

GUARDED = ([(os, name) for name in ("open", "stat", "lstat", "listdir", "scandir", "mkdir", "makedirs", "remove",
                                    "unlink", "rmdir", "rename", "replace", "walk", "symlink", "readlink")]
           + [(os.path, name) for name in ("exists", "isdir", "isfile", "islink", "getsize", "realpath",
                                           "samefile")]
           + [(shutil, name) for name in ("copy", "copy2", "copyfile", "copytree", "rmtree", "move")]
           + [(builtins, "open"), (io, "open")]
           + [(pq, "ParquetFile"), (pq, "read_table"), (pcsv, "read_csv"), (pa, "OSFile"), (pa, "memory_map"),
              (pa, "input_stream")])


def _guard(function, name):
    def guarded(*args, **kwargs):
        for arg in (*args, *kwargs.values()):
            if isinstance(arg, (str, bytes, os.PathLike)) and "ram://" in os.fsdecode(arg):
                raise AssertionError(f"{name}({arg!r}): a non-local path must go through fileio")
        return function(*args, **kwargs)

    return guarded


@pytest.fixture
def ram(monkeypatch, tmp_path):
    """A fresh ram:// root; os, shutil, open and pyarrow's local readers refuse ram:// paths while the test runs."""
    for module, name in GUARDED:
        monkeypatch.setattr(module, name, _guard(getattr(module, name), f"{module.__name__}.{name}"))
    monkeypatch.chdir(tmp_path)
    for probe in (lambda: os.makedirs("ram://probe"), lambda: pq.read_table("ram://probe.parquet")):
        with pytest.raises(AssertionError, match="must go through fileio"):
            probe()
    yield f"ram://{uuid.uuid4().hex}"
    assert os.listdir(tmp_path) == [], "nothing local was created for a ram:// path"
