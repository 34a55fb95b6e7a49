"""Four hospital nodes on real libp2p hosts and the real in-process EVM, end to end."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import trio
from member_order import in_address_order

from medswarm.cli import main
from node.config import MedswarmConfig, with_overrides
from node.data import load_all_sites, resolve_data_dir
from node.simulate import fedavg_round, initial_weights
from node.weights import decode_weights, weights_hash
from testnet.errors import TestnetError
from testnet.local import LocalRun, run_local_federation
from testnet.report import RunSummary

pytestmark = pytest.mark.integration

ROUNDS = 3


def federate(config: MedswarmConfig, out: Path, **options: Any) -> RunSummary:
    """The four Fed-Heart-Disease hospitals in one process; ``options`` go to LocalRun."""
    local = LocalRun(
        config=config, nodes=4, data_dir=resolve_data_dir(None, os.environ), out_dir=out, **options
    )
    return trio.run(run_local_federation, local)


def run(out: Path, rounds: int, forged: tuple[str, ...] = ()) -> RunSummary:
    torch.set_num_threads(1)
    config = with_overrides(MedswarmConfig(), rounds=rounds, update_timeout=10.0)
    return federate(config, out, forged_blob_sites=forged)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def events_named(out: Path, name: str) -> list[dict[str, Any]]:
    return [e for e in read_jsonl(out / "chain" / "events.jsonl") if e["event"] == name]


@pytest.fixture(scope="module")
def honest(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, RunSummary]:
    out = tmp_path_factory.mktemp("honest")
    return out, run(out, ROUNDS)


def test_every_node_has_the_same_global_hash_every_round(honest: tuple[Path, RunSummary]) -> None:
    out, summary = honest
    rounds = read_jsonl(out / "rounds.jsonl")
    assert [r["round"] for r in rounds] == [1, 2, 3]
    for line in rounds:
        assert line["nodes_agree"], line["global_hashes"]
        assert len(line["nodes"]) == 4
    assert summary.nodes_agree
    assert summary.final_global_hash == rounds[-1]["global_hash"]
    model = Path(summary.final_model).read_bytes()
    assert hashlib.sha256(model).hexdigest() == summary.final_global_hash


def test_network_result_equals_in_memory_fedavg(honest: tuple[Path, RunSummary]) -> None:
    _, summary = honest
    sites = load_all_sites("heart-disease", resolve_data_dir(None, os.environ))
    sites = in_address_order(sites, summary.hospitals)
    config = MedswarmConfig()
    weights = initial_weights(sites, config.federation.seed)
    for index in range(ROUNDS):
        weights = fedavg_round(weights, sites, config.training, config.federation.seed, index)
    assert weights_hash(weights) == summary.final_global_hash


def test_chain_records_match_what_the_nodes_computed(honest: tuple[Path, RunSummary]) -> None:
    out, summary = honest
    rounds = {r["round"]: r for r in read_jsonl(out / "rounds.jsonl")}
    names = {h.address: h.site for h in summary.hospitals}
    finalized = events_named(out, "RoundFinalized")
    assert [e["args"]["round"] for e in finalized] == [1, 2, 3]
    for event in finalized:
        assert event["args"]["globalHash"] == "0x" + rounds[event["args"]["round"]]["global_hash"]
    recorded = events_named(out, "ClusterRecorded")
    assert [(e["args"]["round"], e["args"]["cluster"]) for e in recorded] == [
        (1, 0),
        (2, 0),
        (3, 0),
    ]
    previous = [e["args"]["previousGlobalHash"] for e in recorded]
    assert previous[1:] == [e["args"]["globalHash"] for e in finalized[:-1]]
    updates = events_named(out, "UpdateRecorded")
    assert len(updates) == 4 * ROUNDS
    for event in updates:
        args = event["args"]
        node = rounds[args["round"]]["nodes"][names[args["member"]]]
        assert args["updateHash"] == "0x" + node["update_hash"]
        assert args["samples"] == node["samples"]
    for hospital in summary.hospitals:
        scores = [e["args"]["score"] for e in updates if e["args"]["member"] == hospital.address]
        assert hospital.contribution == sum(scores)


def test_rewards_add_up_to_the_pool(honest: tuple[Path, RunSummary]) -> None:
    out, summary = honest
    pool = summary.chain["reward_pool_wei"]
    (distributed,) = events_named(out, "RewardsDistributed")
    paid = [h.reward_wei for h in summary.hospitals]
    assert sum(paid) + distributed["args"]["dust"] == pool
    total = sum(h.contribution for h in summary.hospitals)
    assert paid == [pool * h.contribution // total for h in summary.hospitals]
    withdrawn = {e["args"]["member"]: e["args"]["amount"] for e in events_named(out, "Withdrawn")}
    assert withdrawn == {h.address: h.reward_wei for h in summary.hospitals if h.reward_wei}


def test_audit_traces_the_final_model(
    honest: tuple[Path, RunSummary], capsys: pytest.CaptureFixture[str]
) -> None:
    out, summary = honest
    assert main(["audit", "--run-dir", str(out)]) == 0
    assert main(["audit", "verify", summary.final_model, "--run-dir", str(out)]) == 0
    assert "round 3" in capsys.readouterr().out


def test_a_node_serving_forged_blobs_is_left_out(tmp_path: Path) -> None:
    summary = run(tmp_path, rounds=2, forged=("cleveland",))
    assert summary.nodes_agree
    cleveland = next(h for h in summary.hospitals if h.site == "cleveland")
    updates = events_named(tmp_path, "UpdateRecorded")
    assert len(updates) == 3 * 2
    assert cleveland.address not in {e["args"]["member"] for e in updates}
    assert cleveland.contribution == 0
    rounds = read_jsonl(tmp_path / "rounds.jsonl")
    assert all(line["nodes_agree"] for line in rounds)
    for line in rounds:
        (excluded,) = line["excluded"]
        assert excluded["member"] == cleveland.address
        assert "hash mismatch" in excluded["reason"]


def test_a_round_without_quorum_stops_with_a_clear_error(tmp_path: Path) -> None:
    config = with_overrides(
        MedswarmConfig(),
        rounds=1,
        quorum=1.0,
        update_timeout=2.0,
        takeover_timeout=2.0,
        aggregate_timeout=10.0,
    )
    with pytest.raises(TestnetError, match=r"no aggregate recorded for cluster\(s\) \[0\]"):
        federate(config, tmp_path, silent_sites=("cleveland",))


def test_an_aggregate_that_is_not_the_average_of_its_recorded_updates_is_refused(
    tmp_path: Path,
) -> None:
    """Whoever aggregates records a model ten times past the average. Every node checks its
    cluster's aggregate against the updates recorded with it, so none attests a global model
    built on it, the round is never final, and the federation stops saying why."""
    config = with_overrides(MedswarmConfig(), rounds=1, update_timeout=5.0, round_attempts=1)
    sites = ("cleveland", "hungarian", "switzerland", "va")
    with pytest.raises(TestnetError, match="is not the average of the updates recorded with it"):
        federate(config, tmp_path, lying_aggregator_sites=sites)
    chain = read_jsonl(tmp_path / "chain" / "events.jsonl")
    assert [e for e in chain if e["event"] == "ClusterRecorded"]
    assert not [e for e in chain if e["event"] in ("Attested", "RoundFinalized")]


def test_two_clusters_agree_and_match_flat_fedavg(tmp_path: Path) -> None:
    config = with_overrides(MedswarmConfig(), rounds=2)
    # US: Cleveland, VA Long Beach; Europe: Hungary, Switzerland
    summary = federate(config, tmp_path, clusters=(0, 1, 1, 0))
    assert summary.nodes_agree
    recorded = events_named(tmp_path, "ClusterRecorded")
    assert sorted((e["args"]["round"], e["args"]["cluster"]) for e in recorded) == [
        (1, 0),
        (1, 1),
        (2, 0),
        (2, 1),
    ]
    sites = load_all_sites("heart-disease", resolve_data_dir(None, os.environ))
    flat = initial_weights(sites, config.federation.seed)
    for index in range(2):
        flat = fedavg_round(flat, sites, config.training, config.federation.seed, index)
    two_tier = decode_weights(Path(summary.final_model).read_bytes())
    for name, values in flat.items():
        np.testing.assert_allclose(two_tier[name], values, rtol=0, atol=1e-6)
