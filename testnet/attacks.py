"""Misbehaviour the testnet can inject into a node, to show what the others do about it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from gossip.messages import AggregateInput, Announcement, AnnouncementKind
from gossip.ranges import ranges_of
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


NAN_FLOAT32 = b"\x00\x00\xc0\x7f"  # a quiet NaN, little-endian


def announce_nan_updates(node: HospitalNode) -> None:
    """Make ``node`` announce, instead of each update it trains, the same blob with its last
    float replaced by NaN (as a broken or hostile member might). Aggregators must reject the
    update; on a Consortium federation each rejection lowers the member's reputation."""
    publish = node.gossip.publish

    async def publish_poisoned(announcement: Announcement) -> None:
        if announcement.kind is AnnouncementKind.UPDATE:
            honest = node.gossip.store.get(announcement.blob_hash)
            assert honest is not None, "a node stores its update before announcing it"
            poisoned = node.gossip.store.put(honest[:-4] + NAN_FLOAT32)
            announcement = node.announcement(
                announcement.kind,
                announcement.round,
                announcement.cluster,
                poisoned,
                announcement.size,
                announcement.samples,
            )
        await publish(announcement)

    node.gossip.publish = publish_poisoned  # type: ignore[method-assign]


def inflate_own_evaluation(node: HospitalNode) -> None:
    """Make ``node`` report, in every evaluation it gossips, the whole round's contribution as
    its own (a million parts per million) and nothing for the others: a lying evaluator. The
    median over the cluster's evaluators must keep the scores within the honest ones'."""
    publish = node.gossip.publish

    async def publish_inflated(announcement: Announcement) -> None:
        if announcement.kind is AnnouncementKind.EVALUATION:
            me = node.address.lower()
            inputs = tuple(
                replace(i, score=1_000_000 if i.sender.lower() == me else 0)
                for i in announcement.inputs
            )
            announcement = node.announcement(
                announcement.kind,
                announcement.round,
                announcement.cluster,
                announcement.blob_hash,
                0,
                0,
                inputs,
            )
        await publish(announcement)

    node.gossip.publish = publish_inflated  # type: ignore[method-assign]


def record_false_aggregates(node: HospitalNode) -> None:
    """Make ``node``, whenever it aggregates, commit and announce a model other than the
    average of the updates it lists with it (the average pushed ten times as far: a poisoning
    aggregator), and serve that model. Members that check aggregates must refuse it."""
    pushed: dict[str, str] = {}

    def false_hash(digest: str) -> str:
        if digest not in pushed:
            average = node.gossip.store.get(digest)
            assert average is not None, "the aggregator stores its average before committing it"
            false = {name: 10 * values for name, values in decode_weights(average).items()}
            pushed[digest] = node.store_weights(false)
        return pushed[digest]

    record = node.book.record_cluster
    publish = node.gossip.publish

    async def record_false(
        round_number: int,
        cluster: int,
        aggregate_hash: str,
        previous_hash: str,
        inputs: Sequence[AggregateInput],
    ) -> bool:
        false = false_hash(aggregate_hash)
        return await record(round_number, cluster, false, previous_hash, inputs)

    async def publish_false(announcement: Announcement) -> None:
        if announcement.kind is AnnouncementKind.AGGREGATE:
            announcement = node.announcement(
                announcement.kind,
                announcement.round,
                announcement.cluster,
                false_hash(announcement.blob_hash),
                announcement.size,
                announcement.samples,
                announcement.inputs,
            )
        await publish(announcement)

    node.book.record_cluster = record_false  # type: ignore[method-assign]
    node.gossip.publish = publish_false  # type: ignore[method-assign]
