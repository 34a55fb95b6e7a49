"""Differential privacy on the network: three Fed-Heart-Disease hospitals on real libp2p hosts
and the real in-process EVM, two rounds of clipped and noised updates."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch
import trio
from eth_account import Account

from incentive.chain import EmbeddedChain
from node.accountant import RdpAccountant
from node.config import MedswarmConfig, with_overrides
from node.data import load_all_sites, resolve_data_dir
from node.privacy import ClientPrivacy, member_noise_key
from node.strategy_sim import run_strategy
from node.weights import decode_weights, weights_hash
from testnet.local import LocalRun, run_local_federation

pytestmark = pytest.mark.integration

NODES, ROUNDS = 3, 2
CLIP, NOISE, DELTA = 0.5, 1.5, 1e-5


def test_a_private_federation_reports_the_accountants_epsilon_and_the_noised_model(
    tmp_path: Path,
) -> None:
    torch.set_num_threads(1)
    config = with_overrides(
        MedswarmConfig(),
        rounds=ROUNDS,
        update_timeout=10.0,
        dp_clip=CLIP,
        dp_noise_multiplier=NOISE,
        dp_delta=DELTA,
    )
    data_dir = resolve_data_dir(None, os.environ)
    local = LocalRun(config=config, nodes=NODES, data_dir=data_dir, out_dir=tmp_path)
    summary = trio.run(run_local_federation, local)
    assert summary.nodes_agree

    def spent(rounds: int) -> float:
        return RdpAccountant(NOISE).step(rounds).epsilon(DELTA)

    written = json.loads((tmp_path / "summary.json").read_text())
    assert written["epsilon"] == pytest.approx(spent(ROUNDS), rel=1e-12)
    assert written["delta"] == DELTA
    assert spent(1) < spent(ROUNDS)
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    rounds = [e for e in events if e["event"] == "round"]
    assert len(rounds) == NODES * ROUNDS
    for event in rounds:
        assert event["epsilon"] == pytest.approx(spent(event["round"]), rel=1e-12)
        assert event["epsilon_round"] == pytest.approx(spent(1), rel=1e-12)
        assert event["delta"] == DELTA
    assert math.isfinite(summary.final_mean_accuracy)
    assert 0.0 <= summary.final_mean_accuracy <= 1.0

    # The members' noise is keyed by their account keys (the embedded chain's accounts 1..3,
    # in site order): the in-memory run with those keys makes the same model.
    keys = EmbeddedChain(num_accounts=NODES + 1).private_keys[1 : NODES + 1]
    addresses = [Account.from_key(key).address for key in keys]
    assert addresses == [hospital.address for hospital in summary.hospitals]
    sites = load_all_sites("heart-disease", data_dir)[:NODES]
    expected = run_strategy(
        sites,
        config.training,
        config.strategy,
        ROUNDS,
        config.federation.seed,
        privacy=ClientPrivacy(CLIP, NOISE),
        noise_keys=[member_noise_key(key) for key in keys],
    )
    final = decode_weights(Path(summary.final_model).read_bytes())
    assert weights_hash(final) == expected.shared_weights_hash
