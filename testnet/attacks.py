"""Misbehaviour the testnet can inject into a node, to show what the others do about it."""

from __future__ import annotations

from collections.abc import Sequence

from gossip.messages import Announcement, AnnouncementKind
from gossip.ranges import ranges_of
from incentive.records import MemberRecord
from incentive.tx import TxOutcome
from node.hospital import HospitalNode
from node.weights import decode_weights


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


def record_false_aggregates(node: HospitalNode) -> None:
    """Make ``node``, whenever it aggregates, record on chain a model other than the average
    of the updates it records with it (the average pushed ten times as far: a poisoning
    aggregator), and serve that model. Members that check aggregates must refuse it."""
    honest = node.chain.record_cluster

    def record_false(
        round: int,
        cluster: int,
        aggregate_hash: bytes | str,
        previous_hash: bytes | str,
        records: Sequence[MemberRecord],
    ) -> TxOutcome:
        average = node.gossip.store.get(str(aggregate_hash))
        assert average is not None, "the aggregator stores its average before recording it"
        pushed = {name: 10 * values for name, values in decode_weights(average).items()}
        return honest(round, cluster, node.store_weights(pushed), previous_hash, records)

    node.chain.record_cluster = record_false  # type: ignore[method-assign]
