"""EpochRewards on the real in-process EVM: splits, dust, pull payments, tokens, reentrancy."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from consortium_kit import Admission, Consortium, start_consortium
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from contracts import load_artifact
from incentive.chain import EmbeddedChain
from incentive.consortium import ROLE_HOSPITAL
from incentive.contract_client import deploy_contract
from incentive.epoch_rewards import REWARD_TOKEN, RewardsClient, deploy_rewards
from incentive.errors import ContractReverted
from incentive.payouts import epoch_split
from incentive.tx import TransactionSender

pytestmark = pytest.mark.integration

ETH = 10**18
CLUSTERS = (0, 0, 1, 1)


def four_hospitals(chain: EmbeddedChain) -> Consortium:
    """Hospitals 0-3 (keys 1-4) in clusters 0, 0, 1, 1; key 0 the only admin."""
    return start_consortium(chain, clusters=CLUSTERS, auditors=0, admins=1, threshold=1)


@pytest.fixture(scope="module")
def chain() -> EmbeddedChain:
    return EmbeddedChain(num_accounts=10)


@pytest.fixture
def consortium(chain: EmbeddedChain) -> Iterator[Consortium]:
    snapshot = chain.snapshot()
    yield four_hospitals(chain)
    chain.revert(snapshot)


def pool_for(c: Consortium, token: str | None = None) -> RewardsClient:
    address = deploy_rewards(c.chain.w3, c.chain.private_keys[0], c.address, token, c.chain.lock)
    return RewardsClient(c.chain.w3, address, c.chain.private_keys[9], c.chain.lock)


def as_member(c: Consortium, pool: RewardsClient, i: int) -> RewardsClient:
    return RewardsClient(c.chain.w3, pool.contract.address, c.admitted[i].key, c.chain.lock)


def expected(c: Consortium, pool: RewardsClient, pot: int) -> dict[int, int]:
    """The split recomputed from what the Consortium says."""
    members = c.admins[0].members()
    return epoch_split(
        pot,
        {m.index: c.admins[0].contribution(m.index) - pool.accounted(m.index) for m in members},
        {m.index: c.admins[0].reputation(m.index) for m in members},
        {m.index: m.active and not m.excluded for m in members},
    ).credits


def test_an_epoch_pays_by_contribution_exactly(consortium: Consortium) -> None:
    c = consortium
    c.play([100, 200, 300, 400])
    pool = pool_for(c)
    pool.fund(ETH)
    outcome = pool.distribute()
    shares = [pool.credit(c.admitted[i].account) for i in range(4)]
    assert shares == [ETH // 10, 2 * ETH // 10, 3 * ETH // 10, 4 * ETH // 10]
    closed = outcome.named("EpochClosed")[0].args
    assert (closed["pot"], closed["paid"], closed["dust"]) == (ETH, ETH, 0)


def test_reputation_weighs_and_exclusion_forfeits(consortium: Consortium) -> None:
    c = consortium
    c.play([100, 100, 100, 100], rejected=[3])  # 3: contributes nothing, reputation 7_500
    c.play([100, 100, 100, 100], rejected=[2])  # 2: 100 from round 1 at reputation 7_500
    pool = pool_for(c)
    pool.fund(ETH)
    want = expected(c, pool, ETH)
    pool.distribute()
    assert c.admins[0].reputation(2) == 7_500 and c.admins[0].reputation(3) == 8_125
    # 3 went back a quarter of the way: 7_500 + 2_500 / 4 = 8_125; weights 200*1e4,
    # 200*1e4, 100*7_500, 100*8_125
    total = 2_000_000 + 2_000_000 + 750_000 + 812_500
    assert want == {
        0: ETH * 2_000_000 // total,
        1: ETH * 2_000_000 // total,
        2: ETH * 750_000 // total,
        3: ETH * 812_500 // total,
    }
    assert [pool.credit(c.admitted[i].account) for i in range(4)] == [want[i] for i in range(4)]
    # member 2 is rejected again, its second in a row (5_625 < 6_000): excluded, it
    # forfeits what it accrued since
    c.play([100, 100, 100, 100], rejected=[2])
    assert c.admins[0].member(2).excluded
    pool.fund(ETH)
    pool.distribute()
    assert pool.credit(c.admitted[2].account) == want[2]  # nothing new
    assert pool.accounted(2) == c.admins[0].contribution(2)


def test_dust_stays_for_the_next_epoch_and_payments_are_pulled(consortium: Consortium) -> None:
    c = consortium
    c.play([1, 1, 1, 0])
    pool = pool_for(c)
    pool.fund(10)
    pool.distribute()
    assert [pool.credit(c.admitted[i].account) for i in range(4)] == [3, 3, 3, 0]
    assert pool.unallocated() == 1
    with pytest.raises(ContractReverted, match="NothingToDistribute"):
        pool.distribute()
    c.play([0, 0, 0, 5])
    pool.fund(4)
    pool.distribute()
    assert pool.credit(c.admitted[3].account) == 5  # this epoch's 4 plus last epoch's dust
    w3 = c.chain.w3
    before = w3.eth.get_balance(c.admitted[3].account)
    outcome = as_member(c, pool, 3).withdraw()
    fee = outcome.gas_used * w3.eth.get_transaction_receipt(outcome.tx_hash)["effectiveGasPrice"]
    assert w3.eth.get_balance(c.admitted[3].account) == before + 5 - fee
    with pytest.raises(ContractReverted, match="NothingToWithdraw"):
        as_member(c, pool, 3).withdraw()
    totals = pool.totals()
    assert totals["totalFunded"] == 14 and totals["totalCredited"] == 14
    assert w3.eth.get_balance(pool.contract.address) == 14 - 5


def test_funding_errors(consortium: Consortium) -> None:
    pool = pool_for(consortium)
    with pytest.raises(ContractReverted, match="ZeroAmount"):
        pool.fund(0)
    with pytest.raises(ContractReverted, match="NothingToDistribute"):
        pool.distribute()
    consortium.play([1, 1, 1, 1])
    with pytest.raises(ContractReverted, match="PoolEmpty"):
        pool.distribute()


def test_a_token_pool_pays_in_the_token(consortium: Consortium) -> None:
    c = consortium
    w3, keys = c.chain.w3, c.chain.private_keys
    token_address, _ = deploy_contract(
        w3, keys[9], REWARD_TOKEN, "Care", "CARE", 10**24, lock=c.chain.lock
    )
    token = w3.eth.contract(address=token_address, abi=load_artifact(REWARD_TOKEN).abi)
    pool = pool_for(c, token_address)
    funder = TransactionSender(w3, keys[9], c.chain.lock)
    funder.transact(REWARD_TOKEN, "approve", token.functions.approve(pool.contract.address, 1000))
    with pytest.raises(ContractReverted, match="WrongAsset"):
        pool.fund(1000)  # ETH sent to a token pool
    pool.fund(1000, eth=False)
    c.play([1, 1, 2, 0])
    pool.distribute()
    as_member(c, pool, 2).withdraw()
    assert token.functions.balanceOf(c.admitted[2].account).call() == 500
    assert token.functions.balanceOf(pool.contract.address).call() == 500


def test_a_reentrant_member_cannot_drain_the_pool(
    consortium: Consortium, attacker_artifact: dict[str, Any]
) -> None:
    c = consortium
    w3 = c.chain.w3
    pool = pool_for(c)
    sender = TransactionSender(w3, c.chain.private_keys[8], c.chain.lock)
    factory = w3.eth.contract(abi=attacker_artifact["abi"], bytecode=attacker_artifact["bytecode"])
    created = sender.deploy("ReentrantWithdrawer", factory.constructor(pool.contract.address))
    attacker = w3.eth.contract(address=created.contract_address, abi=attacker_artifact["abi"])
    c.admins[0].propose_admit(attacker.address, "Attacker", 1)  # member index 4, in cluster 1
    c.admitted.append(Admission(attacker.address, "", "Attacker", 1, ROLE_HOSPITAL))
    c.play([1, 1, 1, 1, 1])
    pool.fund(5 * ETH)
    pool.distribute()
    assert pool.credit(attacker.address) == ETH
    sender.transact("ReentrantWithdrawer", "attack", attacker.functions.attack())
    assert w3.eth.get_balance(attacker.address) == ETH
    assert w3.eth.get_balance(pool.contract.address) == 4 * ETH
    assert attacker.functions.reentryAttempts().call() == 1
    assert attacker.functions.reentrySuccesses().call() == 0


@settings(  # each example deploys contracts: few examples, and no slow shrinking in CI
    max_examples=12,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    scores=st.lists(st.integers(0, 2**20), min_size=4, max_size=4),
    rejected=st.sets(st.integers(0, 3), max_size=1),
    pot=st.integers(1, 10**21),
)
def test_on_chain_payouts_equal_the_recomputed_split_and_sum_to_the_pot(
    chain: EmbeddedChain, scores: list[int], rejected: set[int], pot: int
) -> None:
    snapshot = chain.snapshot()
    try:
        c = four_hospitals(chain)
        c.play(scores, rejected=sorted(rejected))
        pool = pool_for(c)
        pool.fund(pot)
        try:
            want = expected(c, pool, pot)
        except ValueError:  # no member has a positive weight
            with pytest.raises(ContractReverted, match="NothingToDistribute"):
                pool.distribute()
            return
        pool.distribute()
        credits = {i: pool.credit(c.admitted[i].account) for i in range(4)}
        assert {i: v for i, v in credits.items() if v or i in want} == want
        assert sum(credits.values()) + pool.unallocated() == pot
    finally:
        chain.revert(snapshot)


def test_paying_for_a_model_pays_the_hospitals_out_at_once(consortium: Consortium) -> None:
    c = consortium
    pool = pool_for(c)
    model = bytes.fromhex("ab" * 32)
    first = pool.pay_for_model(model, 600)  # no contribution yet: the fee waits in the pot
    assert [e.event for e in first.events] == ["Funded", "ModelUsed"]
    assert pool.unallocated() == 600
    c.play([1, 2, 0, 0])
    second = pool.pay_for_model(model, 300)
    used = second.named("ModelUsed")[0].args
    assert used["amount"] == 300 and str(used["modelHash"]).removeprefix("0x") == "ab" * 32
    closed = second.named("EpochClosed")[0].args
    assert (closed["pot"], closed["paid"], closed["dust"]) == (900, 900, 0)
    assert [pool.credit(c.admitted[i].account) for i in range(4)] == [300, 600, 0, 0]
    with pytest.raises(ContractReverted, match="WrongAsset"):
        pool.pay_for_model(model, 5, eth=False)  # an ETH pool wants the value sent
