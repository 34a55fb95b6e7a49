"""The round benchmark's scenario: shards, clusters, a model of the asked size."""

from __future__ import annotations

import pytest

from node.model import hidden_units_for
from testnet.errors import TestnetError
from testnet.round_bench import SITES, bench_scenario


def test_eight_nodes_are_two_shards_of_each_site_in_two_clusters() -> None:
    scenario = bench_scenario(8, 10_000_000, 3)
    assert len(scenario.nodes) == 8
    assert {(n.site, n.shard, n.shards) for n in scenario.nodes} == {
        (site, part, 2)
        for site in ("cleveland", "hungarian", "switzerland", "va")
        for part in (0, 1)
    }
    assert {n.cluster for n in scenario.nodes if n.site in ("cleveland", "va")} == {0}
    assert {n.cluster for n in scenario.nodes if n.site in ("hungarian", "switzerland")} == {1}
    training = scenario.config.training
    assert training.hidden_units == hidden_units_for(13, 10_000_000)
    assert (training.local_steps, training.local_epochs) == (None, 1)
    assert scenario.config.network.max_blob_bytes > 4 * 10_000_000


@pytest.mark.parametrize(
    ("nodes", "params", "rounds", "message"),
    [
        (5, 1000, 3, "--nodes"),
        (1, 1000, 3, "--nodes"),
        (8, 10, 3, "--params"),
        (8, 1000, 1, "--rounds"),
    ],
)
def test_bad_arguments_say_which(nodes: int, params: int, rounds: int, message: str) -> None:
    with pytest.raises(TestnetError, match=message):
        bench_scenario(nodes, params, rounds)


def test_the_fog_bench_places_nodes_flat_or_by_site() -> None:
    assert {n.cluster for n in bench_scenario(8, 1000, 3, clusters=1).nodes} == {0}
    by_site = bench_scenario(16, 1000, 3, clusters=4).nodes
    assert len(by_site) == 16
    assert all(len({n.cluster for n in by_site if n.site == site}) == 1 for site in SITES)
    assert sorted({n.cluster for n in by_site}) == [0, 1, 2, 3]
    with pytest.raises(TestnetError, match="clusters must be 1, 2 or 4"):
        bench_scenario(8, 1000, 3, clusters=3)
    with pytest.raises(TestnetError, match="at most --nodes"):
        bench_scenario(2, 1000, 3, clusters=4)
