"""The shipped consortium scenario: anvil, eight node processes keeping their rounds in the
Consortium contract, and the first aggregator of cluster 0 killed in round 3."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from medswarm.cli import main
from node.data import resolve_data_dir
from testnet.multiproc import MultiProcessTestnet
from testnet.scenario import load_scenario

pytestmark = pytest.mark.integration

SCENARIO = Path("testnet/scenarios/consortium.toml")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("consortium")
    testnet = MultiProcessTestnet(load_scenario(SCENARIO), out, resolve_data_dir(None, os.environ))
    return out, testnet.up()


def test_the_seven_live_nodes_finish_on_the_chain_final_hash(
    run: tuple[Path, dict[str, Any]],
) -> None:
    _, summary = run
    assert summary["final_round"] == 6
    assert summary["chain"]["consortium"] and "ledger" not in summary["chain"]
    [crashed] = [f["node"] for f in summary["faults"] if f["kind"] == "crash"]
    live = [h for h in summary["hospitals"] if h["name"] != crashed]
    assert len(live) == 7 and all(h["finished"] for h in live)
    assert {h["final_hash"] for h in live} == {summary["final_global_hash"]}


def test_one_transaction_per_round_and_the_audit_passes(
    run: tuple[Path, dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    out, summary = run
    chain = read_jsonl(out / "chain" / "events.jsonl")
    finals = [e for e in chain if e["event"] == "RoundFinalized"]
    assert [e["args"]["round"] for e in finals] == [1, 2, 3, 4, 5, 6]
    assert len({e["transactionHash"] for e in finals}) == 6
    assert finals[-1]["args"]["globalHash"].removeprefix("0x") == summary["final_global_hash"]
    code = main(["audit", "consortium", "--events", str(out / "chain" / "events.jsonl")])
    assert code == 0
    assert "every check passed" in capsys.readouterr().out


def test_the_next_candidate_committed_cluster_0_after_the_crash(
    run: tuple[Path, dict[str, Any]],
) -> None:
    out, summary = run
    [crashed] = [f["node"] for f in summary["faults"] if f["kind"] == "crash"]
    address = next(h["address"] for h in summary["hospitals"] if h["name"] == crashed)
    chain = read_jsonl(out / "chain" / "events.jsonl")
    index = next(
        e["args"]["index"]
        for e in chain
        if e["event"] == "MemberAdmitted" and e["args"]["account"].lower() == address.lower()
    )
    committed = {
        (e["args"]["round"], e["args"]["cluster"]): e["args"]["aggregator"]
        for e in chain
        if e["event"] == "ClusterCommitted"
    }
    assert committed[(3, 0)] != index
    takeovers = [
        e
        for name in os.listdir(out / "nodes")
        for e in read_jsonl(out / "nodes" / name / "events.jsonl")
        if e["event"] == "takeover" and e["round"] == 3
    ]
    assert [e["cluster"] for e in takeovers] == [0]
