"""A tiny trained and pushed taxi model (the checked-in taxi runs, tests/fixtures) and serving folders made of it."""

from __future__ import annotations

import os
import shutil
import time
from typing import Callable

import pytest

from flywheel.store import layout

MODEL = "taxi"
ISSUE_ROW = {"trip_miles": 1.2, "fare": 8.5, "trip_seconds": 600, "pickup_latitude": 41.9,
             "pickup_longitude": -87.6, "trip_start_hour": 14, "trip_start_day": 3, "trip_start_month": 5,
             "payment_type": "Cash"}


@pytest.fixture(scope="session")
def pushed_version(taxi_runs) -> str:
    """The newest version Push published in the taxi runs: a real SavedModel with push.json and warmup file."""
    serving_dir = os.path.join(taxi_runs, "serving")
    latest = layout.latest(serving_dir, MODEL)
    assert latest is not None, f"the taxi runs pushed nothing into {serving_dir}"
    return latest.path


def add_version(serving_dir: str, source: str, version: int) -> str:
    """Publishes a copy of `source` as <serving_dir>/taxi/<version> the way Push does: saved_model.pb last."""
    root = os.path.join(serving_dir, MODEL)
    os.makedirs(root, exist_ok=True)
    staging = os.path.join(root, f".push-{version}-test")
    shutil.copytree(source, staging)
    final = os.path.join(root, str(version))
    os.rename(staging, final)
    return final


@pytest.fixture
def serving_dir(tmp_path, pushed_version) -> str:
    """A serving folder holding version 1 (a copy of the pushed model)."""
    folder = str(tmp_path / "serving")
    add_version(folder, pushed_version, 1)
    return folder


def until(check: Callable[[], bool], what: str, deadline_s: float = 120.0, every_s: float = 0.2) -> None:
    """Until check() is true, looked at every `every_s` seconds, failing with `what` after deadline_s: a test waits
    for the event it needs, never for a guessed time."""
    deadline = time.monotonic() + deadline_s
    while not check():
        assert time.monotonic() < deadline, f"never happened within {deadline_s:.0f} s: {what}"
        time.sleep(every_s)
