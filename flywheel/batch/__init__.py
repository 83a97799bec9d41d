"""Batch inference: a span scored by the served model through Beam (`flywheel predict`)."""
