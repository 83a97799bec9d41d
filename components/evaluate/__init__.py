"""Evaluate: TFMA evaluation of a candidate against the model in serving, without a Resolver node."""

from flywheel.components.evaluate import spec

__all__ = ["spec"]
