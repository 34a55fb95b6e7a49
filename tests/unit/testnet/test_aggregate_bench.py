"""The aggregation throughput bench and the codec option of the traffic bench, on tiny inputs."""

from __future__ import annotations

import pytest

from testnet.aggregate_bench import measure_aggregation
from testnet.errors import TestnetError
from testnet.round_bench import bench_scenario


def test_the_aggregation_bench_reports_each_method_and_the_ratio() -> None:
    result = measure_aggregation(3, 1000, 2)
    assert set(result["seconds"]) == {"numpy_add", "numpy_add_float64", "running_mean", "fedavg"}
    assert result["update_bytes"] == 3 * 1000 * 4
    assert result["ratio"] > 0 and result["target_ratio"] == 0.5
    with pytest.raises(TestnetError, match="at least 1"):
        measure_aggregation(0, 1000, 1)


def test_the_traffic_scenarios_take_the_codec() -> None:
    topk = bench_scenario(4, 1000, 2, 1, "topk", 0.05).config.federation
    assert (topk.update_codec, topk.topk_fraction) == ("topk", 0.05)
    assert bench_scenario(4, 1000, 2, 1).config.federation.update_codec == "fp32"
