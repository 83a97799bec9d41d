"""The taxi's binary training label for `flywheel logs join`, which joins labels that arrive after serving."""

from flywheel.pipelines.taxi.features import BIG_TIP_SHARE, FARE_KEY, LABEL_KEY
from flywheel.traffic.join import BinaryLabel


def binary_label():
    """The training label from the raw one, for joining labels that arrive later (`flywheel logs join`):
    `label` = 1 when the tip is over BIG_TIP_SHARE of the fare (what preprocessing trains on)."""
    return BinaryLabel("label", LABEL_KEY, FARE_KEY, BIG_TIP_SHARE)
