"""The library API's errors and the checks of its arguments.

`UsageError` for a bad argument or input location (the message names it, with no 'flywheel:' prefix),
`CompileError` when the Kubeflow compiler fails. `registry.UnknownPipelineError` (an unknown pipeline name) and
`lock.LockedError` (another process holds the output directory) come from their own modules.
"""

from __future__ import annotations

import os
from typing import Any, Optional

from flywheel import storage
from flywheel.data import inputs


class UsageError(ValueError):
    """A bad argument or input location; the message names it (no 'flywheel:' prefix)."""


class CompileError(RuntimeError):
    """The Kubeflow compiler failed on a pipeline; the message carries its error in one line."""


def folder_argument(path: Optional[str], what: str) -> None:
    """UsageError naming `what` (e.g. "--output-dir") when a folder to write into is a file, or, on the local
    filesystem, could not be created: a file in its path, or a folder where none can be made (/proc). Checked by
    making the first missing folder of its path and removing it again: nothing is left behind."""

    if not path:
        return
    if storage.filesystem(path).exists(path):
        if not storage.filesystem(path).isdir(path):
            raise UsageError(f"{what} {path}: expected a folder (new or existing), found a file")
        return
    creatable(path, what)


def creatable(path: str, what: str) -> None:
    """UsageError naming `what` when a missing local folder could not be made; nothing when it exists or is not
    local."""
    if not storage.is_local(path) or os.path.exists(path):
        return
    first_missing = os.path.abspath(path)
    while not os.path.exists(os.path.dirname(first_missing)):
        first_missing = os.path.dirname(first_missing)
    parent = os.path.dirname(first_missing)
    if not os.path.isdir(parent):
        raise UsageError(f"{what} {path}: expected a folder (new or existing), found a file in its path: {parent}")
    try:
        os.mkdir(first_missing)
    except OSError as e:
        raise UsageError(f"{what} {path}: expected a folder (new or existing), but making {first_missing} failed: "
                         f"{e.strerror or e}") from None
    os.rmdir(first_missing)


def new_or_empty_folder(path: str, what: str) -> None:
    """UsageError naming `what` (`predict: --output`) unless path is a new or empty folder: files of an earlier
    run would mix with this one's. Light (no Beam, no TensorFlow): the command line checks it before importing
    them."""
    fs = storage.filesystem(path)
    if fs.exists(path) and (not fs.isdir(path) or fs.listdir(path)):
        raise UsageError(f"{what} {path} already exists and is not an empty folder; give a new folder (earlier "
                         "predictions would mix with these)")


def file_argument(path: Optional[str], what: str) -> None:
    """UsageError naming `what` when a file to write is a folder; its folder is made when missing."""

    if not path:
        return
    if storage.filesystem(path).isdir(path):
        raise UsageError(f"{what} {path}: expected a file to write, found a folder")
    parent = os.path.dirname(path)
    folder_argument(parent, f"{what}'s folder")
    if parent:
        storage.filesystem(parent).makedirs(parent)


def resolve_input(data_root: str, span: int, num_spans: int, option: str = "") -> Any:
    """The data files of spans (span - num_spans, span] under data_root (`inputs.resolve_input`); UsageError
    naming what is missing, and the command's option when given (`retrain: --data`)."""
    if option and not storage.exists(data_root):
        raise UsageError(f"{option} {data_root} does not exist")
    try:
        return inputs.resolve_input(data_root, span, num_spans)
    except (ValueError, OSError) as e:
        raise UsageError(f"{option} {data_root}: {str(e).removeprefix('ingest: ')}" if option else str(e)) from e


def spans_argument(data_root: str, option: str) -> None:
    """UsageError naming `option` (`retrain: --data`) unless data_root is a folder of span-N folders."""
    if not storage.exists(data_root):
        raise UsageError(f"{option} {data_root} does not exist")
    try:
        spans = inputs.span_folders(data_root)
    except (ValueError, OSError) as e:
        raise UsageError(f"{option} {data_root}: {str(e).removeprefix('ingest: ')}") from e
    if not spans:
        raise UsageError(f"{option} {data_root}: expected a folder of span-N folders (span-1/, span-2/, ... as "
                         "`flywheel simulate` and `flywheel logs join` write), found none")
