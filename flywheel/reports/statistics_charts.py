"""Charts of TFDV DatasetFeatureStatistics protos for the HTML reports."""

from __future__ import annotations

import math
from typing import Optional

from tensorflow_metadata.proto.v0 import statistics_pb2

from flywheel.reports import html_report


def feature_name(feature: statistics_pb2.FeatureNameStatistics) -> str:
    return ".".join(feature.path.step) if feature.path.step else feature.name


# A numeric feature is skewed when one of its equal-width bins holds at least this share of its values: its
# histogram would be one bar (fare: 0-700, 99 % of trips under 70), so its quantiles are charted instead.
SKEWED_BIN_SHARE = 0.9


def _histogram(stats: statistics_pb2.NumericStatistics, kind: int) -> Optional[statistics_pb2.Histogram]:
    found = [h for h in stats.histograms if h.type == kind and h.buckets]
    return found[0] if found else None


def skewed(stats: statistics_pb2.NumericStatistics) -> bool:
    """Most values in one equal-width bin, none below 0 (a log scale needs them), and quantiles to show."""
    standard = _histogram(stats, statistics_pb2.Histogram.STANDARD)
    total = sum(b.sample_count for b in standard.buckets) if standard else 0
    return (total > 0 and stats.min >= 0 and _histogram(stats, statistics_pb2.Histogram.QUANTILES) is not None
            and max(b.sample_count for b in standard.buckets) >= SKEWED_BIN_SHARE * total)


def quantile_chart(stats: statistics_pb2.NumericStatistics) -> str:
    """The minimum, each decile and the maximum as bars on a log scale (length log10(1 + value - minimum)), each
    written with its value: where the values lie, however long the tail."""
    buckets = _histogram(stats, statistics_pb2.Histogram.QUANTILES).buckets
    share = 100 / len(buckets)
    labels = ["min"] + [f"p{round(share * (i + 1))}" for i in range(len(buckets) - 1)] + ["max"]
    values = [buckets[0].low_value] + [b.high_value for b in buckets]
    lengths = [math.log10(1 + v - values[0]) for v in values]
    return (html_report.hbar_chart(labels, lengths, width=180, top=max(lengths) or 1.0,
                                   texts=[f"{v:.4g}" for v in values])
            + f'<div class="muted">skewed: {SKEWED_BIN_SHARE:.0%} or more of the values fall in one of ten '
              "equal-width bins, so the quantiles are shown instead, on a log scale</div>")


def feature_card(feature: statistics_pb2.FeatureNameStatistics) -> str:
    """A chart card for one feature: a histogram for numbers (their quantiles on a log scale when skewed), top
    values for strings."""
    name = feature_name(feature)
    if feature.HasField("num_stats"):
        stats = feature.num_stats
        common = stats.common_stats
        standard = _histogram(stats, statistics_pb2.Histogram.STANDARD)
        chart = '<span class="muted">no histogram</span>'
        if skewed(stats):
            chart = quantile_chart(stats)
        elif standard:
            b = standard.buckets
            # Each bucket labelled by its range, so the axis ends at the maximum, not at the last bucket's start.
            labels = [f"{x.low_value:.4g}–{x.high_value:.4g}" for x in b]
            chart = html_report.bar_chart(labels, [[x.sample_count for x in b]])
        info = (f"mean {stats.mean:.4g} · std {stats.std_dev:.4g} · min {stats.min:.4g} · max {stats.max:.4g}"
                f" · missing {common.num_missing} · zeros {stats.num_zeros}")
    elif feature.HasField("string_stats"):
        stats = feature.string_stats
        common = stats.common_stats
        top = list(stats.top_values)[:10]
        chart = html_report.hbar_chart([t.value for t in top], [t.frequency for t in top], width=180, fmt="{:.0f}")
        info = f"unique {stats.unique} · missing {common.num_missing}"
    else:
        return html_report.card(name, '<span class="muted">no statistics</span>')
    return html_report.card(name, f'{chart}<div class="muted">{html_report.esc(info)}</div>')


def statistics_section(stats_list: statistics_pb2.DatasetFeatureStatisticsList, title: str) -> str:
    parts = []
    for dataset in stats_list.datasets:
        cards = "".join(feature_card(f) for f in dataset.features)
        parts.append(f"<h2>{html_report.esc(title)}: {html_report.esc(dataset.name or 'dataset')} "
                     f"({dataset.num_examples} examples)</h2><div class=\"cards\">{cards}</div>")
    return "".join(parts)
