"""Ledger on the real EVM: attestations counted per hash, finality, late attestations, gas."""

from __future__ import annotations

import threading

import pytest
from chain_kit import GENESIS, Federation, reverted_with, sha, start_federation

from incentive.chain import EmbeddedChain
from incentive.privacy_budget import NO_GUARANTEE, PrivacyBudget

pytestmark = pytest.mark.integration


def test_attest_needs_every_cluster_recorded(fed: Federation) -> None:
    member = fed.members[0]
    error = reverted_with("RoundIncomplete", member.attest, 1, sha("g"))
    assert error.error_args == {"round": 1}
    fed.candidates(1, 0)[0].record_cluster(
        1, 0, sha("a"), GENESIS, fed.records(1, [1, 1, 1, 1], cluster=0)
    )
    reverted_with("RoundIncomplete", member.attest, 1, sha("g"))
    reverted_with("RoundIncomplete", member.attest, 2, sha("g"))
    reverted_with("NotMember", fed.outsider.attest, 1, sha("g"))


def test_competing_hashes_are_counted_apart_and_the_one_reaching_quorum_wins(
    fed: Federation,
) -> None:
    fed.record_clusters(1, [1, 2, 3, 4], GENESIS)
    wrong, right = sha("global A"), sha("global B")
    assert fed.outsider.quorum() == 3  # ceil(2 * 4 / 3)

    fed.members[0].attest(1, wrong)
    fed.members[1].attest(1, right)
    fed.members[2].attest(1, right)

    assert (fed.outsider.votes(1, wrong), fed.outsider.votes(1, right)) == (1, 2)
    status = fed.outsider.round_status(1)
    assert (status.finalized, status.final_hash, status.attestations) == (False, None, 0)
    assert fed.outsider.last_finalized_round() == 0

    closing = fed.members[3].attest(1, right)

    (finalized,) = closing.named("RoundFinalized")
    assert finalized.args == {"round": 1, "globalHash": "0x" + right, "attestations": 3}
    status = fed.outsider.round_status(1)
    assert (status.clusters_recorded, status.finalized) == (2, True)
    assert (status.final_hash, status.attestations) == (right, 3)
    assert fed.outsider.final_hash(1) == right
    assert fed.outsider.last_finalized_round() == 1
    assert fed.admin._call("Ledger", "finalizedAt", 1) == closing.block_number
    reverted_with("AlreadyAttested", fed.members[0].attest, 1, right)


def test_late_attestation_of_the_final_hash_counts_and_another_hash_reverts(
    fed: Federation,
) -> None:
    final = fed.finish_round(1, [1, 1, 1, 1], GENESIS)
    late = fed.members[3]
    assert not fed.outsider.has_attested(1, late.address)

    error = reverted_with("HashMismatch", late.attest, 1, sha("something else"))
    assert error.error_args == {
        "round": 1,
        "finalHash": "0x" + final,
        "attested": "0x" + sha("something else"),
    }
    outcome = late.attest(1, "0x" + final.upper())

    assert not outcome.named("RoundFinalized")
    (attested,) = outcome.named("Attested")
    assert attested.args == {
        "round": 1,
        "member": late.address,
        "globalHash": "0x" + final,
        "epsilonE6": 2**64 - 1,  # no guarantee, the default
        "deltaE18": 0,
    }
    assert fed.outsider.round_status(1).attestations == 4
    assert fed.outsider.has_attested(1, late.address)
    assert not fed.outsider.has_attested(1, fed.outsider.address)
    reverted_with("AlreadyAttested", late.attest, 1, final)


def test_attestations_carry_privacy_budgets_and_the_final_one_is_stored(
    fed: Federation,
) -> None:
    # epsilon 1.47 and 2.08 at delta 1e-5, by hand: 1,470,000 and 2,080,000 millionths and
    # 10**13 parts per 10**18
    first, second = PrivacyBudget(1_470_000, 10**13), PrivacyBudget(2_080_000, 10**13)
    fed.record_clusters(1, [1, 1, 1, 1], GENESIS)
    assert fed.outsider.round_privacy(1) is None

    outcomes = [m.attest(1, sha("global 1"), first) for m in fed.members]

    budgets = [
        (e.args["epsilonE6"], e.args["deltaE18"]) for o in outcomes for e in o.named("Attested")
    ]
    assert budgets == [(1_470_000, 10**13)] * 4
    assert fed.outsider.round_privacy(1) == first
    fed.record_clusters(2, [1, 1, 1, 1], sha("global 1"))
    for member in fed.members[:3]:
        member.attest(2, sha("global 2"), second)
    assert fed.outsider.round_privacy(2) == second
    assert fed.admin._call("Ledger", "roundPrivacy", 3) == [0, 0]  # not final


@pytest.mark.parametrize(
    ("epsilon_e6", "delta_e18"), [(2**64 - 1, 1), (1_000_000, 0), (1_000_000, 10**18)]
)
def test_a_privacy_budget_out_of_range_reverts(
    fed: Federation, epsilon_e6: int, delta_e18: int
) -> None:
    fed.record_clusters(1, [1, 1, 1, 1], GENESIS)
    member = fed.members[0]
    raw = bytes.fromhex(sha("global 1"))

    error = reverted_with(
        "BadPrivacyBudget", member._transact, "Ledger", "attest", 1, raw, epsilon_e6, delta_e18
    )
    assert error.error_args == {"epsilonE6": epsilon_e6, "deltaE18": delta_e18}
    assert member.attest(1, sha("global 1"), NO_GUARANTEE).named("Attested")


def test_a_late_attestation_still_passes_after_a_new_cluster_appears(fed: Federation) -> None:
    final = fed.finish_round(1, [1, 1, 1, 1], GENESIS)
    fed.admin.admit(fed.outsider.address, "Newcomer", 2)

    fed.members[3].attest(1, final)

    assert fed.outsider.cluster_count() == 3
    assert fed.outsider.round_status(1).attestations == 4


def test_clients_can_be_called_from_worker_threads(fed: Federation) -> None:
    fed.record_clusters(1, [1, 1, 1, 1], GENESIS)
    global_hash = sha("global 1")
    errors: list[BaseException] = []

    def attest(member_index: int) -> None:
        try:
            fed.members[member_index].attest(1, global_hash)
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    def register_twice() -> None:  # one client, two threads: nonces must stay ordered
        try:
            fed.members[0].register("12D3KooWfirst", [])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=attest, args=(i,)) for i in range(4)]
    threads += [threading.Thread(target=register_twice) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)

    assert errors == []
    status = fed.outsider.round_status(1)
    assert (status.finalized, status.attestations) == (True, 4)
    assert len([e for e in fed.log.records() if e.event == "MemberRegistered"]) == 2


def test_gas_stays_within_budget(chain: EmbeddedChain) -> None:
    """One cluster of four, so a record carries four members (figures in docs/ledger.md)."""
    fed = start_federation(chain, clusters=[0, 0, 0, 0])
    first = fed.record_clusters(1, [1, 1, 1, 1], GENESIS)[0]
    attests = [m.attest(1, sha("global 1")).gas_used for m in fed.members]
    later = fed.record_clusters(2, [1, 1, 1, 1], sha("global 1"))[0]

    print(f"recordCluster, 4 members: first round {first.gas_used}, later {later.gas_used}")
    print(f"attest: first, second, finalizing, late: {attests}")
    assert first.gas_used < 270_000  # fresh contribution slots for all four members
    assert later.gas_used < 185_000
    assert attests[2] < 100_000  # the finalizing one stores the final hash and block
    assert max(attests[:2] + attests[3:]) < 85_000


def test_gas_of_a_two_cluster_round(fed: Federation) -> None:
    """A later round of the 2 x 2 federation: two records, three attestations, one late."""
    final_1 = fed.finish_round(1, [1, 1, 1, 1], GENESIS)
    records = fed.record_clusters(2, [1, 1, 1, 1], final_1)
    attests = [m.attest(2, sha("global 2")).gas_used for m in fed.members]

    record_gas = [o.gas_used for _, o in sorted(records.items())]
    print(f"2 x 2 round: recordCluster {record_gas}, attest {attests}")
    assert max(record_gas) < 150_000
    assert sum(record_gas) + sum(attests) < 580_000
