"""Drift metrics on synthetic data with known truth: shifts are detected, resamples are not, small and large."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from flywheel.components.monitor import drift, profile


def _table(rng, n, loc=0.0, scale=1.0, shares=(0.5, 0.3, 0.2), cats=("a", "b", "c"), missing=0.0):
    x = rng.normal(loc, scale, n)
    x[rng.random(n) < missing] = np.nan
    hours = rng.integers(0, 24, n)
    cat = rng.choice(list(cats), size=n, p=list(shares))
    return pa.table({"x": pa.array(x, from_pandas=True), "hour": hours, "cat": cat})


def _compare(a, b):
    return drift.compare(profile.profile_table(a, "base"), profile.profile_table(b, "cur"))


@pytest.mark.parametrize("n", [2_000, 200_000])
def test_resample_of_the_same_distribution_is_not_drift(n):
    rng = np.random.default_rng(1)
    result = _compare(_table(rng, n), _table(rng, n))
    assert not result["drift_detected"], {k: v["checks"] for k, v in result["features"].items() if v["drift"]}


@pytest.mark.parametrize("n", [2_000, 200_000])
@pytest.mark.parametrize("change,feature", [
    ({"loc": 0.5}, "x"),                      # location
    ({"scale": 1.6}, "x"),                    # scale
    ({"shares": (0.3, 0.3, 0.4)}, "cat"),     # category shares
    ({"missing": 0.15}, "x"),                 # missing values
])
def test_real_shifts_are_detected(n, change, feature):
    rng = np.random.default_rng(2)
    result = _compare(_table(rng, n), _table(rng, n, **change))
    assert result["features"][feature]["drift"], result["features"][feature]["checks"]
    assert next(iter(result["features"])) == feature, "worst feature first"
    others = [k for k, v in result["features"].items() if v["drift"] and k != feature]
    assert not others, others


def test_unseen_categories_and_evidence():
    rng = np.random.default_rng(3)
    base = _table(rng, 5000)
    cur = _table(rng, 5000, cats=("a", "b", "zzz"))
    checks = {c["metric"]: c for c in _compare(base, cur)["features"]["cat"]["checks"]}
    assert checks["unseen_share"]["drift"] and checks["unseen_share"]["value"] == pytest.approx(0.2, abs=0.03)
    assert set(checks["unseen_share"]) == {"metric", "value", "threshold", "drift"}


def test_saved_profile_gives_the_same_answer(tmp_path):
    rng = np.random.default_rng(4)
    base, cur = _table(rng, 3000), _table(rng, 3000, loc=0.7)
    p = profile.profile_table(base, "base")
    path = tmp_path / "baseline.json"
    path.write_text(p.to_json())
    loaded = profile.load(str(path))
    assert drift.compare(loaded, profile.profile_table(cur))["features"] == \
        drift.compare(p, profile.profile_table(cur))["features"]


def test_columns_that_do_not_match_are_named():
    rng = np.random.default_rng(5)
    base = _table(rng, 100)
    with pytest.raises(profile.MonitorError, match=r"lacks column\(s\) \['cat'\]"):
        drift.compare(profile.profile_table(base, "b"), profile.profile_table(base.drop(["cat"]), "c"))


def test_auc_by_ranks_matches_known_values():
    from flywheel.components.monitor.monitor import auc

    labels = np.array([0, 0, 1, 1])
    assert auc(labels, np.array([0.1, 0.4, 0.35, 0.8])) == pytest.approx(0.75)
    assert auc(labels, np.array([0.1, 0.2, 0.8, 0.9])) == 1.0
    assert auc(labels, np.array([0.5, 0.5, 0.5, 0.5])) == 0.5


def test_performance_decay_against_reference(tmp_path):
    import json

    import pyarrow.csv as pcsv

    from flywheel.components.monitor.monitor import run_monitor

    rng = np.random.default_rng(6)
    n = 4000
    label = rng.integers(0, 2, n)
    good = np.clip(label * 0.6 + rng.random(n) * 0.5, 0, 1)
    noisy = rng.random(n)
    for name, pred in (("good", good), ("noisy", noisy)):
        pcsv.write_csv(pa.table({"x": rng.normal(size=n), "label": label, "prediction": pred}),
                       str(tmp_path / f"{name}.csv"))
    (tmp_path / "ref.json").write_text(json.dumps({"metrics": {"auc": 0.9}}))
    ref = str(tmp_path / "ref.json")
    ok = run_monitor(str(tmp_path / "good.csv"), str(tmp_path / "good.csv"), reference_metrics=ref)
    bad = run_monitor(str(tmp_path / "good.csv"), str(tmp_path / "noisy.csv"), reference_metrics=ref)
    assert ok["performance"]["drift"] is False and ok["performance"]["value"] > 0.9
    assert bad["performance"]["drift"] is True and bad["performance"]["value"] == pytest.approx(0.5, abs=0.05)
    assert bad["drift_detected"] and "prediction" in bad


def test_merged_profiles_match_the_profile_of_the_union():
    rng = np.random.default_rng(7)
    a, b = _table(rng, 20_000), _table(rng, 20_000, loc=1.0)
    merged = profile.merge([profile.profile_table(a), profile.profile_table(b)])
    union = profile.profile_table(pa.concat_tables([a, b]))
    assert merged.rows == union.rows == 40_000
    assert merged.columns["cat"].values == union.columns["cat"].values
    assert not drift.compare(union, merged)["drift_detected"]
    assert merged.columns["x"].mean == pytest.approx(union.columns["x"].mean, abs=1e-9)


def test_per_feature_thresholds_come_from_the_schema_drift_comparator():
    from flywheel import schemas
    from flywheel.components.monitor.monitor import thresholds

    per_feature, default = thresholds(schemas.schema_path("taxi"))
    assert per_feature["company"].js_categorical == pytest.approx(0.1) and default.js_categorical == 0.05
    assert "fare" not in per_feature
