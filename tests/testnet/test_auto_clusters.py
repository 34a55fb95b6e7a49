"""Clusters formed from label shares, end to end: anvil and four node processes."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from node.config import with_overrides
from node.data import resolve_data_dir
from testnet.multiproc import MultiProcessTestnet
from testnet.scenario import load_scenario

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_the_launcher_admits_nodes_into_clusters_by_label_share(tmp_path: Path) -> None:
    scenario = load_scenario(Path("testnet/scenarios/heart-best.toml"))
    nodes = tuple(dataclasses.replace(n, cluster=0) for n in scenario.nodes)
    scenario = dataclasses.replace(
        scenario,
        nodes=nodes,
        auto_clusters=2,
        config=with_overrides(scenario.config, rounds=2),
    )
    summary = MultiProcessTestnet(scenario, tmp_path, resolve_data_dir(None, os.environ)).up()
    assert summary["nodes_agree"]
    clusters = {h["name"]: h["cluster"] for h in summary["hospitals"]}
    # training label shares: Hungary 0.378, Cleveland 0.457 | VA 0.776, Switzerland 1.0
    assert clusters == {"cleveland": 0, "hungary": 0, "switzerland": 1, "va": 1}
    shares = {h["name"]: h["label_share"] for h in summary["hospitals"]}
    assert shares["switzerland"] == 1.0 and 0.37 < shares["hungary"] < 0.38
    chain = [json.loads(line) for line in (tmp_path / "chain" / "events.jsonl").open()]
    admitted = {
        e["args"]["member"]: e["args"]["cluster"] for e in chain if e["event"] == "MemberAdmitted"
    }
    address = {h["name"]: h["address"] for h in summary["hospitals"]}
    assert {name: admitted[address[name]] for name in address} == clusters
    recorded = {
        (e["args"]["round"], e["args"]["cluster"]) for e in chain if e["event"] == "ClusterRecorded"
    }
    assert recorded == {(1, 0), (1, 1), (2, 0), (2, 1)}
