"""The shipped fault scenarios, shortened to a few rounds, as separate node processes on anvil."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import pytest

from node.config import with_overrides
from node.data import resolve_data_dir
from testnet.multiproc import MultiProcessTestnet
from testnet.scenario import load_scenario

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def run_scenario(name: str, rounds: int, out: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    scenario = load_scenario(Path(f"testnet/scenarios/{name}.toml"))
    scenario = dataclasses.replace(scenario, config=with_overrides(scenario.config, rounds=rounds))
    summary = MultiProcessTestnet(scenario, out, resolve_data_dir(None, os.environ)).up()
    chain = [json.loads(line) for line in (out / "chain" / "events.jsonl").read_text().splitlines()]
    return summary, chain


def members_recorded(chain: list[dict[str, Any]], round_number: int) -> set[str]:
    return {
        e["args"]["member"]
        for e in chain
        if e["event"] == "UpdateRecorded" and e["args"]["round"] == round_number
    }


def address_of(summary: dict[str, Any], name: str) -> str:
    return str(next(h["address"] for h in summary["hospitals"] if h["name"] == name))


def test_the_next_candidate_takes_over_from_a_killed_aggregator(tmp_path: Path) -> None:
    summary, chain = run_scenario("aggregator-crash", rounds=4, out=tmp_path)
    assert summary["nodes_agree"]
    ((crash),) = summary["faults"]
    assert crash["kind"] == "crash" and crash["round"] == 3
    victim = next(h for h in summary["hospitals"] if h["name"] == crash["node"])
    assert not victim["finished"]  # it stays down
    (record,) = [
        e
        for e in chain
        if e["event"] == "ClusterRecorded" and (e["args"]["round"], e["args"]["cluster"]) == (3, 0)
    ]
    assert record["args"]["candidateRank"] >= 1
    assert record["args"]["aggregator"] != victim["address"]


def test_a_straggler_is_left_out_of_the_round_it_missed(tmp_path: Path) -> None:
    summary, chain = run_scenario("straggler", rounds=5, out=tmp_path)
    assert summary["nodes_agree"]
    straggler = address_of(summary, "switzerland-a")
    assert straggler in members_recorded(chain, 3)
    assert straggler not in members_recorded(chain, 4)
    assert all(h["finished"] for h in summary["hospitals"])


def test_nodes_ride_out_a_chain_restart(tmp_path: Path) -> None:
    summary, chain = run_scenario("chain-restart", rounds=6, out=tmp_path)
    assert summary["nodes_agree"]
    assert all(h["finished"] for h in summary["hospitals"])
    assert summary["final_round"] == 6
    log = (tmp_path / "chain" / "anvil.log").read_text()
    assert log.count("starting anvil") == 2
    finalized = [e["args"]["round"] for e in chain if e["event"] == "RoundFinalized"]
    assert finalized == list(range(1, 7))


def test_a_late_joiner_catches_up_and_contributes(tmp_path: Path) -> None:
    summary, chain = run_scenario("late-join", rounds=8, out=tmp_path)
    assert summary["nodes_agree"]
    joiner = address_of(summary, "cleveland-b")
    recorded = [r for r in range(1, 9) if joiner in members_recorded(chain, r)]
    assert recorded and recorded[0] >= 5
    assert recorded == list(range(recorded[0], 9))
    assert next(h for h in summary["hospitals"] if h["name"] == "cleveland-b")["finished"]
