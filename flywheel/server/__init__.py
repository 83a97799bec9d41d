"""The model server (`flywheel serve`): TF Serving's REST API over a serving folder, and its request logs.

See README.md ("Modules") for the package's modules, in the order a request walks down them.
"""
