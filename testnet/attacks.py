"""Misbehaviour the testnet can inject into a node, to show what the others do about it."""

from __future__ import annotations

from gossip.messages import Announcement, AnnouncementKind
from gossip.ranges import ranges_of
from node.hospital import HospitalNode


def serve_forged_blobs(node: HospitalNode) -> None:
    """Make ``node`` answer every blob request with corrupted bytes.

    It still announces the true hash of its update, so peers see bytes that do not match
    the announcement: they must reject them and carry on without that update.
    """
    honest = node.gossip.store.get

    def forged(digest: str) -> bytes | None:
        data = honest(digest)
        if data is None:
            return None
        return bytes(byte ^ 0xFF for byte in data[:16]) + data[16:]

    node.gossip.serve_lookup = forged
    node.gossip.serve_range = ranges_of(forged)  # segments of large blobs too


def withhold_updates(node: HospitalNode) -> None:
    """Make ``node`` train but never announce its updates (a silent, free-riding member)."""
    publish = node.gossip.publish

    async def publish_all_but_updates(announcement: Announcement) -> None:
        if announcement.kind is not AnnouncementKind.UPDATE:
            await publish(announcement)

    node.gossip.publish = publish_all_but_updates  # type: ignore[method-assign]
