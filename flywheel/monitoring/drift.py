"""The drift decision: two profiles and a policy in, one result out (used by the CLI, DriftMonitor and retrain).

Each check carries its evidence: metric, value, threshold, verdict. Numeric features: the
Kolmogorov–Smirnov statistic D (not its p-value, which flags everything at millions of rows), PSI and
Jensen–Shannon divergence on the baseline's 20 quantile bins, and the Wasserstein-1 distance of the
central 98% (1st to 99th percentile) divided by the baseline's interquartile range. Categorical
features: L-infinity distance and Jensen–Shannon divergence of value frequencies, and the share of
current rows whose value the baseline never saw. Every feature: the change in the missing-value rate.
All are computed exactly from the profiles' value tables (restricted to the hash range both sampled,
when a column has more than K distinct values), so on complete tables they equal the statistics of
the raw rows. Label columns (the schema's features not in the SERVING environment) are compared the
same way but reported apart, as label drift; they take no part in the feature drift decision.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Optional

import numpy as np

from flywheel.data import parsing
from flywheel.monitoring.profile import (
    CATEGORICAL,
    NUMERIC,
    ColumnProfile,
    DatasetProfile,
    MonitorError,
    schema_kinds,
)
from flywheel.server.log_columns import REQUEST_LOG_COLUMNS, ROLLOUT_COLUMNS

QUANTILE_BINS = 20
TRIM = 0.01  # the Wasserstein distance compares the 1st..99th percentiles
_PSI_FLOOR = 1e-4
_CHART_BINS = 30
_CHART_CATEGORIES = 15


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


@dataclasses.dataclass(frozen=True)
class Policy:
    """What to compare and the thresholds: from a TFDV schema (`from_schema`) or the defaults."""

    default: Thresholds = Thresholds()
    per_feature: Mapping[str, Thresholds] = dataclasses.field(default_factory=dict)
    features: Optional[tuple[str, ...]] = None  # None: every baseline column that is not a label or request column
    labels: tuple[str, ...] = ()
    prediction_column: str = "prediction"
    schema: str = ""
    kinds: Mapping[str, str] = dataclasses.field(default_factory=dict)  # schema types: numeric | categorical

    def thresholds(self, name: str) -> Thresholds:
        return self.per_feature.get(name, self.default)

    @classmethod
    def from_schema(cls, schema_path: str = "", labels: tuple[str, ...] = (), default: Thresholds = Thresholds()
                    ) -> "Policy":
        """Features and labels of a TFDV schema and its drift_comparator thresholds; defaults without one.

        A feature not in the SERVING environment (`parsing.in_serving`) is a label's source: it is compared as
        label drift, not feature drift.
        """
        if not schema_path:
            return cls(default=default, labels=tuple(labels))
        schema = parsing.load_schema(schema_path)
        kinds = schema_kinds(parsing.columns_from_schema(schema))
        names, label_names, per_feature = [], list(labels), {}
        for feature in schema.feature:
            if not parsing.in_serving(feature):
                label_names.append(feature.name)
            else:
                names.append(feature.name)
            comparator = feature.drift_comparator
            changes = {}
            if comparator.HasField("infinity_norm"):
                changes["linf"] = comparator.infinity_norm.threshold
            if comparator.HasField("jensen_shannon_divergence"):
                changes["js_categorical"] = changes["js_numeric"] = comparator.jensen_shannon_divergence.threshold
            if changes:
                per_feature[feature.name] = dataclasses.replace(default, **changes)
        return cls(default=default, per_feature=per_feature, features=tuple(n for n in names if n not in label_names),
                   labels=tuple(dict.fromkeys(label_names)), schema=schema_path, kinds=kinds)


# ---- weighted empirical distributions from value tables ----------------------------------------------------

@dataclasses.dataclass(frozen=True)
class _Dist:
    values: np.ndarray  # sorted distinct values
    cum: np.ndarray  # cumulative counts
    total: float

    @classmethod
    def of(cls, table: Mapping[float, int]) -> "_Dist":
        values = np.array(sorted(table), dtype=np.float64)
        counts = np.array([table[v] for v in values.tolist()], dtype=np.float64)
        return cls(values, np.cumsum(counts), float(counts.sum()))

    def cdf(self, x: np.ndarray) -> np.ndarray:
        """P(X <= x)."""
        idx = np.searchsorted(self.values, x, side="right")
        return np.concatenate([[0.0], self.cum])[idx] / self.total

    def quantile(self, u: np.ndarray) -> np.ndarray:
        """The inverse CDF: the smallest value whose CDF reaches u (numpy's 'inverted_cdf')."""
        idx = np.searchsorted(self.cum, np.asarray(u) * self.total - 1e-9 * self.total, side="left")
        return self.values[np.clip(idx, 0, len(self.values) - 1)]


def ks_statistic(b: _Dist, c: _Dist) -> float:
    grid = np.union1d(b.values, c.values)
    return float(np.max(np.abs(b.cdf(grid) - c.cdf(grid))))


def quantile_bins(b: _Dist, c: _Dist) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bins (-inf, e1], (e1, e2], ..., (em, inf) at the baseline's 5%..95% quantiles; shares of each side."""
    edges = np.unique(b.quantile(np.arange(1, QUANTILE_BINS) / QUANTILE_BINS))
    pb = np.diff(np.concatenate([[0.0], b.cdf(edges), [1.0]]))
    pc = np.diff(np.concatenate([[0.0], c.cdf(edges), [1.0]]))
    return edges, pb, pc


def psi(pb: np.ndarray, pc: np.ndarray) -> float:
    pb, pc = np.clip(pb, _PSI_FLOOR, None), np.clip(pc, _PSI_FLOOR, None)
    return float(np.sum((pc - pb) * np.log(pc / pb)))


def jensen_shannon(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen–Shannon divergence, base 2 (0..1); equals scipy's jensenshannon(p, q, base=2) ** 2."""
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2

    def kl(a: np.ndarray) -> float:
        mask = a > 0
        return float(np.sum(a[mask] * np.log2(a[mask] / m[mask])))

    return max(0.0, 0.5 * kl(p) + 0.5 * kl(q))


def trimmed_wasserstein(b: _Dist, c: _Dist) -> float:
    """Wasserstein-1 between the two distributions' central 98% (mean |Qb(u) - Qc(u)| over u in [1%, 99%]),
    over the baseline's interquartile range: trimming and a robust scale keep a few extreme values
    (a 1,700-mile taxi trip) from deciding."""
    lo, hi = TRIM, 1.0 - TRIM
    cuts = np.concatenate([b.cum / b.total, c.cum / c.total, [lo, hi]])
    cuts = np.unique(np.clip(cuts, lo, hi))
    mids, widths = (cuts[1:] + cuts[:-1]) / 2, np.diff(cuts)
    w1 = float(np.sum(np.abs(b.quantile(mids) - c.quantile(mids)) * widths)) / (hi - lo)
    q1, q3 = b.quantile(np.array([0.25, 0.75]))
    scale = float(q3 - q1)
    if scale <= 0:
        scale = float(np.sqrt(np.sum(np.diff(np.concatenate([[0.0], b.cum])) * (b.values - _mean(b)) ** 2) / b.total))
    return w1 / scale if scale > 0 else (0.0 if w1 == 0 else math.inf)


def _mean(d: _Dist) -> float:
    return float(np.sum(np.diff(np.concatenate([[0.0], d.cum])) * d.values) / d.total)


# ---- checks -------------------------------------------------------------------------------------------------

def _check(metric: str, value: float, threshold: float, words: str) -> dict[str, Any]:
    value = float(value)
    return {"metric": metric, "value": round(value, 6), "threshold": threshold,
            "drift": bool(math.isfinite(value) and value > threshold) or value == math.inf,
            "rule": f"drift when {words} > {threshold:g}"}


def _missing_rate(p: ColumnProfile) -> float:
    return p.missing / p.count if p.count else 0.0


def _common(base: ColumnProfile, cur: ColumnProfile) -> tuple[dict, dict]:
    """Both value tables on the hash range both hold completely (all of them when neither is sampled); a sample
    of an older profile (drawn with the legacy text hash) is met by the other side's complete table restricted
    with that hash."""
    legacy = base.legacy_hash or cur.legacy_hash
    bound = min(base.hash_bound(), cur.hash_bound())
    return base.restricted(bound, legacy), cur.restricted(bound, legacy)


def numeric_checks(base: ColumnProfile, cur: ColumnProfile, t: Thresholds) -> tuple[list[dict], dict]:
    checks = [_check("missing_rate_change", abs(_missing_rate(cur) - _missing_rate(base)), t.missing,
                     "the missing-value rate changes by")]
    tb, tc = _common(base, cur)
    if not tb or not tc:
        return checks, {}
    b, c = _Dist.of(tb), _Dist.of(tc)
    _, pb, pc = quantile_bins(b, c)
    checks += [
        _check("ks_statistic", ks_statistic(b, c), t.ks, "the Kolmogorov–Smirnov distance D"),
        _check("psi", psi(pb, pc), t.psi, "PSI over the baseline's 20 quantile bins"),
        _check("jensen_shannon", jensen_shannon(pb, pc), t.js_numeric,
               "the Jensen–Shannon divergence of those bins"),
        _check("wasserstein_normalized", trimmed_wasserstein(b, c), t.wasserstein,
               "the Wasserstein distance of the 1st–99th percentiles, in baseline IQRs,"),
    ]
    return checks, numeric_chart(b, c)


def categorical_checks(base: ColumnProfile, cur: ColumnProfile, t: Thresholds) -> tuple[list[dict], dict]:
    checks = [_check("missing_rate_change", abs(_missing_rate(cur) - _missing_rate(base)), t.missing,
                     "the missing-value rate changes by")]
    tb, tc = _common(base, cur)
    nb, nc = sum(tb.values()), sum(tc.values())
    if not nb or not nc:
        return checks, {}
    keys = sorted(set(tb) | set(tc))
    fb = np.array([tb.get(k, 0) / nb for k in keys])
    fc = np.array([tc.get(k, 0) / nc for k in keys])
    unseen = sum(v for k, v in tc.items() if k not in tb) / nc
    checks += [
        _check("l_infinity", np.max(np.abs(fb - fc)), t.linf, "a category's share changes by"),
        _check("jensen_shannon", jensen_shannon(fb, fc), t.js_categorical,
               "the Jensen–Shannon divergence of the shares"),
        _check("unseen_share", unseen, t.unseen, "the share of current rows with values the baseline never had"),
    ]
    return checks, categorical_chart(keys, fb, fc)


# ---- chart data (what the report draws: the distributions each verdict is about) ------------------------

def numeric_chart(b: _Dist, c: _Dist) -> dict[str, Any]:
    """Both distributions on a robust range (1st..99th percentile of either side): shares per bin and CDFs."""
    lo = float(min(b.quantile(np.array([TRIM]))[0], c.quantile(np.array([TRIM]))[0]))
    hi = float(max(b.quantile(np.array([1 - TRIM]))[0], c.quantile(np.array([1 - TRIM]))[0]))
    inside = np.union1d(b.values, c.values)
    inside = inside[(inside >= lo) & (inside <= hi)]
    if inside.size <= _CHART_BINS:
        points = inside
        shares = [np.diff(np.concatenate([[d.cdf(np.array([lo]))[0] - _mass_at(d, lo)], d.cdf(points)])).tolist()
                  for d in (b, c)]
        bins: dict[str, Any] = {"values": points.tolist()}
    else:
        edges = np.linspace(lo, hi, _CHART_BINS + 1)
        shares = []
        for d in (b, c):
            cdf = d.cdf(edges)
            cdf[0] = cdf[0] - _mass_at(d, lo)
            shares.append(np.diff(cdf).tolist())
        bins = {"edges": edges.tolist()}
    grid = np.unique(np.concatenate([inside[:: max(1, inside.size // 200)], [lo, hi]]))
    gap = np.abs(b.cdf(grid) - c.cdf(grid))
    return {"type": NUMERIC, "range": [lo, hi], **bins, "baseline": shares[0], "current": shares[1],
            "outside": {"baseline": _outside(b, lo, hi), "current": _outside(c, lo, hi)},
            "cdf": {"x": grid.tolist(), "baseline": b.cdf(grid).tolist(), "current": c.cdf(grid).tolist()},
            "ks_at": float(grid[int(np.argmax(gap))])}


def _mass_at(d: _Dist, x: float) -> float:
    return float(d.cdf(np.array([x]))[0] - d.cdf(np.array([np.nextafter(x, -np.inf)]))[0])


def _outside(d: _Dist, lo: float, hi: float) -> float:
    below = float(d.cdf(np.array([np.nextafter(lo, -np.inf)]))[0])
    return round(below + 1.0 - float(d.cdf(np.array([hi]))[0]), 6)


def categorical_chart(keys: list[str], fb: np.ndarray, fc: np.ndarray) -> dict[str, Any]:
    order = np.argsort(-np.maximum(fb, fc), kind="stable")
    shown = order[:_CHART_CATEGORIES]
    rest = order[_CHART_CATEGORIES:]
    return {"type": CATEGORICAL, "categories": [keys[i] for i in shown],
            "baseline": fb[shown].tolist(), "current": fc[shown].tolist(),
            "others": {"count": int(rest.size), "baseline": float(fb[rest].sum()), "current": float(fc[rest].sum())}}


# ---- the decision ---------------------------------------------------------------------------------------------

def compare_column(name: str, base: ColumnProfile, cur: ColumnProfile, t: Thresholds) -> dict[str, Any]:
    if base.kind != cur.kind:
        raise MonitorError(f"monitor: column {name!r} is {base.kind} in the baseline but {cur.kind} in the current "
                           "data")
    if base.sampled and cur.sampled and base.legacy_hash != cur.legacy_hash:
        older = "baseline" if base.legacy_hash else "current"
        raise MonitorError(f"monitor: column {name!r}: both sides hold a sample of more than {len(base.values):,} "
                           f"distinct values, but the {older} profile is an older format whose sample was drawn "
                           "with another hash; profile that side's data again (or retrain) to compare this column")
    checks, chart = (numeric_checks if base.kind == NUMERIC else categorical_checks)(base, cur, t)
    worst = max((c["value"] / c["threshold"] for c in checks if c["threshold"]), default=0.0)
    return {"drift": any(c["drift"] for c in checks), "kind": base.kind, "checks": checks,
            "severity": round(float(worst), 4) if math.isfinite(worst) else worst,
            "rows": {"baseline": base.present, "current": cur.present},
            "sampled": base.sampled or cur.sampled, "chart": chart}


def _by_severity(found: dict[str, Any]) -> dict[str, Any]:
    return dict(sorted(found.items(), key=lambda kv: -kv[1]["severity"]))


def _reason(drifted: list[str], label_drifted: list[str]) -> str:
    text = "drift in " + ", ".join(drifted) if drifted else "no drift"
    if label_drifted:
        text += "; label drift in " + ", ".join(label_drifted)
    return text


def decide(baseline: Optional[DatasetProfile], current: DatasetProfile, policy: Policy = Policy(),
           no_baseline: str = "no model in serving") -> dict[str, Any]:
    """The one drift decision: `drift_detected` True/False, or None with reason "no baseline: ..." (not drift).

    Raises MonitorError naming the columns when the two profiles do not match.
    """
    result: dict[str, Any] = {
        "drift_detected": None, "reason": f"no baseline: {no_baseline}",
        "rows": {"baseline": None, "current": current.rows},
        "baseline": None, "current": current.source,
        "features": {}, "label_drift": {"drift_detected": None, "features": {}},
        "ignored_columns": [],
        "thresholds": {"default": dataclasses.asdict(policy.default),
                       "per_feature": {k: dataclasses.asdict(v) for k, v in policy.per_feature.items()},
                       "schema": policy.schema},
    }
    if baseline is None:
        return result
    labels = [n for n in policy.labels if n in baseline.columns and n in current.columns]
    unlabelled = [n for n in policy.labels if n in baseline.columns and n not in current.columns]
    prediction = policy.prediction_column
    wanted = (list(policy.features) if policy.features is not None
              else [n for n in baseline.columns if n not in policy.labels and n not in REQUEST_LOG_COLUMNS
                    and n not in ROLLOUT_COLUMNS and n != prediction])
    absent = sorted(set(wanted) - set(baseline.columns))
    # A request log (it has predictions) holds the features the model takes, not every column of the training data.
    not_logged = absent if prediction in baseline.columns else []
    if absent and not not_logged and policy.features is not None:
        raise MonitorError(f"monitor: baseline ({baseline.source}) lacks schema column(s) {absent}; it has "
                           f"{sorted(baseline.columns)}")
    features = [n for n in wanted if n in baseline.columns]
    if prediction in current.columns:
        not_logged = sorted(set(not_logged) | (set(features) - set(current.columns)))
    features = [n for n in features if n not in not_logged]
    if prediction in baseline.columns and prediction in current.columns:
        features.append(prediction)
    missing = sorted(set(features + labels) - set(current.columns))
    if missing:
        raise MonitorError(f"monitor: current data ({current.source}) lacks column(s) {missing} present in the "
                           f"baseline ({baseline.source}); current has {sorted(current.columns)}")
    compared = dict.fromkeys(features)
    found = {n: compare_column(n, baseline.columns[n], current.columns[n], policy.thresholds(n)) for n in compared}
    label_found = {n: compare_column(n, baseline.columns[n], current.columns[n], policy.thresholds(n))
                   for n in labels}
    drifted = [n for n, f in _by_severity(found).items() if f["drift"]]
    label_drifted = [n for n, f in _by_severity(label_found).items() if f["drift"]]
    result.update(
        drift_detected=bool(drifted), reason=_reason(drifted, label_drifted),
        rows={"baseline": baseline.rows, "current": current.rows}, baseline=baseline.source,
        features=_by_severity(found),
        label_drift={"drift_detected": bool(label_drifted) if labels or not unlabelled else None,
                     "features": _by_severity(label_found)},
        ignored_columns=sorted((set(current.columns) | set(baseline.columns)) - set(compared) - set(labels)),
    )
    if not_logged:
        result["not_logged"] = not_logged
    if unlabelled:  # serving data (a request log) has no label yet: that is not an error, and not drift
        result["label_drift"]["skipped"] = f"the current data has no label column {unlabelled}"
    if prediction in found:
        result["prediction"] = found[prediction]
    elif prediction in current.columns:
        result["prediction"] = {"skipped": f"the baseline ({baseline.source}) has no {prediction!r} column: give a "
                                           "reference with predictions (a request-log span) to compare them"}
    elif prediction in baseline.columns:
        result["prediction"] = {"skipped": f"the current data ({current.source}) has no {prediction!r} column "
                                           "(it is not a request log): prediction drift not checked"}
    return result


def _strip(feature: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in feature.items() if k != "chart"}


def without_charts(result: dict[str, Any]) -> dict[str, Any]:
    """The result without the chart data (what the CLI prints; drift.json keeps it)."""
    out = dict(result, features={n: _strip(f) for n, f in result["features"].items()})
    out["label_drift"] = dict(result["label_drift"],
                              features={n: _strip(f) for n, f in result["label_drift"]["features"].items()})
    if "prediction" in result:
        out["prediction"] = _strip(result["prediction"])
    return out
