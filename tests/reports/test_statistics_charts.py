"""The gate report's feature charts on TFDV statistics of the shipped taxi data (15,002 rows): a skewed numeric
feature (fare: most trips in the first of ten equal-width bins) gets its quantiles on a log scale, an even one its
histogram."""

from __future__ import annotations

import re

import pytest
import tensorflow_data_validation as tfdv

from flywheel.reports import statistics_charts
from tests.conftest import shipped_data


@pytest.fixture(scope="module")
def features() -> dict:
    stats = tfdv.generate_statistics_from_csv(shipped_data())
    return {statistics_charts.feature_name(f): f for f in stats.datasets[0].features}


def _texts(card: str) -> list[str]:
    return re.findall(r">([^<>]+)</text>", card)


def test_a_skewed_feature_shows_its_quantiles_on_a_log_scale(features):
    fare = features["fare"].num_stats
    standard = next(h for h in fare.histograms if h.type == h.STANDARD)
    assert max(b.sample_count for b in standard.buckets) >= 0.9 * sum(b.sample_count for b in standard.buckets)
    assert statistics_charts.skewed(fare)
    card = statistics_charts.feature_card(features["fare"])
    quantiles = next(h for h in fare.histograms if h.type == h.QUANTILES).buckets
    texts = _texts(card)
    assert texts[:2] == ["min", f"{quantiles[0].low_value:.4g}"] and texts[-2:] == ["max", f"{fare.max:.4g}"]
    assert ["p50", f"{quantiles[4].high_value:.4g}"] == texts[10:12], texts
    widths = [float(w) for w in re.findall(r'<rect x="150" y="[0-9.]+" width="([0-9.]+)"', card)]
    assert len(widths) == 11 and widths == sorted(widths) and widths[5] > 0.3 * widths[-1], \
        "on a log scale the median's bar is not lost beside the maximum's"
    assert "skewed: 90% or more of the values fall in one of ten equal-width bins" in card


def test_an_even_feature_keeps_its_equal_width_histogram(features):
    hour = features["trip_start_hour"].num_stats
    assert not statistics_charts.skewed(hour)
    card = statistics_charts.feature_card(features["trip_start_hour"])
    assert "skewed" not in card and card.count("<rect") == 10


def test_a_feature_with_negative_values_is_never_drawn_on_a_log_scale(features):
    longitude = features["pickup_longitude"].num_stats
    assert longitude.min < 0 and not statistics_charts.skewed(longitude)
