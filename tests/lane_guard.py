"""The unit lane's guard (a pytest plugin loaded by tests/conftest.py).

`make test-unit` runs the tests marked neither `e2e` nor `slow`, and promises no pipeline run, no training and no
server process. While such a test runs (its set-up, body and tear-down, so the session fixtures it asks for too),
starting a `flywheel` command or server process and fitting a Keras model fail at once, naming the test and the
marker it lacks: a slow test cannot join the quick lane unmarked.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
from typing import Iterator

import pytest

LANE_MARKERS = ("e2e", "slow")


class LaneError(AssertionError):
    """A test of the unit lane did what only a test marked slow or e2e may do."""


def in_unit_lane(item) -> bool:
    return not any(item.get_closest_marker(name) for name in LANE_MARKERS)


def is_flywheel_process(args) -> bool:
    """Whether Popen's `args` start the flywheel command (`flywheel ...`, `python -m flywheel[.cli] ...`). Other
    flywheel modules run as processes are left alone (Beam's workers start as `-m flywheel.batch.worker`, and a
    refused worker would leave its pipeline waiting instead of failing the test)."""
    argv = shlex.split(args) if isinstance(args, str) else [os.fsdecode(a) for a in (
        [args] if isinstance(args, (bytes, os.PathLike)) else args)]
    if not argv:
        return False
    if os.path.basename(argv[0]) == "flywheel":
        return True
    module = argv[argv.index("-m") + 1] if "-m" in argv[:-1] else ""
    return module in ("flywheel", "flywheel.cli")


def _refusal(nodeid: str, what: str) -> LaneError:
    return LaneError(f"{nodeid} {what} in the unit lane (make test-unit: no pipeline run, no training, no server "
                     "process): mark it @pytest.mark.slow, or move it to tests/e2e/ if it is a whole scenario")


@contextlib.contextmanager
def guarded(nodeid: str) -> Iterator[None]:
    """While inside: Popen refuses the flywheel command and tf_keras' Model.fit refuses to train."""
    # Keras (tf_keras imports TensorFlow): the unit lane imports it anyway, at collection
    import tf_keras

    popen_init = subprocess.Popen.__init__

    def refusing_popen(self, args, *rest, **kwargs):
        if is_flywheel_process(args):
            command = args if isinstance(args, str) else " ".join(os.fsdecode(a) for a in args)
            raise _refusal(nodeid, f"starts a flywheel process (`{command}`)")
        popen_init(self, args, *rest, **kwargs)

    def refusing_fit(self, *args, **kwargs):
        raise _refusal(nodeid, f"trains a Keras model ({type(self).__name__}.fit)")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(subprocess.Popen, "__init__", refusing_popen)
        patch.setattr(tf_keras.Model, "fit", refusing_fit)
        yield


@contextlib.contextmanager
def _phase(item) -> Iterator[None]:
    if in_unit_lane(item):
        with guarded(item.nodeid):
            yield
    else:
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    with _phase(item):
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    with _phase(item):
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item):
    with _phase(item):
        yield

