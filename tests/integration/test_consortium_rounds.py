"""Consortium rounds on the real EVM: finalization, contributions, reputation, quorum.

Each round is built and signed with ``consortium_kit`` (on top of ``incentive.round_commit``)
and submitted in one transaction; the events, roots, commitments, contributions and
reputations it leaves are checked against values worked out here by hand.
"""

from __future__ import annotations

import pytest
from chain_kit import reverted_with
from consortium_kit import (
    AUDITOR,
    CLUSTERS,
    GENESIS,
    HOSPITALS,
    SCORES,
    SIGNERS,
    Consortium,
    aggregate_hash,
    global_hash,
    keccak_bytes,
    packed_record,
    samples_of,
    update_hash,
)
from eth_utils import to_canonical_address

from incentive.merkle import merkle_root, record_leaf
from incentive.privacy_budget import NO_GUARANTEE, PrivacyBudget

pytestmark = pytest.mark.integration


# Budgets worked out by hand: epsilon 1.25 is 1,250,000 millionths, delta 1e-5 is 10**13
# parts per 10**18; epsilon 2.0000001 rounds up to 2,000,001 millionths.
BUDGET_1 = PrivacyBudget(1_250_000, 10**13)
BUDGET_2 = PrivacyBudget(2_000_001, 10**13)


def test_domain_and_digest_match_the_contract(cons: Consortium) -> None:
    for privacy in (NO_GUARANTEE, BUDGET_1):
        plan = cons.build_round(SCORES, privacy=privacy)

        assert bytes(cons.view("DOMAIN_SEPARATOR")) == cons.domain()
        digest = cons.view(
            "roundDigest",
            1,
            GENESIS,
            plan.global_hash,
            plan.commitments,
            privacy.epsilon_e6,
            privacy.delta_e18,
        )
        assert bytes(digest) == plan.digest


def test_each_round_records_its_privacy_budget(cons: Consortium) -> None:
    assert cons.outsider.last_privacy_budget() is None
    assert (cons.view("lastEpsilonE6"), cons.view("lastDeltaE18")) == (0, 0)

    for privacy in (BUDGET_1, BUDGET_2, NO_GUARANTEE):
        outcome = cons.finalize(cons.build_round(SCORES, privacy=privacy))

        (finalized,) = outcome.named("RoundFinalized")
        assert (finalized.args["epsilonE6"], finalized.args["deltaE18"]) == (
            privacy.epsilon_e6,
            privacy.delta_e18,
        )
        assert cons.outsider.last_privacy_budget() == privacy

    assert cons.view("NO_PRIVACY_GUARANTEE") == 2**64 - 1
    assert [cons.outsider.privacy_budget(r) for r in (1, 2, 3, 4)] == [
        BUDGET_1,
        BUDGET_2,
        NO_GUARANTEE,
        None,
    ]
    assert BUDGET_2.epsilon == 2.000001 and BUDGET_2.delta == 1e-5


def test_two_rounds_finalize_with_their_commitments(cons: Consortium) -> None:
    accounts = cons.accounts()
    scores = {1: SCORES, 2: {i: 7 * i + 1 for i in HOSPITALS}}
    rejected = {1: set(), 2: {6}}

    for number in (1, 2):
        outcome = cons.finalize(cons.build_round(scores[number], rejected=rejected[number]))

        assert [e.event for e in outcome.events] == [
            "ClusterCommitted",
            "ClusterCommitted",
            "RoundFinalized",
        ]
        commitments = b""
        for cluster, event in zip((0, 1), outcome.named("ClusterCommitted"), strict=True):
            members = [m for m in HOSPITALS if CLUSTERS[m] == cluster]
            score = scores[number]
            leaves = [
                record_leaf(
                    number,
                    cluster,
                    accounts[m],
                    update_hash(number, m),
                    samples_of(m),
                    score[m],
                    int(m in rejected[number]),
                )
                for m in members
            ]
            root = merkle_root(leaves)
            total = sum(100 + m for m in members if m not in rejected[number])  # accepted
            assert event.args == {
                "round": number,
                "cluster": cluster,
                "aggregator": members[0],
                "aggregateHash": "0x" + aggregate_hash(number, cluster).hex(),
                "recordsRoot": "0x" + root.hex(),
                "totalSamples": total,
                "records": "0x"
                + b"".join(
                    packed_record(m, number, score[m], m in rejected[number]) for m in members
                ).hex(),
            }
            commitments += (
                cluster.to_bytes(2, "big")
                + to_canonical_address(accounts[members[0]])
                + aggregate_hash(number, cluster)
                + root
                + total.to_bytes(8, "big")
            )
        previous = GENESIS if number == 1 else global_hash(1)
        assert outcome.named("RoundFinalized")[0].args == {
            "round": number,
            "previousHash": "0x" + previous.hex(),
            "globalHash": "0x" + global_hash(number).hex(),
            "commitments": "0x" + keccak_bytes(commitments).hex(),
            "signatures": 6,
            "epsilonE6": 2**64 - 1,  # no guarantee, the default
            "deltaE18": 0,
        }
        assert cons.outsider.last_finalized_round() == number
        assert cons.outsider.last_global_hash() == global_hash(number)

    # Round 1: 10, 20, ..., 80; round 2: 1, 8, 15, 22, 29, 36, (43 rejected), 50.
    assert [cons.outsider.contribution(i) for i in HOSPITALS] == [11, 28, 45, 62, 79, 96, 70, 130]
    assert [cons.outsider.reputation(i) for i in HOSPITALS] == [10_000] * 6 + [7_500, 10_000]
    assert cons.outsider.contribution(AUDITOR) == 0


def test_any_member_submits_even_an_auditor(cons: Consortium) -> None:
    outcome = cons.finalize(cons.build_round(SCORES), sender=AUDITOR)

    assert outcome.named("RoundFinalized")[0].args["round"] == 1


def test_signatures_beyond_the_quorum_count(cons: Consortium) -> None:
    outcome = cons.finalize(cons.build_round(SCORES, signers=list(HOSPITALS)))

    assert outcome.named("RoundFinalized")[0].args["signatures"] == 8


def test_a_round_may_leave_out_clusters_and_members(cons: Consortium) -> None:
    plan = cons.build_round({1: 5, 5: 9}, signers=[0, 1, 2, 3, 4, 6])

    outcome = cons.finalize(plan)

    (committed,) = outcome.named("ClusterCommitted")
    assert (committed.args["cluster"], committed.args["totalSamples"]) == (1, 101 + 105)
    assert [cons.outsider.contribution(i) for i in (0, 1, 5)] == [0, 5, 9]


def test_reputation_moves_by_quarters_and_excludes_below_the_threshold(cons: Consortium) -> None:
    # Member 5 rejected twice in a row; member 3 rejected, accepted, then rejected again.
    without_5 = {i: score for i, score in SCORES.items() if i != 5}
    plan = [(SCORES, {3, 5}), (SCORES, {5}), (without_5, {3})]
    reputations, excluded = [], []

    for scores, rejected in plan:
        outcome = cons.finalize(cons.build_round(scores, rejected=rejected))
        reputations.append((cons.outsider.reputation(5), cons.outsider.reputation(3)))
        excluded += [event.args for event in outcome.named("MemberExcluded")]

    # 5: penalty 2500, then 2500 + 7500 // 4 = 4375: 5,625 < 6,000, excluded in round 2.
    # 3: penalty 2500, 2500 - 2500 // 4 = 1875, 1875 + 8125 // 4 = 3906: 6,094, not excluded.
    assert reputations == [(7_500, 7_500), (5_625, 8_125), (5_625, 6_094)]
    assert excluded == [{"index": 5, "round": 2, "reputation": 5_625}]
    assert cons.outsider.member(5).excluded
    assert cons.outsider.contribution(5) == 0
    assert cons.outsider.contribution(3) == SCORES[3]
    assert cons.view("votingHospitals") == 7
    assert cons.outsider.quorum() == 5  # ceil(7 * 2 / 3)


def test_accepted_records_bring_reputation_back_by_whole_quarters_only(
    cons: Consortium,
) -> None:
    cons.finalize(cons.build_round(SCORES, rejected={0}))
    penalty, seen = 2_500, []

    while penalty - penalty // 4 != penalty:
        cons.finalize(cons.build_round({0: 1}, signers=SIGNERS))
        penalty -= penalty // 4
        seen.append(cons.outsider.reputation(0))

    assert seen[:3] == [8_125, 8_593, 8_944]
    assert seen[-1] == 9_997  # a quarter of the last 3 points rounds down to nothing
    cons.finalize(cons.build_round({0: 1}, signers=SIGNERS))
    assert cons.outsider.reputation(0) == 9_997


def test_an_excluded_member_is_refused_until_reinstated(cons: Consortium) -> None:
    cons.exclude(5)
    voting = cons.voting()

    with_record = cons.build_round({**{i: 1 for i in voting}, 5: 1})
    assert reverted_with("Excluded", cons.submit, with_record.call()).error_args == {"index": 5}
    as_aggregator = cons.build_round({i: 1 for i in voting}, aggregators={1: 5})
    reverted_with("Excluded", cons.submit, as_aggregator.call())
    as_signer = cons.build_round({i: 1 for i in voting}, signers=[0, 1, 2, 3, 5])
    reverted_with("Excluded", cons.submit, as_signer.call())

    outcome = cons.govern(lambda a: a.propose_reinstate(cons.admitted[5].account))

    assert outcome.named("MemberReinstated")[0].args == {"index": 5}
    assert cons.outsider.reputation(5) == 10_000
    assert not cons.outsider.member(5).excluded
    assert cons.view("votingHospitals") == 8
    assert cons.outsider.quorum() == 6
    plan = cons.build_round(SCORES, aggregators={1: 5}, signers=[0, 1, 2, 3, 4, 5])
    cons.finalize(plan)
    assert cons.outsider.contribution(5) == SCORES[5]


def test_reinstating_a_member_in_good_standing_resets_its_reputation(cons: Consortium) -> None:
    cons.finalize(cons.build_round(SCORES, rejected={3}))

    cons.govern(lambda a: a.propose_reinstate(cons.admitted[3].account))

    assert cons.outsider.reputation(3) == 10_000
    assert cons.view("votingHospitals") == 8


def test_quorum_shrinks_with_removal_and_exclusion(cons: Consortium) -> None:
    cons.govern(lambda a: a.propose_remove(cons.admitted[1].account))
    assert (cons.view("votingHospitals"), cons.outsider.quorum()) == (7, 5)
    cons.govern(lambda a: a.propose_remove(cons.admitted[AUDITOR].account))
    assert cons.view("votingHospitals") == 7  # an auditor never voted

    cons.exclude(4)
    assert (cons.view("votingHospitals"), cons.outsider.quorum()) == (6, 4)
    cons.govern(lambda a: a.propose_remove(cons.admitted[4].account))
    assert cons.view("votingHospitals") == 6  # it had already lost its vote


def test_quorum_is_at_least_one(unstarted: Consortium) -> None:
    assert unstarted.outsider.quorum() == 2  # ceil(2 * 2 / 3)
    unstarted.govern(lambda a: a.propose_remove(unstarted.admitted[0].account))
    assert unstarted.outsider.quorum() == 1  # ceil(1 * 2 / 3)
    unstarted.govern(lambda a: a.propose_remove(unstarted.admitted[1].account))
    assert unstarted.view("votingHospitals") == 0
    assert unstarted.outsider.quorum() == 1
