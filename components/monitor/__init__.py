"""Drift monitor: compares production data with a model's training baseline, feature by feature."""
