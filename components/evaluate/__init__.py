"""Evaluate: TFMA evaluation of a candidate against the model in serving, without a Resolver node."""
