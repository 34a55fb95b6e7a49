"""Misbehaviour the testnet can inject into a node, to show what the others do about it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from gossip.messages import AggregateInput, Announcement, AnnouncementKind
from gossip.ranges import ranges_of
from node.data import SiteData
from node.hospital import HospitalNode
from node.weights import Weights, decode_weights


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


UPDATE_ATTACKS = ("sign-flip", "scaling", "noise", "zero", "stale")
SCALE = 10.0  # scaling: how far a boosted update is pushed; noise: its length over the honest one


def tamper_updates(node: HospitalNode, attack: str, seed: int = 0) -> None:
    """Make ``node`` send, in every model round, an update other than the one it trained:

    - ``sign-flip``: the update negated;
    - ``scaling``: the update times :data:`SCALE` (a boosted update);
    - ``noise``: Gaussian noise :data:`SCALE` times as long as the update;
    - ``zero``: all zeros (a free rider that trains nothing);
    - ``stale``: its first model round's update again in every later round (a replay).

    The statistics round of ``federation.standardise = "federation"`` is left alone.
    """
    if attack not in UPDATE_ATTACKS:
        raise ValueError(f"unknown update attack {attack!r}; choose one of {UPDATE_ATTACKS}")
    learner = node.learner
    honest_train = learner.train
    rng = np.random.default_rng(seed)
    first: list[tuple[Weights, int]] = []

    def train(round_number: int) -> tuple[Weights, int]:
        update, samples = honest_train(round_number)
        if learner.statistics_round(round_number):
            return update, samples
        if attack == "sign-flip":
            return {n: -v for n, v in update.items()}, samples
        if attack == "scaling":
            return {n: (SCALE * v).astype(np.float32) for n, v in update.items()}, samples
        if attack == "zero":
            return {n: np.zeros_like(v) for n, v in update.items()}, samples
        if attack == "noise":
            length = float(
                np.sqrt(sum(float(np.sum(v.astype(np.float64) ** 2)) for v in update.values()))
            )
            size = sum(v.size for v in update.values())
            sigma = SCALE * length / max(1.0, float(np.sqrt(size)))
            return {
                n: rng.normal(0.0, sigma, v.shape).astype(np.float32) for n, v in update.items()
            }, samples
        if not first:
            first.append((update, samples))
        return first[0]

    learner.train = train  # type: ignore[method-assign]


def flip_labels(site: SiteData) -> SiteData:
    """``site`` with its binary training labels flipped (data poisoning: the member trains
    honestly on wrong labels). Survival data has no label to flip."""
    if site.train_y.ndim != 1:
        raise ValueError(f"{site.dataset} has survival labels; label flipping needs a binary task")
    return replace(site, train_y=(1.0 - site.train_y).astype(site.train_y.dtype))


def copy_updates(node: HospitalNode, wait_seconds: float = 5.0) -> None:
    """Make ``node`` announce, instead of its own update, another member's update of the same
    round as its own (a copycat: no training of its own worth anything, paid for another's).
    It waits up to ``wait_seconds`` for one to arrive, preferring its own cluster."""
    publish = node.gossip.publish

    async def publish_copy(announcement: Announcement) -> None:
        if announcement.kind is AnnouncementKind.UPDATE:
            me = node.address.lower()

            def others() -> list[Announcement]:
                updates = node.inbox.updates(announcement.round)
                found = [a for s, a in updates.items() if s != me]
                return sorted(found, key=lambda a: (a.cluster != announcement.cluster, a.sender))

            await node.inbox.wait_until(lambda: bool(others()), wait_seconds)
            if others():
                victim = others()[0]
                announcement = node.announcement(
                    announcement.kind,
                    announcement.round,
                    announcement.cluster,
                    victim.blob_hash,
                    victim.size,
                    announcement.samples,
                )
        await publish(announcement)

    node.gossip.publish = publish_copy  # type: ignore[method-assign]


ATTACKS = (*UPDATE_ATTACKS, "label-flip", "copycat", "nan", "forged-blob", "silent")


def inject(node: HospitalNode, attack: str, seed: int = 0) -> None:
    """Make ``node`` misbehave as ``attack`` says (``label-flip`` is applied to the data the
    node is built with, :func:`flip_labels`; nothing to do here)."""
    if attack in UPDATE_ATTACKS:
        tamper_updates(node, attack, seed)
    elif attack == "copycat":
        copy_updates(node)
    elif attack == "nan":
        announce_nan_updates(node)
    elif attack == "forged-blob":
        serve_forged_blobs(node)
    elif attack == "silent":
        withhold_updates(node)
    elif attack != "label-flip":
        raise ValueError(f"unknown attack {attack!r}; choose one of {ATTACKS}")


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
