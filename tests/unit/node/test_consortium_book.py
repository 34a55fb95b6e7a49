"""The Consortium round book's choices, with a stand-in node (its inbox is the real one)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import trio
from eth_account import Account

from gossip.messages import AggregateInput, Announcement, AnnouncementKind
from incentive.candidates import aggregator_candidates
from incentive.consortium import ConsortiumMember
from incentive.round_commit import sign_round
from node.consortium_book import SCORE_MAX, ConsortiumBook, _cluster_commit
from node.inbox import RoundInbox

KEYS = ["0x" + f"{i:02x}" * 32 for i in range(1, 6)]
ACCOUNTS = [Account.from_key(k).address for k in KEYS]
CLUSTERS = [0, 0, 0, 1, 0]
ROUND = 4


def rows(excluded: tuple[int, ...] = ()) -> list[ConsortiumMember]:
    return [
        ConsortiumMember(i, ACCOUNTS[i], CLUSTERS[i], 1, True, i in excluded)
        for i in range(len(ACCOUNTS))
    ]


def book(me: int = 0, excluded: tuple[int, ...] = ()) -> ConsortiumBook:
    keeper = ConsortiumBook(SimpleNamespace(account=ACCOUNTS[me]), KEYS[me], 5.0)  # type: ignore[arg-type]
    keeper._rows = rows(excluded)
    node = SimpleNamespace(
        inbox=RoundInbox(),
        refused_commitments=set(),
        config=SimpleNamespace(federation=SimpleNamespace(secure_aggregation=False)),
    )
    keeper.bind(node)  # type: ignore[arg-type]
    return keeper


def aggregate(
    sender: int,
    members: list[int],
    cluster: int = 0,
    rejected: tuple[int, ...] = (),
    own: bool = True,
) -> Announcement:
    """``sender``'s commitment of ``members``' updates (and of its own first, as it must
    list it, if ``own`` and ``members`` does not), those in ``rejected`` listed as rejected."""
    listed = members if sender in members or not own else [sender, *members]
    inputs = tuple(
        AggregateInput(ACCOUNTS[m], f"{m:02x}" * 32, 10, score=m, rejected=m in rejected)
        for m in listed
    )
    return Announcement(
        kind=AnnouncementKind.AGGREGATE,
        federation="heart",
        round=ROUND,
        cluster=cluster,
        blob_hash="ee" * 32,
        size=100,
        codec="msw1-f32",
        samples=10 * len(members),
        sender=ACCOUNTS[sender],
        peer_id="peer",
        inputs=inputs,
    ).signed(KEYS[sender])


def order() -> list[int]:
    cluster0 = [ACCOUNTS[i] for i in range(5) if CLUSTERS[i] == 0]
    return [ACCOUNTS.index(a) for a in aggregator_candidates(ROUND, 0, cluster0)]


def test_the_best_ranked_candidates_commitment_wins_whatever_came_first() -> None:
    first, second, third = order()[:3]
    keeper = book()
    keeper.node.inbox.add(aggregate(third, [0, 1, 2]))
    keeper.node.inbox.add(aggregate(second, [second]))
    info = trio.run(keeper.cluster_record, ROUND, 0)
    assert info is not None and info.aggregator == ACCOUNTS[second]
    assert trio.run(keeper.cluster_inputs, info) == (
        (ACCOUNTS[second].lower(), f"{second:02x}" * 32, 10),
    )
    keeper.node.inbox.add(aggregate(first, [0, 1, 2, 4]))
    info = trio.run(keeper.cluster_record, ROUND, 0)
    assert info is not None and info.aggregator == ACCOUNTS[first]


def test_a_commitment_this_node_refused_leaves_the_turn_to_the_next_candidate() -> None:
    first, second = order()[:2]
    keeper = book()
    best = aggregate(first, [0, 1, 2])
    keeper.node.inbox.add(best)
    keeper.node.inbox.add(aggregate(second, [0, 1, 2]))
    keeper.node.refused_commitments.add(best.signature)  # could not check or fetch it
    info = trio.run(keeper.cluster_record, ROUND, 0)
    assert info is not None and info.aggregator == ACCOUNTS[second]
    taker = book(me=second)  # the next candidate, which refused it too, takes over
    taker.node.inbox.add(best)
    assert not trio.run(taker.record_cluster, ROUND, 0, "ee" * 32, "00" * 32, ())
    taker.node.refused_commitments.add(best.signature)
    assert trio.run(taker.record_cluster, ROUND, 0, "ee" * 32, "00" * 32, ())


def test_a_candidate_stays_quiet_behind_a_better_ranked_commitment() -> None:
    first, second = order()[:2]
    behind = book(me=second)
    behind.node.inbox.add(aggregate(first, [0, 1, 2]))
    assert not trio.run(behind.record_cluster, ROUND, 0, "ee" * 32, "00" * 32, ())
    ahead = book(me=first)
    ahead.node.inbox.add(aggregate(second, [0, 1, 2]))
    assert trio.run(ahead.record_cluster, ROUND, 0, "ee" * 32, "00" * 32, ())
    assert trio.run(book(me=second).record_cluster, ROUND, 0, "ee" * 32, "00" * 32, ())


@pytest.mark.parametrize(
    ("members", "excluded"),
    [([0, 3], ()), ([0, 1, 1], ()), ([0, 2], (2,))],
    ids=["another-clusters-member", "listed-twice", "excluded-member"],
)
def test_a_commitment_naming_non_members_of_the_cluster_is_ignored(
    members: list[int], excluded: tuple[int, ...]
) -> None:
    keeper = book(excluded=excluded)
    keeper.node.inbox.add(aggregate(order()[0], members))
    assert trio.run(keeper.cluster_record, ROUND, 0) is None


def refused_update(member: int, round_number: int = ROUND) -> Announcement:
    return Announcement(
        kind=AnnouncementKind.UPDATE,
        federation="heart",
        round=round_number,
        cluster=0,
        blob_hash=f"{member:02x}" * 32,
        size=2**26 + 1,
        codec="msw1-f32",
        samples=10,
        sender=ACCOUNTS[member],
        peer_id="peer",
    ).signed(KEYS[member])


def test_a_commitment_taking_an_update_whose_member_signed_a_refused_one_is_ignored() -> None:
    first, second = order()[:2]
    keeper = book()
    keeper.node.inbox.add(aggregate(first, [first, second]))
    keeper.node.inbox.add(aggregate(second, [first, second], rejected=(first,)))
    keeper.node.inbox.refuse(refused_update(first), "announced blob of 67108865 bytes")
    info = trio.run(keeper.cluster_record, ROUND, 0)
    # the first candidate took its own refused update: the second's commitment stands
    assert info is not None and info.aggregator == ACCOUNTS[second]
    # a refusal filed for another round says nothing about this one
    other = book()
    other.node.inbox.add(aggregate(first, [first, second]))
    other.node.inbox.refuse(refused_update(first, ROUND + 1), "announced blob of 67108865 bytes")
    info = trio.run(other.cluster_record, ROUND, 0)
    assert info is not None and info.aggregator == ACCOUNTS[first]


def test_a_commitment_without_its_aggregators_own_update_is_ignored_but_in_secure_rounds() -> None:
    first = order()[0]
    others = [m for m in range(5) if CLUSTERS[m] == 0 and m != first]
    keeper = book()
    keeper.node.inbox.add(aggregate(first, others, own=False))
    assert trio.run(keeper.cluster_record, ROUND, 0) is None
    keeper.node.config.federation.secure_aggregation = True  # masked inputs speak for members
    info = trio.run(keeper.cluster_record, ROUND, 0)
    assert info is not None and info.aggregator == ACCOUNTS[first]


def test_a_non_candidates_commitment_is_ignored() -> None:
    keeper = book()
    keeper.node.inbox.add(aggregate(3, [0, 1]))  # member 3 is in cluster 1
    assert trio.run(keeper.cluster_record, ROUND, 0) is None


def attestation(signer: int, digest: bytes, key: str | None = None) -> Announcement:
    signature = sign_round(key or KEYS[signer], signer, digest).signature.hex()
    return Announcement(
        kind=AnnouncementKind.ATTEST,
        federation="heart",
        round=ROUND,
        cluster=CLUSTERS[signer],
        blob_hash="dd" * 32,
        size=0,
        codec="msw1-f32",
        samples=0,
        sender=ACCOUNTS[signer],
        peer_id="peer",
        round_signature=signature,
    ).signed(KEYS[signer])


def test_only_voters_signatures_over_this_digest_count() -> None:
    digest, other = b"\x01" * 32, b"\x02" * 32
    keeper = book(excluded=(4,))
    inbox: Any = keeper.node.inbox
    inbox.add(attestation(0, digest))
    inbox.add(attestation(1, other))  # signed another digest
    inbox.add(attestation(2, digest, key=KEYS[3]))  # signed by another key
    inbox.add(attestation(3, digest))
    inbox.add(attestation(4, digest))  # excluded
    signatures = keeper._signatures(ROUND, digest)
    assert [s.signer for s in signatures] == [0, 3]


def test_the_contracts_view_sorts_records_clamps_scores_and_flags_rejections() -> None:
    members = {a.lower(): row for a, row in zip(ACCOUNTS, rows(), strict=True)}
    inputs = (
        AggregateInput(ACCOUNTS[2], "02" * 32, 10, score=2**40),
        AggregateInput(ACCOUNTS[0], "00" * 32, 20, score=7),
        AggregateInput(ACCOUNTS[1], "01" * 32, 5, rejected=True),
    )
    announced = aggregate(0, [0]).__class__(
        **{**aggregate(0, [0]).__dict__, "inputs": inputs, "samples": 30}
    )
    commit = _cluster_commit(announced, members)
    assert [(r.member, r.score, r.rejected) for r in commit.records] == [
        (0, 7, False),
        (1, 0, True),
        (2, SCORE_MAX, False),
    ]
    assert commit.aggregator == 0 and commit.total_samples == 30  # the rejected 5 are not in it
