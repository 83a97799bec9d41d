"""Drift checks: known truth (shifts found, resamples not), scipy as the oracle, merges that are exact."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from flywheel import schemas
from flywheel.monitoring import drift, profile


def _table(rng, n, loc=0.0, scale=1.0, shares=(0.5, 0.3, 0.2), cats=("a", "b", "c"), missing=0.0):
    x = rng.normal(loc, scale, n)
    x[rng.random(n) < missing] = np.nan
    hours = rng.integers(0, 24, n)
    cat = rng.choice(list(cats), size=n, p=list(shares))
    return pa.table({"x": pa.array(x, from_pandas=True), "hour": hours, "cat": cat})


def _compare(a, b, policy=None):
    return drift.decide(profile.profile_table(a, "base"), profile.profile_table(b, "cur"), policy or drift.Policy())


def _checks(feature):
    return {c["metric"]: c for c in feature["checks"]}


@pytest.mark.parametrize("n", [2_000, 200_000])
def test_resample_of_the_same_distribution_is_not_drift(n):
    rng = np.random.default_rng(1)
    result = _compare(_table(rng, n), _table(rng, n))
    assert result["drift_detected"] is False, {k: v["checks"] for k, v in result["features"].items() if v["drift"]}
    bound = 0.6 if n == 2_000 else 0.34  # 2,000 rows: the data's own noise; 200,000: the profile's sample
    for feature in result["features"].values():
        assert feature["severity"] < bound, feature["checks"]


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
    assert result["reason"] == f"drift in {feature}"


# ---- scipy as the oracle ---------------------------------------------------------------------------------------

def _numeric_pair(n=5_000, seed=10):
    rng = np.random.default_rng(seed)
    a = np.round(rng.lognormal(2.0, 0.6, n), 2)  # skewed, with repeated values (like fares)
    b = np.round(rng.lognormal(2.1, 0.7, n), 2)
    return a, b


def test_ks_wasserstein_js_psi_equal_scipy_and_numpy_on_raw_rows():
    a, b = _numeric_pair()
    pa_, pb_ = profile.numeric_column(a), profile.numeric_column(b)
    assert not pa_.sampled and not pb_.sampled
    checks = _checks(drift.compare_column("x", pa_, pb_, drift.Thresholds()))

    assert checks["ks_statistic"]["value"] == pytest.approx(stats.ks_2samp(a, b).statistic, abs=1e-6)

    n = len(a)  # a multiple of 100: the 1st..99th percentile trims exactly n/100 values at each end
    trimmed = stats.wasserstein_distance(np.sort(a)[n // 100: n - n // 100], np.sort(b)[n // 100: n - n // 100])
    iqr = np.quantile(a, 0.75, method="inverted_cdf") - np.quantile(a, 0.25, method="inverted_cdf")
    assert checks["wasserstein_normalized"]["value"] == pytest.approx(trimmed / iqr, rel=1e-5)

    edges = np.unique(np.quantile(a, np.arange(1, 20) / 20, method="inverted_cdf"))
    hist_a = np.bincount(np.searchsorted(edges, a, side="left"), minlength=len(edges) + 1) / n
    hist_b = np.bincount(np.searchsorted(edges, b, side="left"), minlength=len(edges) + 1) / n
    assert checks["jensen_shannon"]["value"] == pytest.approx(jensenshannon(hist_a, hist_b, base=2) ** 2, abs=1e-6)
    fa, fb = np.clip(hist_a, 1e-4, None), np.clip(hist_b, 1e-4, None)
    assert checks["psi"]["value"] == pytest.approx(np.sum((fb - fa) * np.log(fb / fa)), abs=1e-6)


def test_categorical_js_linf_unseen_equal_the_frequencies_of_the_raw_rows():
    rng = np.random.default_rng(11)
    a = rng.choice(["x", "y", "z"], 4000, p=[0.6, 0.3, 0.1])
    b = rng.choice(["x", "y", "w"], 3000, p=[0.4, 0.4, 0.2])
    checks = _checks(drift.compare_column("c", profile.categorical_column(pa.array(a)),
                                          profile.categorical_column(pa.array(b)), drift.Thresholds()))
    keys = ["w", "x", "y", "z"]
    fa = np.array([np.mean(a == k) for k in keys])
    fb = np.array([np.mean(b == k) for k in keys])
    assert checks["jensen_shannon"]["value"] == pytest.approx(jensenshannon(fa, fb, base=2) ** 2, abs=1e-6)
    assert checks["l_infinity"]["value"] == pytest.approx(np.max(np.abs(fa - fb)), abs=1e-6)
    assert checks["unseen_share"]["value"] == pytest.approx(np.mean(b == "w"), abs=1e-6)
    assert checks["unseen_share"]["drift"] and checks["unseen_share"]["rule"].startswith("drift when the share")


def test_sampled_columns_stay_close_to_scipy_on_the_full_data():
    rng = np.random.default_rng(12)
    a, b = rng.normal(0, 1, 300_000), rng.normal(0.2, 1, 300_000)
    pa_, pb_ = profile.numeric_column(a), profile.numeric_column(b)
    assert pa_.sampled and len(pa_.values) == profile.K
    checks = _checks(drift.compare_column("x", pa_, pb_, drift.Thresholds()))
    assert checks["ks_statistic"]["value"] == pytest.approx(stats.ks_2samp(a, b).statistic, abs=0.03)
    assert checks["wasserstein_normalized"]["value"] == pytest.approx(
        stats.wasserstein_distance(a, b) / (np.quantile(a, 0.75) - np.quantile(a, 0.25)), abs=0.03)


# ---- merges -------------------------------------------------------------------------------------------------

def _mixed(rng, n, loc=0.0):
    """Integer, float, categorical and sparse (95% missing) columns; floats with more distinct values than K."""
    sparse = rng.integers(1000, 2000, n).astype(float)
    sparse[rng.random(n) < 0.95] = np.nan
    return pa.table({
        "int_few": rng.integers(0, 24, n),
        "int_many": rng.integers(0, 10**9, n),
        "float": rng.normal(loc, 1.0, n),
        "fare": np.round(rng.lognormal(2 + loc, 0.5, n), 2),
        "cat": rng.choice([f"c{i}" for i in range(40)], n),
        "sparse": pa.array(sparse, from_pandas=True),
    })


def test_merged_profile_is_the_profile_of_the_concatenated_rows():
    rng = np.random.default_rng(7)
    parts = [_mixed(rng, 9_000), _mixed(rng, 6_000, loc=0.5), _mixed(rng, 12_000)]
    merged = profile.merge([profile.profile_table(t, f"p{i}") for i, t in enumerate(parts)])
    union = profile.profile_table(pa.concat_tables(parts), "union")
    assert merged.rows == union.rows == 27_000
    assert union.columns["float"].sampled and union.columns["int_many"].sampled, "the test must cover sampling"
    for name, column in union.columns.items():
        m = merged.columns[name]
        assert (m.count, m.missing, m.values, m.sampled, m.minimum, m.maximum) == \
            (column.count, column.missing, column.values, column.sampled, column.minimum, column.maximum), name
        if column.kind == profile.NUMERIC:
            assert m.mean == pytest.approx(column.mean, rel=1e-12) and m.m2 == pytest.approx(column.m2, rel=1e-9)
    current = profile.profile_table(_mixed(rng, 8_000, loc=0.3), "cur")
    by_merge, by_union = drift.decide(merged, current), drift.decide(union, current)
    for name in union.columns:
        assert _checks(by_merge["features"][name]) == _checks(by_union["features"][name]), name


def test_merged_training_window_shows_no_drift_against_its_own_spans():
    rng = np.random.default_rng(8)
    spans = [_mixed(rng, 5_000) for _ in range(3)]
    window = profile.merge([profile.profile_table(s) for s in spans])
    for span in spans:
        result = drift.decide(window, profile.profile_table(span))
        assert result["drift_detected"] is False, result["reason"]
    quantiles = drift._Dist.of(window.columns["int_few"].values).quantile(np.linspace(0, 1, 101))
    assert np.all(quantiles == np.round(quantiles)), "integer columns keep integer quantiles"


def test_rows_built_one_by_one_equal_the_vectorized_profile():
    rng = np.random.default_rng(9)
    table = _mixed(rng, 10_000)
    kinds = {n: profile.CATEGORICAL if n == "cat" else profile.NUMERIC for n in table.column_names}
    a, b = profile.Builder(kinds), profile.Builder(kinds)
    for i, row in enumerate(table.to_pylist()):
        typed = {k: (v.encode() if isinstance(v, str) else v) for k, v in row.items()
                 if v is not None and not (isinstance(v, float) and np.isnan(v))}
        (a if i % 3 else b).add(typed)
    built = a.merge([b]).result()
    vectorized = profile.profile_table(table)
    for name, column in vectorized.columns.items():
        assert built.columns[name].values == column.values and built.columns[name].missing == column.missing, name


def test_python_and_numpy_hashes_agree_and_profiles_round_trip():
    values = [0.0, -0.0, 1.5, 3e9, -2.25, 12345678901.0, 1e-300]
    assert [profile.hash_number(v) for v in values] == profile.hash_numbers(np.array(values)).tolist()
    p = profile.profile_table(_mixed(np.random.default_rng(3), 12_000), "src")
    again = profile.DatasetProfile.from_json(p.to_json())
    assert again.columns == p.columns and again.rows == p.rows
    with pytest.raises(profile.ProfileFormatError, match="older flywheel"):
        profile.DatasetProfile.from_json(json.dumps({"format": "flywheel.profile.v1", "columns": {}}), "old.json")


# ---- the decision -----------------------------------------------------------------------------------------

def test_unseen_categories_and_evidence():
    rng = np.random.default_rng(3)
    checks = _checks(_compare(_table(rng, 5000), _table(rng, 5000, cats=("a", "b", "zzz")))["features"]["cat"])
    assert checks["unseen_share"]["drift"] and checks["unseen_share"]["value"] == pytest.approx(0.2, abs=0.03)
    assert set(checks["unseen_share"]) == {"metric", "value", "threshold", "drift", "rule"}


def test_no_baseline_is_not_drift():
    current = profile.profile_table(_table(np.random.default_rng(4), 100), "cur")
    result = drift.decide(None, current, no_baseline="no model in serving")
    assert result["drift_detected"] is None and result["reason"] == "no baseline: no model in serving"
    assert result["rows"] == {"baseline": None, "current": 100}


def test_columns_that_do_not_match_are_named():
    base = _table(np.random.default_rng(5), 100)
    with pytest.raises(profile.MonitorError, match=r"lacks column\(s\) \['cat'\]"):
        _compare(base, base.drop(["cat"]))


def test_label_columns_are_label_drift_not_feature_drift():
    rng = np.random.default_rng(6)
    base, cur = _table(rng, 4000), _table(rng, 4000, loc=1.0)
    result = _compare(base, cur, drift.Policy(labels=("x",)))
    assert "x" not in result["features"] and result["drift_detected"] is False
    assert result["label_drift"]["drift_detected"] is True and result["label_drift"]["features"]["x"]["drift"]
    assert result["reason"] == "no drift; label drift in x"


def test_schema_gives_features_labels_and_thresholds():
    policy = drift.Policy.from_schema(schemas.schema_path("taxi"))
    assert policy.labels == ("tips",) and "tips" not in policy.features and "fare" in policy.features
    assert policy.thresholds("company").js_categorical == pytest.approx(0.1)
    assert policy.thresholds("fare") == drift.Thresholds()
    assert policy.kinds["payment_type"] == profile.CATEGORICAL and policy.kinds["trip_start_hour"] == profile.NUMERIC
