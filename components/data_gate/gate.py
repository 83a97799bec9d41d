"""The gate's logic as plain functions: which anomalies block, and the verdict."""

from __future__ import annotations

import dataclasses
import difflib
from typing import Sequence

from tensorflow_metadata.proto.v0 import anomalies_pb2


@dataclasses.dataclass(frozen=True)
class Finding:
    split: str
    feature: str
    type: str
    description: str
    allowed: bool


@dataclasses.dataclass(frozen=True)
class Verdict:
    passed: bool
    findings: tuple[Finding, ...]
    allowed_anomalies: tuple[str, ...]

    @property
    def blocking(self) -> list[Finding]:
        return [f for f in self.findings if not f.allowed]

    def to_dict(self) -> dict:
        return {
            "gate": "data_validation",
            "passed": self.passed,
            "num_anomalies": len(self.findings),
            "num_blocking": len(self.blocking),
            "allowed_anomalies": list(self.allowed_anomalies),
            "findings": [dataclasses.asdict(f) for f in self.findings],
            "decision": ("passed: no anomalies outside the allow-list" if self.passed else
                         f"stopped: {len(self.blocking)} anomalies not in the allow-list"),
        }


def parse_allow_list(text: str) -> tuple[str, ...]:
    """'TYPE,feature:TYPE,feature:*' -> entries; every TYPE must be a TFDV AnomalyInfo.Type name."""
    entries = tuple(e.strip() for e in (text or "").split(",") if e.strip())
    known = set(anomalies_pb2.AnomalyInfo.Type.keys())
    for entry in entries:
        kind = entry.rpartition(":")[2]
        if kind != "*" and kind not in known:
            near = sorted(k for k in known if kind.upper() in k)[:5] or difflib.get_close_matches(kind.upper(), known)
            raise ValueError(f"DataGate: allowed_anomalies entry {entry!r}: unknown anomaly type {kind!r}"
                             + (f"; did you mean one of {near}?" if near else ""))
    return entries


def _allowed(feature: str, kind: str, allow: Sequence[str]) -> bool:
    return kind in allow or f"{feature}:{kind}" in allow or f"{feature}:*" in allow


def findings(split: str, anomalies: anomalies_pb2.Anomalies, allow: Sequence[str]) -> list[Finding]:
    out = []
    infos = list(anomalies.anomaly_info.items())
    if anomalies.HasField("dataset_anomaly_info"):
        infos.append(("(dataset)", anomalies.dataset_anomaly_info))
    for feature, info in sorted(infos):
        for reason in info.reason:
            kind = anomalies_pb2.AnomalyInfo.Type.Name(reason.type)
            out.append(Finding(split, feature, kind, reason.description or reason.short_description,
                               _allowed(feature, kind, allow)))
    return out


def decide(per_split: dict[str, anomalies_pb2.Anomalies], allow_list: str) -> Verdict:
    allow = parse_allow_list(allow_list)
    found = [f for split in sorted(per_split) for f in findings(split, per_split[split], allow)]
    return Verdict(passed=all(f.allowed for f in found), findings=tuple(found), allowed_anomalies=allow)
