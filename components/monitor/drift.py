"""Drift checks between two profiles. Each check carries its evidence: metric, value, threshold, verdict.

Numeric features: Kolmogorov–Smirnov statistic D (not its p-value, which flags everything at
millions of rows), PSI and Jensen–Shannon divergence on the baseline's 20 quantile bins, and the
trimmed Wasserstein-1 distance divided by the baseline's interquartile range. Categorical features:
L-infinity distance and Jensen–Shannon divergence of value frequencies, and the share of current rows
whose value the baseline never saw. Every feature: the change in the missing-value rate.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

import numpy as np

from flywheel.components.monitor import profile as profile_lib
from flywheel.components.monitor.profile import CategoricalProfile, DatasetProfile, NumericProfile

NUM_BINS = 20
_EPS = 1e-4


@dataclasses.dataclass(frozen=True)
class Thresholds:
    """Effect-size thresholds: a real shift in location, scale or shares crosses them; a resample does not."""

    ks: float = 0.1
    psi: float = 0.2
    js_numeric: float = 0.05
    wasserstein: float = 0.2
    linf: float = 0.1
    js_categorical: float = 0.05
    unseen: float = 0.05
    missing: float = 0.05


def _cdf(quantiles: list[float], x: np.ndarray) -> np.ndarray:
    q = np.asarray(quantiles)
    return np.interp(x, q, profile_lib.QUANTILES, left=0.0, right=1.0)


def _js(p: np.ndarray, q: np.ndarray) -> float:
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2

    def kl(a, b):
        mask = a > 0
        return float(np.sum(a[mask] * np.log2(a[mask] / b[mask])))

    return max(0.0, 0.5 * kl(p, m) + 0.5 * kl(q, m))


def _check(metric: str, value: float, threshold: float) -> dict[str, Any]:
    value = float(value)
    return {"metric": metric, "value": round(value, 6), "threshold": threshold,
            "drift": bool(np.isfinite(value) and value > threshold)}


def _missing_rate(p) -> float:
    return p.missing / p.count if p.count else 0.0


def _trimmed_wasserstein(base: NumericProfile, cur: NumericProfile) -> float:
    """Wasserstein-1 between the 1%-99% quantile functions, over the baseline's interquartile range.

    Trimming and a robust scale keep a few extreme values (a 1,700-mile taxi trip) from deciding.
    """
    qb, qc = np.asarray(base.quantiles), np.asarray(cur.quantiles)
    n = len(qb) - 1
    lo, hi = n // 100, n - n // 100
    w1 = float(np.mean(np.abs(qb[lo:hi + 1] - qc[lo:hi + 1])))
    scale = float(qb[3 * n // 4] - qb[n // 4])
    if scale <= 0:
        scale = base.std if base.std and np.isfinite(base.std) and base.std > 0 else 1.0
    return w1 / scale


def numeric_checks(base: NumericProfile, cur: NumericProfile, t: Thresholds) -> list[dict[str, Any]]:
    checks = [_check("missing_rate_change", abs(_missing_rate(cur) - _missing_rate(base)), t.missing)]
    if not base.quantiles or not cur.quantiles:
        return checks
    grid = np.union1d(base.quantiles, cur.quantiles)
    checks.append(_check("ks_statistic", np.max(np.abs(_cdf(base.quantiles, grid) - _cdf(cur.quantiles, grid))), t.ks))
    edges = np.unique(np.asarray(base.quantiles)[:: len(base.quantiles) // NUM_BINS])[1:-1]
    points = np.concatenate([[-np.inf], edges, [np.inf]])
    pb = np.diff(np.where(np.isinf(points), (points > 0).astype(float), _cdf(base.quantiles, points)))
    pc = np.diff(np.where(np.isinf(points), (points > 0).astype(float), _cdf(cur.quantiles, points)))
    pb, pc = np.clip(pb, _EPS, None), np.clip(pc, _EPS, None)
    checks.append(_check("psi", np.sum((pc - pb) * np.log(pc / pb)), t.psi))
    checks.append(_check("jensen_shannon", _js(pb, pc), t.js_numeric))
    checks.append(_check("wasserstein_normalized", _trimmed_wasserstein(base, cur), t.wasserstein))
    return checks


def categorical_checks(base: CategoricalProfile, cur: CategoricalProfile, t: Thresholds) -> list[dict[str, Any]]:
    checks = [_check("missing_rate_change", abs(_missing_rate(cur) - _missing_rate(base)), t.missing)]
    nb, nc = sum(base.values.values()), sum(cur.values.values())
    if not nb or not nc:
        return checks
    keys = sorted(set(base.values) | set(cur.values))
    fb = np.array([base.values.get(k, 0) / nb for k in keys])
    fc = np.array([cur.values.get(k, 0) / nc for k in keys])
    checks.append(_check("l_infinity", np.max(np.abs(fb - fc)), t.linf))
    checks.append(_check("jensen_shannon", _js(fb + 1e-12, fc + 1e-12), t.js_categorical))
    if profile_lib.OTHER not in base.values:
        unseen = sum(v for k, v in cur.values.items() if k not in base.values) / nc
        checks.append(_check("unseen_share", unseen, t.unseen))
    return checks


def _histogram(p) -> dict[str, Any]:
    if isinstance(p, NumericProfile):
        return {"quantiles": p.quantiles[::50]} if p.quantiles else {}
    n = sum(p.values.values()) or 1
    top = sorted(p.values.items(), key=lambda kv: -kv[1])[:15]
    return {"frequencies": {k: v / n for k, v in top}}


def compare(baseline: DatasetProfile, current: DatasetProfile, thresholds: Optional[dict[str, Thresholds]] = None,
            default: Thresholds = Thresholds(), prediction_column: str = "prediction") -> dict[str, Any]:
    """Per-feature drift between two profiles; raises MonitorError naming columns that do not match."""
    thresholds = thresholds or {}
    missing = sorted(set(baseline.columns) - set(current.columns))
    extra = sorted(set(current.columns) - set(baseline.columns) - {prediction_column})
    if missing:
        raise profile_lib.MonitorError(
            f"monitor: current data ({current.source}) lacks column(s) {missing} present in the baseline "
            f"({baseline.source}); current has {sorted(current.columns)}")
    features: dict[str, Any] = {}
    for name, base in baseline.columns.items():
        cur = current.columns[name]
        t = thresholds.get(name, default)
        if type(base) is not type(cur):
            raise profile_lib.MonitorError(f"monitor: column {name!r} is {base.kind} in the baseline but {cur.kind} "
                                           "in the current data")
        checks = numeric_checks(base, cur, t) if isinstance(base, NumericProfile) else categorical_checks(base, cur, t)
        worst = max((c["value"] / c["threshold"] for c in checks if c["threshold"]), default=0.0)
        features[name] = {"drift": any(c["drift"] for c in checks), "kind": base.kind, "checks": checks,
                          "severity": round(float(worst), 4),
                          "baseline": _histogram(base), "current": _histogram(cur)}
    result: dict[str, Any] = {
        "drift_detected": any(f["drift"] for f in features.values()),
        "rows": {"baseline": baseline.rows, "current": current.rows},
        "features": dict(sorted(features.items(), key=lambda kv: -kv[1]["severity"])),
        "ignored_columns": extra,
    }
    if prediction_column in current.columns and prediction_column in baseline.columns:
        result["prediction"] = result["features"][prediction_column]
    return result
