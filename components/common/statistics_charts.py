"""Charts of TFDV DatasetFeatureStatistics protos for the HTML reports."""

from __future__ import annotations

from tensorflow_metadata.proto.v0 import statistics_pb2

from flywheel.components.common import html_report


def feature_name(feature: statistics_pb2.FeatureNameStatistics) -> str:
    return ".".join(feature.path.step) if feature.path.step else feature.name


def feature_card(feature: statistics_pb2.FeatureNameStatistics) -> str:
    """A chart card for one feature: histogram for numbers, top values for strings."""
    name = feature_name(feature)
    if feature.HasField("num_stats"):
        stats = feature.num_stats
        common = stats.common_stats
        buckets = [h for h in stats.histograms if h.type == statistics_pb2.Histogram.STANDARD]
        chart = '<span class="muted">no histogram</span>'
        if buckets:
            b = buckets[0].buckets
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
