"""Misbehaviour the testnet can inject into a node, to show what the others do about it."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import trio

from gossip.errors import GossipError
from gossip.messages import UINT64_MAX, AggregateInput, Announcement, AnnouncementKind
from gossip.ranges import ranges_of
from node.codecs import decode_update
from node.config import MedswarmConfig
from node.data import SiteData
from node.hospital import HospitalNode
from node.weights import Weights, encoded_size

log = logging.getLogger(__name__)


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


def replay_old_announcements(node: HospitalNode) -> None:
    """Make ``node`` publish its first update announcement honestly (round 1's: under
    ``standardise = "federation"`` its feature moments), and in every later round that very
    announcement again, signed bytes and all, instead of a new one: a replay of an old
    round's announcement by a member that never trains. Validators ignore an announcement
    for a round that is over, so the member contributes nothing after its first round. Its
    own validator is relaxed to let the replays out."""
    node.gossip.policy = replace(
        node.gossip.policy, current_round=lambda: 0, rounds_ahead=UINT64_MAX
    )
    publish = node.gossip.publish
    first: list[Announcement] = []

    async def publish_replay(announcement: Announcement) -> None:
        if announcement.kind is AnnouncementKind.UPDATE:
            if first:
                announcement = first[0]
            else:
                first.append(announcement)
        await publish(announcement)

    node.gossip.publish = publish_replay  # type: ignore[method-assign]


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


def copy_updates(
    node: HospitalNode, wait_seconds: float = 5.0, other_clusters_only: bool = False
) -> None:
    """Make ``node`` announce, instead of its own update, another member's update of the same
    round as its own (a copycat: no training of its own worth anything, paid for another's).
    It waits up to ``wait_seconds`` for one to arrive, preferring its own cluster, or taking
    only another cluster's (whose blob its own aggregator has not fetched)."""
    publish = node.gossip.publish

    async def publish_copy(announcement: Announcement) -> None:
        if announcement.kind is AnnouncementKind.UPDATE:
            me = node.address.lower()

            def others() -> list[Announcement]:
                updates = node.inbox.updates(announcement.round)
                found = [a for s, a in updates.items() if s != me]
                if other_clusters_only:
                    found = [a for a in found if a.cluster != announcement.cluster]
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


def announce_oversized_updates(node: HospitalNode) -> None:
    """Make ``node`` announce each update it trains as a blob one byte over the federation's
    ``network.max_blob_bytes`` (it serves its true blob if asked). Validators reject the
    announcement, an offence of its peer; as a member signed it, the cluster's aggregator
    lists the update as rejected. Its own validator is relaxed to let the lie out."""
    limit = node.config.network.max_blob_bytes
    node.gossip.policy = replace(node.gossip.policy, max_blob_bytes=UINT64_MAX)
    publish = node.gossip.publish

    async def publish_oversized(announcement: Announcement) -> None:
        if announcement.kind is AnnouncementKind.UPDATE:
            announcement = node.announcement(
                announcement.kind,
                announcement.round,
                announcement.cluster,
                announcement.blob_hash,
                limit + 1,
                announcement.samples,
            )
        await publish(announcement)

    node.gossip.publish = publish_oversized  # type: ignore[method-assign]


def announce_malformed_updates(node: HospitalNode, seed: int = 0) -> None:
    """Make ``node`` announce, instead of each update it trains, as many random bytes under
    their own hash: fetching succeeds (the bytes are what was announced), decoding fails.
    Aggregators must reject the update as invalid weights."""
    publish = node.gossip.publish
    rng = np.random.default_rng(seed)

    async def publish_garbage(announcement: Announcement) -> None:
        if announcement.kind is AnnouncementKind.UPDATE:
            garbage = node.gossip.store.put(rng.bytes(announcement.size))
            announcement = node.announcement(
                announcement.kind,
                announcement.round,
                announcement.cluster,
                garbage,
                announcement.size,
                announcement.samples,
            )
        await publish(announcement)

    node.gossip.publish = publish_garbage  # type: ignore[method-assign]


OUTSIDER = "outsider"
TRESPASS_SECONDS = 0.5  # between an outsider's announcements


async def trespass(
    node: HospitalNode,
    rounds: int,
    seconds: float,
    bootstrap: Sequence[str] = (),
    seed: int = 0,
) -> None:
    """Run ``node`` as a peer that holds valid keys but was never admitted (the ``outsider``
    attack), in place of registering and taking part in rounds.

    It dials its bootstrap peers and, as they register, every member the registry lists;
    every :data:`TRESPASS_SECONDS` it announces an update for the round in progress (the last
    final one plus one), a fresh blob of small random weights each round, which it serves. It
    stops once round ``rounds`` is final on chain, or after ``seconds``. Members must reject
    it once they have re-read the registry, blacklist it and never count its update.
    """
    me, my_peer = node.address.lower(), node.gossip.peer_id
    members = node.gossip.policy.member_peer_id

    def registered(address: str) -> str | None:  # what lets its own validator pass its lies
        return my_peer if address.lower() == me else members(address)

    node.gossip.policy = replace(node.gossip.policy, member_peer_id=registered)
    rng = np.random.default_rng(seed)
    announcement: Announcement | None = None
    with trio.move_on_after(seconds):
        async with trio.open_nursery() as dialing:  # a peer not up yet holds nothing up
            for address in (*node.config.network.bootstrap, *bootstrap):
                dialing.start_soon(_dial_quietly, node, address)
            while True:
                finalized = await node.book.last_finalized_round()
                if finalized >= rounds:
                    dialing.cancel_scope.cancel()
                    return
                await node.refresh_membership()  # dials members not connected, in the background
                if announcement is None or announcement.round != finalized + 1:
                    node.current_round = finalized + 1
                    weights = {
                        name: rng.normal(0.0, 0.01, values.shape).astype(np.float32)
                        for name, values in node.global_weights.items()
                    }
                    announcement = node.announcement(
                        AnnouncementKind.UPDATE,
                        node.current_round,
                        0,
                        node.store_weights(weights),
                        encoded_size(weights),
                        len(node.site.train_y),
                    )
                await node.gossip.publish(announcement)
                await trio.sleep(TRESPASS_SECONDS)


async def _dial_quietly(node: HospitalNode, address: str) -> None:
    try:
        await node.gossip.connect(address)
    except GossipError as exc:
        log.info("%s: bootstrap peer %s not reached: %s", node.name, address, exc)


def longest_run_seconds(config: MedswarmConfig) -> float:
    """How long the federation's rounds could take if every one ran to its deadlines: an
    outsider gives up by then."""
    federation = config.federation
    per_round = (
        federation.update_timeout
        + federation.takeover_timeout
        + federation.aggregate_timeout
        + federation.chain_timeout
    )
    return federation.rounds * per_round


ATTACKS = (
    *UPDATE_ATTACKS,
    "label-flip",
    "copycat",
    "nan",
    "forged-blob",
    "silent",
    "replay",
    "oversized-blob",
    "malformed-blob",
    OUTSIDER,
)


def inject(node: HospitalNode, attack: str, seed: int = 0) -> None:
    """Make ``node`` misbehave as ``attack`` says. Two are put in by the launcher instead:
    ``label-flip`` by the data the node is built with (:func:`flip_labels`), ``outsider``
    by running :func:`trespass` in place of the node's rounds, never admitted."""
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
    elif attack == "replay":
        replay_old_announcements(node)
    elif attack == "oversized-blob":
        announce_oversized_updates(node)
    elif attack == "malformed-blob":
        announce_malformed_updates(node, seed)
    elif attack not in ("label-flip", OUTSIDER):
        raise ValueError(f"unknown attack {attack!r}; choose one of {ATTACKS}")


def record_false_aggregates(node: HospitalNode) -> None:
    """Make ``node``, whenever it aggregates, commit and announce a model other than the
    average of the updates it lists with it (the average pushed ten times as far: a poisoning
    aggregator), and serve that model. Members that check aggregates must refuse it."""
    pushed: dict[str, str] = {}

    def false_hash(round_number: int, digest: str) -> str:
        if digest not in pushed:
            average = node.gossip.store.get(digest)
            assert average is not None, "the aggregator stores its average before committing it"
            codec = node.aggregate_codec(round_number)
            false = {name: 10 * values for name, values in decode_update(average, codec).items()}
            pushed[digest] = node.store_aggregate(round_number, false)[0].digest
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
        false = false_hash(round_number, aggregate_hash)
        return await record(round_number, cluster, false, previous_hash, inputs)

    async def publish_false(announcement: Announcement) -> None:
        if announcement.kind is AnnouncementKind.AGGREGATE:
            announcement = node.announcement(
                announcement.kind,
                announcement.round,
                announcement.cluster,
                false_hash(announcement.round, announcement.blob_hash),
                announcement.size,
                announcement.samples,
                announcement.inputs,
                codec=announcement.codec,
            )
        await publish(announcement)

    node.book.record_cluster = record_false  # type: ignore[method-assign]
    node.gossip.publish = publish_false  # type: ignore[method-assign]
