"""A node waiting for a cluster's aggregate record asks the chain at growing intervals, and at
once when an aggregate announcement of the cluster arrives."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import trio
import trio.testing

from gossip.messages import Announcement, AnnouncementKind
from incentive.records import ClusterInfo
from node.hospital import HospitalNode
from node.inbox import RoundInbox

RECORD = ClusterInfo(
    round=3,
    cluster=1,
    aggregate_hash="ab" * 32,
    previous_hash="cd" * 32,
    records_hash="ef" * 32,
    aggregator="0x" + "aa" * 20,
    total_samples=10,
    block_number=7,
)


class SlowBook:
    """A round book whose record of round 3, cluster 1 appears at ``recorded_at`` seconds."""

    def __init__(self, recorded_at: float) -> None:
        self.recorded_at = recorded_at
        self.asked_at: list[float] = []

    async def cluster_record(self, round_number: int, cluster: int) -> ClusterInfo | None:
        now = trio.current_time()
        self.asked_at.append(now)
        return RECORD if now >= self.recorded_at else None


def aggregate_announcement() -> Announcement:
    return Announcement(
        kind=AnnouncementKind.AGGREGATE,
        federation="heart",
        round=3,
        cluster=1,
        blob_hash="ab" * 32,
        size=100,
        codec="msw1-f32",
        samples=10,
        sender="0x" + "aa" * 20,
        peer_id="12D3KooWpeer",
    )


def wait_for_record(book: SlowBook, announce_at: float | None = None) -> ClusterInfo:
    node: Any = SimpleNamespace(inbox=RoundInbox(), book=book)
    found: list[ClusterInfo] = []

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            if announce_at is not None:

                async def announce() -> None:
                    await trio.sleep(announce_at)
                    node.inbox.add(aggregate_announcement())

                nursery.start_soon(announce)
            found.append(await HospitalNode._recorded_aggregate(node, 3, 1))

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    return found[0]


def test_without_news_the_pause_doubles_up_to_four_seconds() -> None:
    book = SlowBook(recorded_at=14.5)

    assert wait_for_record(book) == RECORD
    # reads at 0, then after pauses of 1, 2, 4, 4, 4 seconds
    assert book.asked_at == [0.0, 1.0, 3.0, 7.0, 11.0, 15.0]


def test_an_aggregate_announcement_brings_a_read_at_once() -> None:
    book = SlowBook(recorded_at=8.0)

    assert wait_for_record(book, announce_at=8.0) == RECORD
    assert book.asked_at == [0.0, 1.0, 3.0, 7.0, 8.0]
