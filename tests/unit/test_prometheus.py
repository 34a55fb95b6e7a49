"""The Prometheus text exposition format of medswarm/prometheus.py, against text written out
by hand from the format's specification."""

from __future__ import annotations

import math
import threading

import pytest

from medswarm.prometheus import Histogram, Metric, format_value, render


def test_counters_gauges_and_labels_are_written_as_the_format_says() -> None:
    metrics = [
        Metric("medswarm_round_current", "gauge", "The round under way.").add(7),
        Metric("medswarm_network_bytes_total", "counter", "Bytes on the wire.")
        .add(1024, direction="sent")
        .add(2.5, direction="received"),
        Metric("medswarm_gossip_rejected_total", "counter", "Rejected, by reason."),
    ]

    text = render(metrics)

    assert text == (
        "# HELP medswarm_round_current The round under way.\n"
        "# TYPE medswarm_round_current gauge\n"
        "medswarm_round_current 7\n"
        "# HELP medswarm_network_bytes_total Bytes on the wire.\n"
        "# TYPE medswarm_network_bytes_total counter\n"
        'medswarm_network_bytes_total{direction="sent"} 1024\n'
        'medswarm_network_bytes_total{direction="received"} 2.5\n'
        "# HELP medswarm_gossip_rejected_total Rejected, by reason.\n"
        "# TYPE medswarm_gossip_rejected_total counter\n"
    )


def test_a_histogram_has_cumulative_buckets_an_inf_bucket_a_sum_and_a_count() -> None:
    histogram = Histogram([0.1, 1.0, 10.0])
    for seconds in (0.05, 0.1, 0.5, 3.0, 20.0):  # by hand: <=0.1: 2, <=1: 3, <=10: 4, all: 5
        histogram.observe(seconds)

    text = render(
        [Metric("chain_seconds", "histogram", "Latency.").add(histogram.snapshot(), kind="call")]
    )

    assert text == (
        "# HELP chain_seconds Latency.\n"
        "# TYPE chain_seconds histogram\n"
        'chain_seconds_bucket{kind="call",le="0.1"} 2\n'
        'chain_seconds_bucket{kind="call",le="1"} 3\n'
        'chain_seconds_bucket{kind="call",le="10"} 4\n'
        'chain_seconds_bucket{kind="call",le="+Inf"} 5\n'
        'chain_seconds_sum{kind="call"} 23.65\n'
        'chain_seconds_count{kind="call"} 5\n'
    )


def test_label_values_and_help_text_are_escaped() -> None:
    metric = Metric("m", "counter", 'a back\\slash and a\nline feed, "quoted"')
    metric.add(1, reason='say "no"\\\n')

    lines = render([metric]).splitlines()

    assert lines[0] == '# HELP m a back\\\\slash and a\\nline feed, "quoted"'
    assert lines[2] == 'm{reason="say \\"no\\"\\\\\\n"} 1'


@pytest.mark.parametrize(
    ("value", "written"),
    [
        (0, "0"),
        (3, "3"),
        (True, "1"),
        (2.0, "2"),
        (0.25, "0.25"),
        (1e-7, "1e-07"),
        (math.inf, "+Inf"),
        (-math.inf, "-Inf"),
        (math.nan, "NaN"),
    ],
)
def test_values(value: float, written: str) -> None:
    assert format_value(value) == written


def test_observations_from_several_threads_all_count() -> None:
    histogram = Histogram([1.0])

    def observe() -> None:
        for _ in range(10_000):
            histogram.observe(0.5)

    threads = [threading.Thread(target=observe) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    snapshot = histogram.snapshot()
    assert snapshot.count == 40_000 and snapshot.buckets == (40_000,)
    assert snapshot.sum == 20_000.0


def test_bounds_must_increase() -> None:
    with pytest.raises(ValueError, match="distinct and increasing"):
        Histogram([1.0, 0.5])
