"""Telling a newcomer from a stranger: Membership's registry reads and the gossip validator."""

from __future__ import annotations

from eth_account import Account

from gossip.messages import Announcement, AnnouncementKind
from gossip.validation import AnnouncementPolicy, Verdict, judge
from incentive.records import MemberInfo
from node.membership import STRANGERS_KEPT, Membership

MEMBER_KEY = "0x" + "11" * 32
MEMBER = Account.from_key(MEMBER_KEY).address
MEMBER_PEER = "12D3KooWmember"
OUTSIDER_KEY = "0x" + "33" * 32
OUTSIDER = Account.from_key(OUTSIDER_KEY).address
OUTSIDER_PEER = "12D3KooWoutsider"


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def listed(*members: tuple[str, str]) -> list[MemberInfo]:
    return [MemberInfo(address, "h", peer, []) for address, peer in members]


def policy(membership: Membership, refreshes: list[str]) -> AnnouncementPolicy:
    return AnnouncementPolicy(
        federation="heart",
        member_peer_id=membership.peer_id,
        current_round=lambda: 3,
        max_blob_bytes=1_000,
        on_unknown_sender=refreshes.append,
        is_barred=membership.is_barred,
        is_stranger=membership.is_stranger,
    )


def update_from(key: str, peer: str) -> Announcement:
    return Announcement(
        kind=AnnouncementKind.UPDATE,
        federation="heart",
        round=3,
        cluster=0,
        blob_hash="ab" * 32,
        size=120,
        codec="msw1-f32",
        samples=10,
        sender=Account.from_key(key).address,
        peer_id=peer,
    ).signed(key)


def test_an_unknown_sender_is_ignored_at_first_sight_and_a_refresh_is_asked() -> None:
    clock = Clock()
    membership = Membership(clock)
    membership.update(listed((MEMBER, MEMBER_PEER)))
    refreshes: list[str] = []
    clock.now += 1
    decision = judge(
        update_from(OUTSIDER_KEY, OUTSIDER_PEER), OUTSIDER_PEER, policy(membership, refreshes)
    )
    assert decision.verdict is Verdict.IGNORE
    assert refreshes == [OUTSIDER]
    clock.now += 1  # no read since: still only ignored
    again = judge(
        update_from(OUTSIDER_KEY, OUTSIDER_PEER), OUTSIDER_PEER, policy(membership, refreshes)
    )
    assert again.verdict is Verdict.IGNORE


def test_still_unknown_after_a_later_read_is_rejected() -> None:
    clock = Clock()
    membership = Membership(clock)
    membership.update(listed((MEMBER, MEMBER_PEER)))
    refreshes: list[str] = []
    clock.now += 1
    judge(update_from(OUTSIDER_KEY, OUTSIDER_PEER), OUTSIDER_PEER, policy(membership, refreshes))
    clock.now += 1
    membership.update(listed((MEMBER, MEMBER_PEER)))  # the read asked for: not admitted
    clock.now += 1
    decision = judge(
        update_from(OUTSIDER_KEY, OUTSIDER_PEER), OUTSIDER_PEER, policy(membership, refreshes)
    )
    assert decision.verdict is Verdict.REJECT
    assert "not a member" in decision.reason and OUTSIDER in decision.reason
    assert refreshes == [OUTSIDER]  # a stranger asks for no more reads


def test_a_read_begun_before_the_first_sight_does_not_count() -> None:
    clock = Clock()
    membership = Membership(clock)
    refreshes: list[str] = []
    began = clock.now
    clock.now += 1
    judge(update_from(OUTSIDER_KEY, OUTSIDER_PEER), OUTSIDER_PEER, policy(membership, refreshes))
    membership.update(listed((MEMBER, MEMBER_PEER)), read_at=began)  # may predate admission
    decision = judge(
        update_from(OUTSIDER_KEY, OUTSIDER_PEER), OUTSIDER_PEER, policy(membership, refreshes)
    )
    assert decision.verdict is Verdict.IGNORE


def test_admitted_by_the_next_read_is_accepted() -> None:
    clock = Clock()
    membership = Membership(clock)
    membership.update(listed((MEMBER, MEMBER_PEER)))
    refreshes: list[str] = []
    clock.now += 1
    judge(update_from(OUTSIDER_KEY, OUTSIDER_PEER), OUTSIDER_PEER, policy(membership, refreshes))
    clock.now += 1
    membership.update(listed((MEMBER, MEMBER_PEER), (OUTSIDER, OUTSIDER_PEER)))
    decision = judge(
        update_from(OUTSIDER_KEY, OUTSIDER_PEER), OUTSIDER_PEER, policy(membership, refreshes)
    )
    assert decision.verdict is Verdict.ACCEPT


def test_a_peer_that_spoke_for_a_stranger_cannot_start_afresh_with_a_new_address() -> None:
    clock = Clock()
    membership = Membership(clock)
    membership.update(listed((MEMBER, MEMBER_PEER)))
    refreshes: list[str] = []
    clock.now += 1
    judge(update_from(OUTSIDER_KEY, OUTSIDER_PEER), OUTSIDER_PEER, policy(membership, refreshes))
    clock.now += 1
    membership.update(listed((MEMBER, MEMBER_PEER)))
    clock.now += 1
    fresh_key = "0x" + "44" * 32  # a new account, never seen, from the same peer
    decision = judge(
        update_from(fresh_key, OUTSIDER_PEER), OUTSIDER_PEER, policy(membership, refreshes)
    )
    assert decision.verdict is Verdict.REJECT


def test_an_older_read_finishing_late_is_dropped() -> None:
    clock = Clock()
    membership = Membership(clock)
    membership.update(listed((MEMBER, MEMBER_PEER), (OUTSIDER, OUTSIDER_PEER)), read_at=10.0)
    membership.update(listed((MEMBER, MEMBER_PEER)), read_at=5.0)
    assert membership.addresses() == sorted([MEMBER.lower(), OUTSIDER.lower()])


def test_unknown_senders_remembered_are_bounded() -> None:
    clock = Clock()
    membership = Membership(clock)
    for index in range(STRANGERS_KEPT + 10):
        membership.is_stranger(f"0x{index:040x}", MEMBER_PEER)
    membership.update(listed((MEMBER, MEMBER_PEER)), read_at=clock.now + 1)
    assert not membership.is_stranger(f"0x{0:040x}", MEMBER_PEER)  # forgotten: first sight again
    assert membership.is_stranger(f"0x{STRANGERS_KEPT + 9:040x}", MEMBER_PEER)
