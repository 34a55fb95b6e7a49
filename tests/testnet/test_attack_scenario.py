"""A shipped attack scenario end to end: eight node processes on anvil, two of them hostile
processes (testnet/attack_node.py) that send their updates negated."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import pytest

from node.config import with_overrides
from node.data import resolve_data_dir
from testnet.multiproc import MultiProcessTestnet
from testnet.scenario import load_scenario

pytestmark = pytest.mark.integration

SCENARIO = Path("testnet/scenarios/attack-sign-flip.toml")


@pytest.fixture(scope="module")
def summary(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    scenario = load_scenario(SCENARIO)
    scenario = dataclasses.replace(scenario, config=with_overrides(scenario.config, rounds=6))
    out = tmp_path_factory.mktemp("attack")
    return MultiProcessTestnet(scenario, out, resolve_data_dir(None, os.environ)).up()


def test_the_attackers_are_excluded_and_unpaid(summary: dict[str, Any]) -> None:
    hostile = [h for h in summary["hospitals"] if h["attack"]]
    assert sorted(h["name"] for h in hostile) == ["cleveland-b", "hungary-a"]
    for hospital in hostile:
        # rejected in rounds 2 and 3 (round 1 pools statistics): 7,500, then 5,625 < 6,000
        assert hospital["reputation"] == 5625
        assert hospital["reward_share"] == 0.0
        assert "excluded" in hospital["left_federation"]


def test_the_honest_six_finish_every_round_together(summary: dict[str, Any]) -> None:
    honest = [h for h in summary["hospitals"] if not h["attack"]]
    assert len(honest) == 6
    assert all(h["finished"] and h["reputation"] == 10_000 for h in honest)
    assert {h["final_hash"] for h in honest} == {summary["final_global_hash"]}
    assert summary["nodes_agree"] and summary["final_round"] == 6
    assert abs(sum(h["reward_share"] for h in honest) - 1.0) < 1e-9
    assert 0.7 < summary["final_mean_accuracy"] < 1.0
