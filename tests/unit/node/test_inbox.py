"""The round inbox files secure-aggregation announcements per kind and sender."""

from __future__ import annotations

from dataclasses import replace

import trio

from gossip.messages import AggregateInput, Announcement, AnnouncementKind
from node.inbox import RoundInbox

ALICE = "0x" + "aa" * 20
BOB = "0x" + "bB" * 20


def announcement(kind: AnnouncementKind, sender: str = ALICE, **changes: object) -> Announcement:
    base = Announcement(
        kind=kind,
        federation="heart",
        round=2,
        cluster=0,
        blob_hash="ab" * 32,
        size=100,
        codec="msw1-f32",
        samples=0,
        sender=sender,
        peer_id="12D3KooWpeer",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_secure_aggregation_messages_are_kept_by_kind_and_sender_first_one_first() -> None:
    inbox = RoundInbox()
    first = announcement(AnnouncementKind.SECAGG_REQUEST)
    second = announcement(AnnouncementKind.SECAGG_REQUEST, blob_hash="cd" * 32)
    keys = announcement(AnnouncementKind.SECAGG_KEYS, BOB, samples=7)
    for item in (first, second, first, keys):
        inbox.add(item)
    assert inbox.secagg(2, AnnouncementKind.SECAGG_REQUEST) == {ALICE: [first, second]}
    assert inbox.first_secagg(2, AnnouncementKind.SECAGG_REQUEST) == {ALICE: first}
    assert inbox.first_secagg(2, AnnouncementKind.SECAGG_KEYS) == {BOB.lower(): keys}
    assert inbox.secagg(2, AnnouncementKind.SECAGG_ANSWER) == {}
    # none of them is an aggregate, an update or an attestation
    assert inbox.aggregates(2, 0) == [] and inbox.updates(2) == {}
    assert inbox.attestations(2) == []
    inbox.forget_before(3)
    assert inbox.secagg(2, AnnouncementKind.SECAGG_KEYS) == {}


def test_a_roster_wakes_a_member_waiting_for_it() -> None:
    inbox = RoundInbox()
    entry = AggregateInput(ALICE, "ab" * 32, 5)
    roster = announcement(AnnouncementKind.SECAGG_ROSTER, size=0, samples=5, inputs=(entry,))

    def here() -> bool:
        return bool(inbox.first_secagg(2, AnnouncementKind.SECAGG_ROSTER))

    async def main() -> bool:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_add_soon, inbox, roster)
            return await inbox.wait_until(here, 5.0)

    assert trio.run(main)


async def _add_soon(inbox: RoundInbox, item: Announcement) -> None:
    await trio.sleep(0)
    inbox.add(item)
