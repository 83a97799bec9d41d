"""Decide: the continuous-training decision at the head of a recurring pipeline run."""

from flywheel.components.decide import spec

__all__ = ["spec"]
