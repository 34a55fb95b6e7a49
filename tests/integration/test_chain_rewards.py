"""RewardPool on the real EVM: funding, proportional credits, dust, pull payments, reentrancy."""

from __future__ import annotations

from typing import Any

import pytest
from chain_kit import GENESIS, Federation, sha
from eth_utils import keccak

from incentive.errors import ContractReverted
from incentive.records import MemberRecord
from incentive.tx import TransactionSender

pytestmark = pytest.mark.integration


def expected_shares(pot: int, contributions: dict[str, int]) -> dict[str, int]:
    """floor(pot * c / total) for members with c > 0, computed here from first principles."""
    total = sum(contributions.values())
    return {m: pot * c // total for m, c in contributions.items() if c > 0}


def test_fund_requires_value(fed: Federation) -> None:
    outcome = fed.admin.fund_rewards(123)
    (funded,) = outcome.named("Funded")
    assert funded.args == {"from": fed.admin.address, "amount": 123}
    with pytest.raises(ContractReverted) as caught:
        fed.admin.fund_rewards(0)
    assert caught.value.error_name == "ZeroAmount"


def test_distribute_needs_contribution_funds_and_the_admin(fed: Federation) -> None:
    fed.admin.fund_rewards(1000)
    with pytest.raises(ContractReverted) as caught:
        fed.admin.distribute()
    assert caught.value.error_name == "NothingToDistribute"

    fed.record_clusters(1, [1, 2, 3, 4], GENESIS)
    with pytest.raises(ContractReverted) as caught:
        fed.members[0]._transact("RewardPool", "distribute")
    assert caught.value.error_name == "NotAdmin"

    fed.admin.distribute()
    with pytest.raises(ContractReverted) as caught:
        fed.admin.distribute()  # contribution already paid for
    assert caught.value.error_name == "NothingToDistribute"


def test_distribute_with_empty_pool_reverts(fed: Federation) -> None:
    fed.record_clusters(1, [1, 2, 3, 4], GENESIS)
    with pytest.raises(ContractReverted) as caught:
        fed.admin.distribute()
    assert caught.value.error_name == "PoolEmpty"


def test_rewards_are_proportional_and_dust_stays_for_the_next_epoch(fed: Federation) -> None:
    addresses = [m.address for m in fed.members]
    first_scores = dict(zip(addresses, [5, 0, 7, 11], strict=True))
    funded_first = 10**18 + 7
    g1 = fed.finish_round(1, list(first_scores.values()), GENESIS)
    fed.admin.fund_rewards(funded_first)

    first = fed.admin.distribute()

    want = expected_shares(funded_first, first_scores)
    assert first.epoch == 1
    assert first.credits == want
    assert first.contributions == {m: c for m, c in first_scores.items() if c > 0}
    assert first.amount + first.dust == funded_first
    assert first.dust == funded_first - sum(want.values())
    assert 0 < first.dust < len(want)  # 10**18 + 7 does not split evenly by 23
    assert [fed.outsider.credit(a) for a in addresses] == [want.get(a, 0) for a in addresses]
    assert fed.outsider.unallocated_rewards() == first.dust

    second_scores = dict(zip(addresses, [1, 2, 3, 4], strict=True))
    fed.record_clusters(2, list(second_scores.values()), g1)
    fed.admin.fund_rewards(1000)
    second = fed.admin.distribute()

    pot = 1000 + first.dust
    assert second.epoch == 2
    assert second.credits == expected_shares(pot, second_scores)
    assert second.contributions == second_scores
    assert second.amount + second.dust == pot
    for a in addresses:
        assert fed.outsider.credit(a) == want.get(a, 0) + second.credits[a]
    assert fed.admin._call("RewardPool", "totalCredited") == first.amount + second.amount


def test_withdraw_pays_out_the_credit_once(fed: Federation) -> None:
    fed.record_clusters(1, [1, 1, 1, 1], GENESIS)
    fed.admin.fund_rewards(4 * 10**17)
    fed.admin.distribute()
    member = fed.members[2]
    w3 = fed.chain.w3
    before = w3.eth.get_balance(member.address)

    paid = member.withdraw()

    (event,) = [e for e in fed.log.records() if e.event == "Withdrawn"]
    receipt = w3.eth.get_transaction_receipt(event.transaction_hash)
    fee = receipt["gasUsed"] * receipt["effectiveGasPrice"]
    assert paid == 10**17
    assert w3.eth.get_balance(member.address) == before + paid - fee
    assert fed.outsider.credit(member.address) == 0
    assert fed.admin._call("RewardPool", "totalWithdrawn") == paid
    with pytest.raises(ContractReverted) as caught:
        member.withdraw()
    assert caught.value.error_name == "NothingToWithdraw"


def deploy_attacker(fed: Federation, artifact: dict[str, Any]) -> tuple[Any, TransactionSender]:
    """Deploy the attacker (from the outsider's key), admit it and give it contribution."""
    w3 = fed.chain.w3
    sender = TransactionSender(w3, fed.chain.private_keys[6], fed.chain.lock)
    factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    created = sender.deploy("ReentrantWithdrawer", factory.constructor(fed.deployment.rewards))
    assert created.contract_address is not None
    attacker = w3.eth.contract(address=created.contract_address, abi=artifact["abi"])
    fed.admin.admit(attacker.address, "Attacker", 1)
    records = [*fed.records(1, [1, 1, 1, 1], 1), MemberRecord(attacker.address, sha("a"), 1, 1)]
    fed.candidates(1, 0)[0].record_cluster(
        1, 0, sha("aggregate 0"), GENESIS, fed.records(1, [1, 1, 1, 1], 0)
    )
    fed.candidates(1, 1)[0].record_cluster(1, 1, sha("aggregate 1"), GENESIS, records)
    fed.admin.fund_rewards(5 * 10**18)
    fed.admin.distribute()
    return attacker, sender


def test_reentrant_withdraw_cannot_drain_the_pool(
    fed: Federation, attacker_artifact: dict[str, Any]
) -> None:
    attacker, sender = deploy_attacker(fed, attacker_artifact)
    w3 = fed.chain.w3
    pool_before = w3.eth.get_balance(fed.deployment.rewards)
    credit = fed.outsider.credit(attacker.address)
    assert credit == 10**18

    sender.transact("ReentrantWithdrawer", "attack", attacker.functions.attack())

    assert w3.eth.get_balance(attacker.address) == credit
    assert w3.eth.get_balance(fed.deployment.rewards) == pool_before - credit
    assert attacker.functions.reentryAttempts().call() == 1
    assert attacker.functions.reentrySuccesses().call() == 0
    reason = bytes(attacker.functions.lastReentryError().call())
    assert reason == keccak(text="ReentrantCall()")[:4]
    for member in fed.members:  # everyone else can still collect in full
        assert member.withdraw() == 10**18


def test_a_receiver_that_refuses_payment_keeps_its_credit(
    fed: Federation, attacker_artifact: dict[str, Any]
) -> None:
    attacker, sender = deploy_attacker(fed, attacker_artifact)
    sender.transact("ReentrantWithdrawer", "setMode", attacker.functions.setMode(1))

    with pytest.raises(ContractReverted) as caught:
        sender.transact("ReentrantWithdrawer", "attack", attacker.functions.attack())

    assert caught.value.error_name == "TransferFailed"
    assert fed.outsider.credit(attacker.address) == 10**18
