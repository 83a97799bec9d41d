"""Decide: the continuous-training decision at the head of a recurring pipeline run."""
