"""DataGate: turns ExampleValidator's anomalies into a pass/fail verdict and an HTML report."""

from flywheel.components.data_gate import spec

__all__ = ["spec"]
