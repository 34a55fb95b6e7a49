"""Auditing a Consortium and its reward pool from the real chain's events."""

from __future__ import annotations

import csv
import dataclasses
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from consortium_kit import Consortium, global_hash, keccak, start_consortium
from eth_account import Account

from contracts import load_artifact
from incentive.abi_codec import EventDecoder
from incentive.chain import EmbeddedChain, connect_rpc
from incentive.consortium_audit import audit_events, read_and_audit
from incentive.epoch_rewards import RewardsClient, deploy_rewards
from incentive.events import EventRecord, decode_logs
from incentive.privacy_budget import PrivacyBudget
from medswarm import cli
from tests.integration.anvil_kit import running_anvil

pytestmark = pytest.mark.integration

ETH = 10**18
DELTA_E18 = 10**13  # delta 1e-5


def budget(epsilon_e6: int) -> PrivacyBudget:
    return PrivacyBudget(epsilon_e6, DELTA_E18)


def four_hospitals(chain: Any) -> Consortium:
    """Hospitals 0-3 (keys 1-4) in clusters 0, 0, 1, 1; key 0 the only admin (``chain``: an
    EmbeddedChain, or anything with its w3, lock, private_keys and accounts)."""
    return start_consortium(chain, clusters=(0, 0, 1, 1), auditors=0, admins=1, threshold=1)


@pytest.fixture(scope="module")
def played() -> Iterator[tuple[Consortium, str]]:
    """Four rounds with rejections (member 3 is excluded in round 2), two epochs, a withdrawal."""
    chain = EmbeddedChain(num_accounts=8)
    c = four_hospitals(chain)
    keys = chain.private_keys
    rewards = deploy_rewards(chain.w3, keys[0], c.address, None, chain.lock)
    pool = RewardsClient(chain.w3, rewards, keys[7], chain.lock)
    c.play([10, 20, 30, 40], rejected=[3], privacy=budget(500_000))
    c.play([10, 20, 30, 40], rejected=[3], privacy=budget(1_000_000))
    pool.fund(ETH)
    pool.distribute()
    c.play([10, 20, 30, 40], absent=[3], privacy=budget(1_500_000))  # 3 is excluded: no record
    c.play([5, 5, 5, 5], absent=[3], privacy=budget(1_750_001))
    pool.pay_for_model(global_hash(4), ETH // 3)  # pays epoch 2 out at once
    RewardsClient(chain.w3, rewards, c.admitted[1].key, chain.lock).withdraw()
    yield c, rewards


def events(c: Consortium, rewards: str) -> list[EventRecord]:
    w3 = c.chain.w3
    contracts = {
        c.address: ("Consortium", load_artifact("Consortium").abi),
        rewards: ("EpochRewards", load_artifact("EpochRewards").abi),
    }
    logs = w3.eth.get_logs({"fromBlock": 0, "toBlock": "latest", "address": list(contracts)})
    return decode_logs(EventDecoder(contracts), logs)


def test_a_clean_history_passes_every_check(played: tuple[Consortium, str]) -> None:
    c, rewards = played
    audit = read_and_audit(c.chain.w3, c.address, rewards)
    assert audit.problems == []
    assert [r.round for r in audit.rounds] == [1, 2, 3, 4]
    # contributions replayed by hand: 3 never had an accepted record
    assert [audit.members[i].contribution for i in range(4)] == [35, 65, 95, 0]
    assert [v for _, v in audit.members[3].reputation_history] == [7_500, 5_625]
    assert audit.members[3].excluded
    assert len(audit.epochs) == 2 and audit.epochs[0].dust + audit.epochs[0].paid == ETH
    assert audit.members[1].withdrawn == audit.members[1].credited > 0
    assert audit.model_payments[0]["model_hash"] == global_hash(4).hex()
    assert audit.funded == ETH + ETH // 3
    assert [(r.epsilon, r.delta) for r in audit.rounds] == [
        (0.5, 1e-5),
        (1.0, 1e-5),
        (1.5, 1e-5),
        (1.750001, 1e-5),
    ]
    assert audit.as_dict()["rounds"][3]["epsilon_e6"] == 1_750_001


def test_a_privacy_budget_that_shrinks_or_the_contract_disowns_is_reported(
    played: tuple[Consortium, str],
) -> None:
    c, rewards = played
    honest = events(c, rewards)

    def with_budget(round_number: int, epsilon_e6: int, delta_e18: int) -> list[str]:
        changed = [
            dataclasses.replace(e, args={**e.args, "epsilonE6": epsilon_e6, "deltaE18": delta_e18})
            if e.event == "RoundFinalized" and int(e.args["round"]) == round_number
            else e
            for e in honest
        ]
        return audit_events(changed).problems

    assert with_budget(3, 999_999, DELTA_E18) == [
        "round 3 records epsilon 0.999999 at delta 1e-05, less than the previous round's "
        "epsilon 1.000000 at delta 1e-05: privacy loss only accumulates"
    ]
    assert with_budget(3, 999_999, 2 * DELTA_E18) == []  # a larger delta may buy that
    assert with_budget(2, 2**64 - 1, 0) == [
        "round 3 records epsilon 1.500000 at delta 1e-05 after a round without a guarantee: "
        "a release without noise cannot be made private later"
    ]
    (problem,) = with_budget(4, 2_000_000, 0)
    assert problem.startswith("round 4: privacy budget not recordable")
    larger = [
        dataclasses.replace(e, args={**e.args, "epsilonE6": 1_750_002})
        if e.event == "RoundFinalized" and int(e.args["round"]) == 4
        else e
        for e in honest
    ]
    assert read_and_audit(c.chain.w3, c.address, rewards, events=larger).problems == [
        "the contract reports privacy budget (1750001, 10000000000000) (epsilonE6, deltaE18), "
        "the last round's event (1750002, 10000000000000)"
    ]


def test_lineage_of_a_model_hash_reaches_the_hospitals_with_proofs(
    played: tuple[Consortium, str],
) -> None:
    c, rewards = played
    audit = read_and_audit(c.chain.w3, c.address, rewards)
    trace = audit.lineage("0x" + global_hash(2).hex())
    assert trace is not None and trace["round"] == 2
    assert trace["previous_hash"] == global_hash(1).hex()
    cluster = trace["clusters"][1]
    assert cluster["hospitals"] == ["Hospital 2", "Hospital 3"]
    assert cluster["aggregator_name"] == "Hospital 2"
    book = c.admins[0].contract.functions
    for position, record in enumerate(cluster["records"]):
        proof = [bytes.fromhex(p) for p in record["proof"]]
        root, leaf = bytes.fromhex(cluster["records_root"]), bytes.fromhex(record["leaf"])
        assert book.verifyRecord(root, leaf, position, len(cluster["records"]), proof).call()
    assert audit.lineage(keccak("never made").hex()) is None


def test_a_forged_score_or_a_broken_chain_of_hashes_is_reported(
    played: tuple[Consortium, str],
) -> None:
    c, rewards = played
    honest = events(c, rewards)
    forged = []
    for e in honest:
        if e.event == "ClusterCommitted" and int(e.args["round"]) == 2 and e.args["cluster"] == 0:
            records = bytearray.fromhex(str(e.args["records"]).removeprefix("0x"))
            records[45] ^= 1  # the last byte of the first record's score
            e = dataclasses.replace(e, args={**e.args, "records": records.hex()})
        if e.event == "RoundFinalized" and int(e.args["round"]) == 4:
            e = dataclasses.replace(e, args={**e.args, "previousHash": keccak("elsewhere").hex()})
        forged.append(e)
    problems = audit_events(forged).problems
    assert any("round 2 cluster 0: records root does not match" in p for p in problems)
    assert any("round 4 builds on" in p for p in problems)
    assert audit_events(honest).problems == []


def test_the_audit_command_against_anvil_writes_every_export(tmp_path: Path) -> None:
    with running_anvil(tmp_path / "anvil") as anvil:
        keys = anvil.private_keys(6)
        handle = SimpleNamespace(
            w3=connect_rpc(anvil.url),
            lock=threading.Lock(),
            private_keys=keys,
            accounts=[Account.from_key(k) for k in keys],
        )
        c = four_hospitals(handle)
        rewards = deploy_rewards(handle.w3, keys[0], c.address, None, handle.lock)
        c.play([1, 2, 3, 4], privacy=budget(0))  # a statistics round releases no update
        c.play([1, 2, 3, 4], rejected=[0], privacy=budget(4_420_000))
        RewardsClient(handle.w3, rewards, keys[5], handle.lock).fund(1000)
        RewardsClient(handle.w3, rewards, keys[5], handle.lock).distribute()
        out = tmp_path / "audit"
        argv = ["audit", "consortium", "--rpc", anvil.url, "--address", c.address]
        argv += ["--rewards", rewards, "--out", str(out), "--model", global_hash(2).hex()]
        assert cli.main([*argv, "--json"]) == 0
        assert cli.main([*argv[:-1], keccak("no such model").hex()]) == 1
    report = (out / "report.html").read_text(encoding="utf-8")
    assert "every check passed" in report and "<svg" in report and "<script" not in report
    assert "<td>4.420000</td><td>1e-05</td>" in report
    members = list(csv.DictReader((out / "members.csv").open(encoding="utf-8")))
    assert [int(m["contribution"]) for m in members] == [1, 4, 6, 8]
    assert [int(m["reputation"]) for m in members] == [7_500, 10_000, 10_000, 10_000]
    records = list(csv.DictReader((out / "records.csv").open(encoding="utf-8")))
    assert len(records) == 8 and records[4]["rejected"] == "True"
    payouts = list(csv.DictReader((out / "payouts.csv").open(encoding="utf-8")))
    assert all(p["credited"] == p["recomputed"] for p in payouts)
    assert sum(int(p["credited"]) for p in payouts) + int(payouts[0]["dust"]) == 1000
    audited = json.loads((out / "audit.json").read_text(encoding="utf-8"))
    assert audited["ok"] is True
    assert [(r["epsilon"], r["delta"]) for r in audited["rounds"]] == [(0.0, 1e-5), (4.42, 1e-5)]
    # the exported events audit offline, and a changed score in them is caught
    events = out / "events.jsonl"
    assert cli.main(["audit", "consortium", "--events", str(events)]) == 0
    lines = events.read_text(encoding="utf-8").splitlines()
    forged = [
        line.replace('"totalSamples": 20', '"totalSamples": 21', 1)
        if '"ClusterCommitted"' in line
        else line
        for line in lines
    ]
    assert forged != lines
    (tmp_path / "forged.jsonl").write_text("\n".join(forged) + "\n", encoding="utf-8")
    assert cli.main(["audit", "consortium", "--events", str(tmp_path / "forged.jsonl")]) == 1
    assert cli.main(["audit", "consortium"]) == 2  # neither a chain nor an events file
    assert cli.main(["audit", "consortium", "--events", str(tmp_path / "none.jsonl")]) == 2
