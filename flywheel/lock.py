"""One run per output directory: an exclusive, non-blocking lock that dies with its process."""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import os
from typing import Iterator

LOCK_FILE = os.path.join(".flywheel", "lock")


class LockedError(RuntimeError):
    """Another flywheel process holds this output directory."""


class LockPermissionError(LockedError):
    """This user may not create or open the output directory's lock file (it was written by another user)."""


@contextlib.contextmanager
def exclusive(output_dir: str) -> Iterator[None]:
    """Holds the output directory's lock; raises LockedError at once if another process holds it, and
    LockPermissionError (a LockedError) if this user may not create or open the lock file.

    The lock is an flock on an open file: the kernel releases it when the holder exits, killed or not,
    so a crashed run never blocks the next one.
    """
    path = os.path.join(output_dir, LOCK_FILE)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        handle = open(path, "a+", encoding="utf-8")
    except PermissionError as e:
        raise LockPermissionError(
            f"{output_dir}: cannot open the lock file {e.filename or path} (permission denied, running as uid "
            f"{os.getuid()}); the folder was written by another user: make it writable by this user (chown, or "
            "fsGroup on the volume), or use another --output-dir") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise LockedError(f"{output_dir} is in use by {holder}; refusing to start a second run "
                          "there (wait for it to finish, or use another --output-dir)") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()} since {datetime.datetime.now().isoformat(timespec='seconds')}")
    handle.flush()
    try:
        yield
    finally:
        handle.seek(0)
        handle.truncate()
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()
