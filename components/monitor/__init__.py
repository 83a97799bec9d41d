"""Drift monitor: compares production data with a model's training baseline, feature by feature."""

from flywheel.components.monitor import spec

__all__ = ["spec"]
