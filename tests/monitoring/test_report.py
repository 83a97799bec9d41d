"""The drift report shows what each verdict is about: skewed columns on a robust range, every category named."""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa

from flywheel.monitoring import drift, profile, report


def _result():
    rng = np.random.default_rng(0)
    n = 20_000
    fare = np.round(rng.lognormal(2.0, 0.6, n), 2)
    fare[:20] = 5_000.0  # a few extreme values, as in the taxi data
    cats = [f"company {i}" for i in range(20)]
    base = pa.table({"fare": fare, "company": rng.choice(cats, n)})
    cur = pa.table({"fare": fare * 1.3, "company": rng.choice(cats, n)})
    return drift.decide(profile.profile_table(base, "base"), profile.profile_table(cur, "cur"))


def test_a_skewed_column_is_drawn_on_its_1st_to_99th_percentile():
    chart = _result()["features"]["fare"]["chart"]
    lo, hi = chart["range"]
    assert hi < 200, "the extreme values do not set the range"
    assert sum(share > 0.01 for share in chart["baseline"]) >= 10 and sum(s > 0.01 for s in chart["current"]) >= 10
    assert 0.01 <= chart["outside"]["current"] <= 0.03
    assert lo <= chart["ks_at"] <= hi


def test_every_category_shown_is_labelled_and_thresholds_are_words():
    result = _result()
    html = report.render(result)
    shown = result["features"]["company"]["chart"]["categories"]
    assert len(shown) == 15 and all(f">{name}</text>" in html for name in shown)
    assert "other (5 categories)" in html
    assert "drift when the Kolmogorov–Smirnov distance D &gt; 0.1" in html
    assert "drift when a category&#x27;s share changes by &gt; 0.1" in html
    bars = re.findall(r'<rect x="[\d.]+" y="[\d.]+" width="[\d.]+" height="([\d.]+)" fill="#4c78a8" fill-opacity',
                      html)
    assert sum(float(h) > 5 for h in bars) >= 10, "the distribution is visible, not one bar at the maximum"
    assert "<script" not in html and "http" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
