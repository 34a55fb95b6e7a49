"""Update codecs on the network: three Fed-Heart-Disease hospitals on real libp2p hosts and
the real in-process EVM, two rounds of int8- or top-k-encoded updates."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import trio
from member_order import in_address_order

from node.config import MedswarmConfig, with_overrides
from node.data import load_all_sites, resolve_data_dir
from node.strategy_sim import run_strategy
from node.weights import decode_weights, encoded_size, weights_hash
from testnet.local import LocalRun, run_local_federation

pytestmark = pytest.mark.integration

NODES, ROUNDS = 3, 2


@pytest.mark.parametrize(("codec", "announced"), [("int8", "mswc1-int8"), ("topk", "mswc1-topk")])
def test_a_federation_completes_rounds_with_smaller_encoded_updates(
    tmp_path: Path, codec: str, announced: str
) -> None:
    torch.set_num_threads(1)
    config = with_overrides(
        MedswarmConfig(), rounds=ROUNDS, update_timeout=10.0, update_codec=codec
    )
    data_dir = resolve_data_dir(None, os.environ)
    local = LocalRun(config=config, nodes=NODES, data_dir=data_dir, out_dir=tmp_path)
    summary = trio.run(run_local_federation, local)
    assert summary.nodes_agree

    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    rounds = [e for e in events if e["event"] == "round"]
    assert sorted(e["round"] for e in rounds) == sorted(list(range(1, ROUNDS + 1)) * NODES)
    assert {e["update_codec"] for e in rounds} == {announced}

    # The same run in memory, every site's update decoded from its encoded bytes (top-k with
    # each site's error feedback), makes the model the nodes finalized: the aggregators
    # averaged exactly what the members sent.
    sites = in_address_order(load_all_sites("heart-disease", data_dir)[:NODES], summary.hospitals)
    expected = run_strategy(
        sites, config.training, config.strategy, ROUNDS, config.federation.seed, update_codec=codec
    )
    final = decode_weights(Path(summary.final_model).read_bytes())
    assert weights_hash(final) == expected.shared_weights_hash
    plain = run_strategy(sites, config.training, config.strategy, ROUNDS, config.federation.seed)
    assert weights_hash(final) != plain.shared_weights_hash

    # Each announced update is the codec's encoding: smaller than the float32 weights
    # encoding of the same tensors.
    fp32_bytes = encoded_size(final)
    assert all(e["update_bytes"] < fp32_bytes for e in rounds)
    assert sum(e["update_bytes"] for e in rounds) == expected.update_bytes


def test_an_int8_fog_federation_sends_int8_aggregates_and_its_nodes_agree(tmp_path: Path) -> None:
    # Four hospitals in two clusters on the Consortium, where each cluster's aggregate
    # announcement is its commitment: members accept it only if it names the round's codec.
    torch.set_num_threads(1)
    clusters = (0, 0, 1, 1)
    rounds = 3
    config = with_overrides(
        MedswarmConfig(),
        rounds=rounds,
        update_timeout=10.0,
        update_codec="int8",
        ledger="consortium",
    )
    data_dir = resolve_data_dir(None, os.environ)
    local = LocalRun(config=config, nodes=4, data_dir=data_dir, out_dir=tmp_path, clusters=clusters)
    summary = trio.run(run_local_federation, local)
    assert summary.nodes_agree

    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    rounds_seen = [e for e in events if e["event"] == "round"]
    assert sorted(e["round"] for e in rounds_seen) == sorted(list(range(1, rounds + 1)) * 4)
    for number in range(1, rounds + 1):
        # every node computed the same global model itself (none had to fetch the final one)
        computed = {e["computed_hash"] for e in rounds_seen if e["round"] == number}
        final = {e["global_hash"] for e in rounds_seen if e["round"] == number}
        assert computed == final and len(final) == 1

    aggregated = [e for e in events if e["event"] == "aggregated"]
    assert sorted((e["round"], e["cluster"]) for e in aggregated) == [
        (r, c) for r in range(1, rounds + 1) for c in (0, 1)
    ]
    assert {e["aggregate_codec"] for e in aggregated} == {"mswc1-int8"}
    model_bytes = encoded_size(decode_weights(Path(summary.final_model).read_bytes()))
    assert all(e["aggregate_bytes"] < model_bytes for e in aggregated)

    # In memory, the same clusters, every update and every cluster's aggregate encoded as
    # int8, make the model the nodes finalized: each node built the global model from the
    # decoded aggregates, not from the float32 averages.
    sites = load_all_sites("heart-disease", data_dir)[:4]
    expected = run_strategy(
        sites,
        config.training,
        config.strategy,
        rounds,
        config.federation.seed,
        clusters=clusters,
        update_codec="int8",
    )
    final_model = decode_weights(Path(summary.final_model).read_bytes())
    assert weights_hash(final_model) == expected.shared_weights_hash
