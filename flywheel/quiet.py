"""Keeps TensorFlow, Beam and absl quiet unless --verbose; shows a line per component instead."""

from __future__ import annotations

import atexit
import logging
import os
import re
import sys
import threading
import time
import warnings
from typing import Callable, NoReturn, TextIO

import absl.logging


def verbose_from_environment() -> bool:
    """FLYWHEEL_VERBOSE set to anything but "" or "0": how a runner script run by the TFX CLI is told --verbose."""
    return os.environ.get("FLYWHEEL_VERBOSE", "") not in ("", "0")


def quiet_environment(verbose: bool) -> None:
    """Call before importing TensorFlow or TFX."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    if verbose:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    warnings.filterwarnings("ignore")


_START = re.compile(r"^(?:Component|node) (\S+) is running\.$")
_END = re.compile(r"^(?:Component|node) (\S+) is finished\.$")
_CACHED = re.compile(r"^A cached execution \d+ is used\.$")
_SKIPPED = re.compile(r"^Skipping execution for ")


class ProgressHandler(logging.Handler):
    """Turns the runners' 'Component X is running/finished' log lines into progress lines with durations."""

    def __init__(self, out: TextIO | None = None, clock: Callable[[], float] = time.monotonic):
        """out: where the lines go (default: stdout). The process's stdout or stderr is looked up again for every
        line, so a notebook or test harness that swaps sys.stdout/sys.stderr later is followed, and a stream it
        has closed since is never written to."""
        super().__init__(level=logging.INFO)
        self._standard = "stdout" if out is None or out is sys.stdout else "stderr" if out is sys.stderr else None
        self._given, self._clock = out, clock
        self.started: dict[str, float] = {}
        self.durations: dict[str, float] = {}
        self._current: str | None = None
        self._note = ""

    @property
    def _out(self) -> TextIO:
        return getattr(sys, self._standard) if self._standard else self._given

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a malformed third-party log record is not our progress line
            return
        if m := _START.match(message):
            self._current, self._note = m.group(1), ""
            self.started[m.group(1)] = self._clock()
            self._out.write(f"  ▶ {m.group(1)} ...\n")
        elif _CACHED.match(message):
            self._note = " (cached)"
            return
        elif _SKIPPED.match(message):
            self._note = " (skipped: condition not met)"
            return
        elif m := _END.match(message):
            node = m.group(1)
            self.durations[node] = self._clock() - self.started.get(node, self._clock())
            note, self._note = (self._note, "") if node == self._current else ("", self._note)
            self._out.write(f"  ✓ {node} {self.durations[node]:.1f} s{note}\n")
        else:
            return
        self._out.flush()


class _ErrorHandler(logging.StreamHandler):
    """absl errors, one line each, on stderr: the process's current sys.stderr, looked up for every record (as
    ProgressHandler does)."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:  # StreamHandler sets it once; stderr is looked up instead
        pass


def install(verbose: bool, out: TextIO | None = None) -> ProgressHandler:
    """Call after importing TFX: routes absl INFO to a progress handler writing to `out` (default stdout),
    the rest at ERROR. Calling it again (a notebook running several pipelines) replaces the handlers."""
    handler = ProgressHandler(out)
    absl.logging.set_verbosity(absl.logging.INFO)
    absl_logger = logging.getLogger("absl")
    for old in [h for h in absl_logger.handlers if isinstance(h, (ProgressHandler, _ErrorHandler))]:
        absl_logger.removeHandler(old)
    absl_logger.addHandler(handler)
    if not verbose:
        errors = _ErrorHandler()
        errors.setLevel(logging.ERROR)
        errors.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        absl_logger.addHandler(errors)
        absl_logger.propagate = False
        logging.getLogger().setLevel(logging.ERROR)
        for name in ("apache_beam", "tensorflow"):
            logging.getLogger(name).setLevel(logging.ERROR)
        _quiet_tensorflow_logger()
    return handler


def _quiet_tensorflow_logger() -> None:
    """TensorFlow configures its logger on first use and, in an interactive kernel (Jupyter), sets it to INFO,
    undoing a level set before. Make it configure itself now, then set the level. A pipeline run imports
    TensorFlow anyway; this only moves the import earlier."""
    from tensorflow.python.platform import tf_logging  # TensorFlow: a pipeline run imports it anyway (see above)

    tf_logging.get_logger().setLevel(logging.ERROR)


def end_process(code: int) -> NoReturn:
    """The end of a flywheel process (the command, a runner script): exit handlers run and output is flushed as at
    any exit, but the interpreter's teardown and C++ static destructors are skipped: among them pyarrow's thread
    pools, which can be destroyed while one of their Parquet threads is still alive and then abort the finished
    process with SIGABRT ("terminate called without an active exception", apache/arrow#34314), and TensorFlow's
    functions, whose finalizers print tracebacks once module globals are gone. A process that leaves a non-daemon
    thread running exits the usual way, which waits for it."""
    if any(t.is_alive() and not t.daemon and t is not threading.main_thread() for t in threading.enumerate()):
        sys.exit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`| head`) or stream: nothing more can be written to it
            pass
    os._exit(code)
