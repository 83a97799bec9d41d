"""Serving: the model server, its request logs, replaying spans as traffic, and joining labels to logs."""
