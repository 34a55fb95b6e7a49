"""Differential privacy on the network: three Fed-Heart-Disease hospitals on real libp2p hosts
and the real in-process EVM, two rounds of clipped and noised updates, kept by the Ledger and
by the Consortium; the epsilon on chain is the one the nodes report."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch
import trio
from eth_account import Account
from member_order import address_order

from incentive.chain import EmbeddedChain
from incentive.events import EventLog
from incentive.rundir import EVENTS_FILE
from medswarm.cli import main
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


@pytest.mark.parametrize("ledger", ["ledger", "consortium"])
def test_a_private_federation_reports_the_accountants_epsilon_and_the_noised_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], ledger: str
) -> None:
    torch.set_num_threads(1)
    config = with_overrides(
        MedswarmConfig(),
        rounds=ROUNDS,
        update_timeout=10.0,
        dp_clip=CLIP,
        dp_noise_multiplier=NOISE,
        dp_delta=DELTA,
        ledger=ledger,
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

    # On chain: each round's epsilon in millionths, rounded up, at delta 1e-5 = 10**13 parts
    # per 10**18; what every node reported for the round, and summary.json's for the last.
    reported = {e["round"]: e["epsilon"] for e in rounds}
    chain = EventLog.read_jsonl(tmp_path / EVENTS_FILE).records()
    recorded = [
        (int(e.args["round"]), int(e.args["epsilonE6"]), int(e.args["deltaE18"]))
        for e in chain
        if e.event == ("Attested" if ledger == "ledger" else "RoundFinalized")
    ]
    assert len(recorded) == (NODES * ROUNDS if ledger == "ledger" else ROUNDS)
    for number, epsilon_e6, delta_e18 in recorded:
        assert 0 <= epsilon_e6 - reported[number] * 1e6 < 1 + 1e-6
        assert delta_e18 == 10**13
    assert main(["audit", "--run-dir", str(tmp_path), "--json"]) == 0
    audited = json.loads(capsys.readouterr().out)["rounds"]
    assert [r["round"] for r in audited] == list(range(1, ROUNDS + 1))
    for entry in audited:
        assert entry["epsilon"] == pytest.approx(reported[entry["round"]], abs=1e-6)
        assert entry["delta"] == DELTA
    assert audited[-1]["epsilon"] == pytest.approx(written["epsilon"], abs=1e-6)

    # The members' noise is keyed by their account keys (the embedded chain's accounts 1..3,
    # in site order): the in-memory run with those keys makes the same model.
    keys = EmbeddedChain(num_accounts=NODES + 1).private_keys[1 : NODES + 1]
    addresses = [Account.from_key(key).address for key in keys]
    assert addresses == [hospital.address for hospital in summary.hospitals]
    sites = load_all_sites("heart-disease", data_dir)[:NODES]
    order = address_order(sites, summary.hospitals)  # the aggregators' order of summing
    sites, keys = [sites[i] for i in order], [keys[i] for i in order]
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


def test_a_run_whose_noise_leaves_nobody_a_contribution_still_ends_with_its_record(
    tmp_path: Path,
) -> None:
    """Under heavy noise no update lowers the loss, every score is 0 and the reward pool has
    nothing to split by (the contract reverts NothingToDistribute): the run still finishes
    and writes its chain record, and nobody is paid."""
    torch.set_num_threads(1)
    config = with_overrides(
        MedswarmConfig(),
        rounds=2,
        update_timeout=10.0,
        dp_clip=CLIP,
        dp_noise_multiplier=2.85,
        dp_delta=DELTA,
        ledger="ledger",
    )
    data_dir = resolve_data_dir(None, os.environ)
    local = LocalRun(config=config, nodes=4, data_dir=data_dir, out_dir=tmp_path)
    summary = trio.run(run_local_federation, local)
    assert [h.contribution for h in summary.hospitals] == [0, 0, 0, 0]
    assert [h.reward_wei for h in summary.hospitals] == [0, 0, 0, 0]
    assert (tmp_path / EVENTS_FILE).exists()
    assert summary.nodes_agree
