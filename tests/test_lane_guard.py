"""The unit lane's guard (tests/lane_guard.py): unmarked tests may not start a flywheel process nor train."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import tf_keras

from tests import lane_guard
from tests.conftest import FLYWHEEL


def test_an_unmarked_test_starting_the_flywheel_command_fails_naming_itself_and_the_marker(request):
    with pytest.raises(lane_guard.LaneError, match=r"test_lane_guard\.py::test_an_unmarked.* starts a flywheel "
                                                    r"process \(`.*flywheel serve --port 0`\).*mark it "
                                                    r"@pytest.mark.slow"):
        subprocess.Popen([FLYWHEEL, "serve", "--port", "0"])
    with pytest.raises(lane_guard.LaneError):
        subprocess.run([sys.executable, "-m", "flywheel.cli", "--help"], capture_output=True)


def test_an_unmarked_test_training_a_keras_model_fails():
    model = tf_keras.Sequential([tf_keras.layers.Dense(1, input_shape=(2,))])
    model.compile(loss="mse")
    with pytest.raises(lane_guard.LaneError, match=r"trains a Keras model \(Sequential\.fit\).*make test-unit"):
        model.fit(np.zeros((4, 2)), np.zeros((4, 1)), verbose=0)


def test_other_processes_still_start_in_the_unit_lane():
    done = subprocess.run([sys.executable, "-c", "print('ok')"], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "ok"


@pytest.mark.parametrize("args, found", [
    (["/venv/bin/flywheel", "run", "taxi"], True),
    ("flywheel serve --port 0", True),
    ([sys.executable, "-m", "flywheel", "status"], True),
    ([sys.executable, "-m", "flywheel.cli", "serve"], True),
    ([sys.executable, "-c", "import flywheel"], False),
    ([sys.executable, "-m", "flywheel.batch.worker"], False),
    ([sys.executable, "-m", "pytest"], False),
    (["/usr/bin/flywheel-tool"], False),
    ([], False),
])
def test_which_commands_are_flywheel_processes(args, found):
    assert lane_guard.is_flywheel_process(args) is found


class _Item:
    def __init__(self, *markers: str):
        self.markers = markers

    def get_closest_marker(self, name):
        return name if name in self.markers else None


def test_only_tests_marked_neither_slow_nor_e2e_are_guarded():
    assert lane_guard.in_unit_lane(_Item())
    assert not lane_guard.in_unit_lane(_Item("slow")) and not lane_guard.in_unit_lane(_Item("e2e"))


@pytest.mark.slow
def test_a_slow_test_may_start_flywheel_and_train():
    assert subprocess.Popen.__init__ is not None and "refusing" not in subprocess.Popen.__init__.__name__
    assert "refusing" not in tf_keras.Model.fit.__name__
