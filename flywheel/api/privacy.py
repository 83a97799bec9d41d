"""How anonymous a dataset is under its pipeline's privacy policy (k-anonymity, l-diversity), with a report."""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Optional

from flywheel.api.errors import UsageError, folder_argument
from flywheel.data.parsing import columns_from_schema, load_schema
from flywheel.pipelines import registry
from flywheel.privacy import anonymity, data, policy, report


@dataclasses.dataclass(frozen=True)
class PrivacyResult:
    """The check's verdict: k and l against the policy's thresholds, with their evidence (`anonymity`), the
    policy and data it was measured on, and the report's path when one was written."""

    passed: bool
    anonymity: anonymity.Anonymity
    policy: str
    data: str
    files: int
    seconds: float
    report: Optional[str] = None

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "policy": self.policy, "data": self.data, "files": self.files,
                "seconds": self.seconds, "report": self.report, **self.anonymity.to_dict()}


def pipeline_policy(pipeline: str, policy_path: Optional[str] = None) -> policy.Policy:
    """The pipeline's privacy policy (the one beside its schema, or `policy_path`), checked against its schema:
    every schema column has a role and every declared column is a schema column, except direct identifiers (ids
    such as trip_id are not schema columns: Ingest passes over them)."""
    schema_path = registry.get(pipeline).schema_path()
    found = policy.load(policy_path or policy.beside(schema_path))
    columns = [c.name for c in columns_from_schema(load_schema(schema_path))]
    ids = [c.name for c in found.direct_identifiers if c.name not in columns]
    policy.check_columns(found, [*ids, *columns], f"pipeline {pipeline!r}'s schema ({schema_path})")
    return found


def privacy_check(pipeline: str, data_path: str, *, policy_path: Optional[str] = None,
                  report_dir: Optional[str] = None, smallest: int = 10) -> PrivacyResult:
    """k and l of the data under `data_path` (a CSV/Parquet file, folder, or folder of span-N folders) over the
    policy's quasi-identifiers, after its generalization; `report_dir`: also report.html and privacy.json there."""
    folder_argument(report_dir, "privacy check: --report")
    start = time.perf_counter()
    try:
        found_policy = pipeline_policy(pipeline, policy_path)
        table, files = data.read(data_path, found_policy)
        found = anonymity.measure(table, found_policy, smallest=smallest)
    except (policy.PolicyError, data.DataError, anonymity.AnonymityError) as e:
        raise UsageError(str(e)) from e
    result = PrivacyResult(passed=found.passed, anonymity=found, policy=found_policy.source, data=data_path,
                           files=len(files), seconds=round(time.perf_counter() - start, 3))
    if report_dir:
        path = os.path.join(report_dir, report.REPORT_FILE)
        result = dataclasses.replace(result, report=path)
        report.write(report_dir, found, found_policy, data_path, result.to_dict())
    return result
