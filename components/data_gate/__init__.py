"""DataGate: turns ExampleValidator's anomalies into a pass/fail verdict and an HTML report."""
