"""A member's part in its cluster's secure aggregation for one round, over gossip and blobs.

With ``federation.secure_aggregation`` the members of a cluster (at least two) run the
protocol of :mod:`node.secagg` inside the round; every message is a blob of
:mod:`node.secagg_messages` announced by a signed announcement of its kind:

1. at the start of the round, before training, each member announces its public keys
   (``secagg-keys``, with its number of samples), waits for the others' keys (up to
   ``federation.update_timeout`` from the round's start) and announces its shares for them
   (``secagg-shares``);
2. the cluster's first aggregator candidate announces the *roster* (``secagg-roster``): the
   members whose shares reach every other member of it, each with its share bundle's hash and
   samples (:mod:`node.secure_aggregator`);
3. once trained, each member of the roster fetches the roster's bundles, masks
   ``x_u * n_u / S`` (``S``: the roster's samples; :mod:`node.secure_sum`) and announces the
   masked input as its update of the round (codec :data:`MASKED_CODEC`);
4. each member answers the unmasking request of an aggregator candidate of its cluster
   (``secagg-answer``).

A member that cannot take a step (keys or shares missing at the deadline, left out of the
roster, an update out of the masks' range) sits the round out; the others go on without it.
Members that check their cluster's aggregate recompute it from the masked inputs the
commitment lists, the keys and the gossiped answers (:meth:`SecureRound.check`): unmasking
is deterministic, so they get the aggregator's bytes.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

import trio

from gossip.errors import GossipError
from gossip.messages import Announcement, AnnouncementKind
from incentive.records import ClusterInfo
from node.errors import AggregationError, InvalidWeights, RoundFailed, SecAggError
from node.round_book import AveragedInputs
from node.secagg import (
    KeyAdvertisement,
    MaskedInput,
    SecAggMember,
    SecAggRound,
    ShareBundle,
    UnmaskingAnswer,
    UnmaskingRequest,
)
from node.secure_sum import (
    Layout,
    layout_length,
    layout_of,
    secure_mean,
    unmasking,
    weighted_input,
)
from node.weights import WeightArray, Weights

if TYPE_CHECKING:
    from collections.abc import Mapping

    from node.hospital import HospitalNode

log = logging.getLogger(__name__)

MASKED_CODEC = "secagg-masked-v1"  # an update announcement whose blob is a MaskedInput
Message = TypeVar(
    "Message", KeyAdvertisement, ShareBundle, MaskedInput, UnmaskingRequest, UnmaskingAnswer
)


class SecureRound:
    """One node's secure aggregation in its cluster for one round (see the module doc).

    Every step is done once: a retried attempt at the round reuses what the first attempt
    announced (the others hold it already)."""

    def __init__(
        self, node: HospitalNode, round_number: int, cluster: int, candidates: Sequence[str]
    ) -> None:
        self.node = node
        self.round = round_number
        self.cluster = cluster
        self.candidates = [c.lower() for c in candidates]
        members = tuple(node.membership.addresses(cluster=cluster))
        self.layout: Layout = layout_of(node.learner.update_layout(round_number))
        self.setup = SecAggRound(
            node.config.federation.name, round_number, cluster, members, layout_length(self.layout)
        )
        self.index = members.index(node.address.lower())
        self.member = SecAggMember(self.setup, self.index)
        self._prepared = False
        self._update: Announcement | None = None
        self._answered: set[str] = set()  # request announcements answered (by signature)

    @classmethod
    def for_round(
        cls, node: HospitalNode, round_number: int, cluster: int, candidates: Sequence[str]
    ) -> SecureRound | None:
        """The round's secure aggregation, or None when the cluster has a single member
        (its aggregate is that member's update whatever is done)."""
        if len(node.membership.addresses(cluster=cluster)) < 2:
            log.warning(
                "%s: cluster %d has one member; its update is aggregated in the clear",
                node.name,
                cluster,
            )
            return None
        return cls(node, round_number, cluster, candidates)

    # ---------------------------------------------------------------- helpers

    @property
    def members(self) -> tuple[str, ...]:
        return self.setup.members

    def roster_deadline(self, round_started: float) -> float:
        """How long a trained member waits for the roster: ``federation.update_timeout``,
        and at least until the aggregator's waits for keys and shares (an update_timeout
        each from the round's start) are over."""
        timeout = self.node.config.federation.update_timeout
        return max(trio.current_time() + timeout, round_started + 2 * timeout)

    async def publish(
        self, kind: AnnouncementKind, data: bytes, samples: int = 0, codec: str = ""
    ) -> Announcement:
        """Store ``data`` as a blob and announce it (filed in this node's inbox too)."""
        node = self.node
        digest = node.gossip.store.put(data)
        announcement = node.announcement(
            kind, self.round, self.cluster, digest, len(data), samples, codec=codec
        )
        await node.gossip.publish(announcement)
        if kind is not AnnouncementKind.UPDATE:
            node.inbox.add(announcement)
        return announcement

    async def fetch(
        self,
        announcement: Announcement | tuple[str, str],
        decode: Callable[[bytes, SecAggRound], Message],
        also_from: Sequence[str] = (),
    ) -> Message | None:
        """The message in an announced blob (or a (sender, hash) pair), fetched from its
        sender (or ``also_from``); None, logged, if it cannot be fetched or is malformed."""
        if isinstance(announcement, Announcement):
            sender, digest = announcement.sender, announcement.blob_hash
        else:
            sender, digest = announcement
        peers = [self.node.membership.peer_id(a) for a in (sender, *also_from)]
        try:
            data = await self.node.gossip.fetch(digest, [p for p in peers if p])
            message = decode(data, self.setup)
        except (GossipError, SecAggError) as exc:
            log.info(
                "%s: round %d: %s's message left out: %s", self.node.name, self.round, sender, exc
            )
            return None
        claimed = getattr(message, "sender", None)  # a request names no sender
        if claimed is not None and claimed != self.member_index(sender):
            log.info(
                "%s: round %d: %s sent member %d's message",
                self.node.name,
                self.round,
                sender,
                claimed,
            )
            return None
        return message

    def member_index(self, address: str) -> int | None:
        try:
            return self.members.index(address.lower())
        except ValueError:
            return None

    def announced(self, kind: AnnouncementKind) -> dict[str, Announcement]:
        """The first announcement of ``kind`` from each member of the cluster."""
        found = self.node.inbox.first_secagg(self.round, kind)
        return {s: a for s, a in found.items() if s in self.members}

    async def keys(self, deadline: float) -> dict[int, tuple[Announcement, KeyAdvertisement]]:
        """The members' key advertisements (with their announcements), waiting for every
        member's until ``deadline``."""
        inbox = self.node.inbox
        await inbox.wait_until(
            lambda: len(self.announced(AnnouncementKind.SECAGG_KEYS)) == len(self.members),
            deadline - trio.current_time(),
        )
        found: dict[int, tuple[Announcement, KeyAdvertisement]] = {}

        async def take(announcement: Announcement) -> None:
            advertisement = await self.fetch(announcement, KeyAdvertisement.decode)
            if advertisement is not None:
                found[advertisement.sender] = (announcement, advertisement)

        async with trio.open_nursery() as nursery:
            for announcement in self.announced(AnnouncementKind.SECAGG_KEYS).values():
                nursery.start_soon(take, announcement)
        return dict(sorted(found.items()))

    def roster(self) -> Announcement | None:
        """The roster the cluster's first aggregator candidate announced, if it is here."""
        first = self.candidates[0] if self.candidates else ""
        return self.node.inbox.first_secagg(self.round, AnnouncementKind.SECAGG_ROSTER).get(first)

    def roster_samples(self, roster: Announcement) -> dict[int, int]:
        """The roster's members (indices) with their samples; members outside the cluster
        are left out."""
        samples = {}
        for entry in roster.inputs:
            index = self.member_index(entry.sender)
            if index is not None:
                samples[index] = entry.samples
        return samples

    # ----------------------------------------------------------- member side

    async def prepare(self, deadline: float) -> None:
        """Announce this member's keys, then its shares for the members whose keys arrive
        by ``deadline`` (steps 1 of the module doc)."""
        if self._prepared:
            return
        self._prepared = True
        samples = self.node.learner.loaded_site.n_train
        await self.publish(
            AnnouncementKind.SECAGG_KEYS, self.member.advertise().encode(self.setup), samples
        )
        keys = await self.keys(deadline)
        try:
            bundle = self.member.deal_shares(advertisement for _, advertisement in keys.values())
        except SecAggError as exc:
            self._sit_out(f"cannot deal shares: {exc}")
            return
        await self.publish(AnnouncementKind.SECAGG_SHARES, bundle.encode(self.setup))

    async def mask(self, update: Mapping[str, WeightArray], deadline: float) -> Announcement | None:
        """Mask ``update`` with the roster's members and announce it as this member's update;
        None if this member sits the round out (step 3)."""
        if self._update is not None:
            await self.node.gossip.publish(self._update)
            return self._update
        inbox = self.node.inbox
        if not await inbox.wait_until(
            lambda: self.roster() is not None, deadline - trio.current_time()
        ):
            self._sit_out("no secure-aggregation roster came from the aggregator")
            return None
        roster = self.roster()
        assert roster is not None
        samples = self.roster_samples(roster)
        if self.index not in samples:
            self._sit_out("the aggregator's roster leaves this member out")
            return None
        bundles: list[ShareBundle] = []

        async def take(sender: str, digest: str) -> None:
            bundle = await self.fetch((sender, digest), ShareBundle.decode, [roster.sender])
            if bundle is not None:
                bundles.append(bundle)

        async with trio.open_nursery() as nursery:
            for entry in roster.inputs:
                if entry.sender.lower() != self.node.address.lower():
                    nursery.start_soon(take, entry.sender, entry.blob_hash)
        total = sum(samples.values())
        try:
            vector = weighted_input(update, self.layout, samples[self.index], total)
            masked = self.member.mask(vector, bundles)
        except (SecAggError, AggregationError, InvalidWeights) as exc:
            self._sit_out(f"cannot mask its update: {exc}")
            return None
        if set(masked.peers) != set(samples):
            self._sit_out(f"could open the shares of members {list(masked.peers)} only")
            return None
        self._update = await self.publish(
            AnnouncementKind.UPDATE,
            masked.encode(self.setup),
            samples[self.index],
            codec=MASKED_CODEC,
        )
        return self._update

    async def answer_requests(self) -> None:
        """Answer every unmasking request an aggregator candidate of the cluster announces
        (step 4); runs until cancelled. A request this member may not answer (it did not
        mask, or the answer would reveal both secrets of a member) is refused and logged."""
        inbox = self.node.inbox

        def new_requests() -> list[Announcement]:
            found = inbox.secagg(self.round, AnnouncementKind.SECAGG_REQUEST)
            return [
                a
                for sender, kept in found.items()
                if sender in self.candidates
                for a in kept
                if a.signature not in self._answered
            ]

        while True:
            await inbox.wait_until(lambda: bool(new_requests()), math.inf)
            for announcement in new_requests():
                self._answered.add(announcement.signature)
                request = await self.fetch(announcement, UnmaskingRequest.decode)
                if request is None:
                    continue
                try:
                    answer = self.member.answer(request)
                except SecAggError as exc:
                    log.warning(
                        "%s: round %d: unmasking request of %s refused: %s",
                        self.node.name,
                        self.round,
                        announcement.sender,
                        exc,
                    )
                    continue
                await self.publish(AnnouncementKind.SECAGG_ANSWER, answer.encode(self.setup))

    def _sit_out(self, why: str) -> None:
        log.warning(
            "%s: round %d: sitting out secure aggregation: %s", self.node.name, self.round, why
        )
        self.node.emit(
            {"event": "secagg-sat-out", "round": self.round, "cluster": self.cluster, "reason": why}
        )

    # --------------------------------------------------- aggregator and checker

    async def answers(self, request: UnmaskingRequest, timeout: float) -> list[UnmaskingAnswer]:
        """The answers to ``request`` gossiped so far, waiting up to ``timeout`` for every
        survivor's."""
        inbox = self.node.inbox
        survivors = {self.members[m] for m in request.survivors}
        await inbox.wait_until(
            lambda: survivors <= set(inbox.secagg(self.round, AnnouncementKind.SECAGG_ANSWER)),
            timeout,
        )
        found: list[UnmaskingAnswer] = []

        async def take(announcement: Announcement) -> None:
            answer = await self.fetch(announcement, UnmaskingAnswer.decode)
            if answer is not None:
                found.append(answer)

        masked = {self.members[m] for m in (*request.survivors, *request.dropped)}
        async with trio.open_nursery() as nursery:
            for sender, kept in inbox.secagg(self.round, AnnouncementKind.SECAGG_ANSWER).items():
                if sender in masked:
                    for announcement in kept:
                        nursery.start_soon(take, announcement)
        return sorted(found, key=lambda a: a.sender)

    async def check(self, info: ClusterInfo, recorded: AveragedInputs) -> Weights:
        """The cluster's aggregate recomputed from the masked inputs ``recorded`` with its
        commitment, the keys, the roster and the gossiped answers; raises
        :class:`RoundFailed` if it cannot be."""
        roster = self.roster()
        if roster is None:
            raise RoundFailed(
                f"round {self.round}: no secure-aggregation roster of cluster {self.cluster} "
                "to check its aggregate against"
            )
        samples = self.roster_samples(roster)
        keys = await self.keys(trio.current_time())
        inputs: list[MaskedInput] = []

        async def take(sender: str, digest: str) -> None:
            masked = await self.fetch((sender, digest), MaskedInput.decode, [info.aggregator])
            if masked is not None:
                inputs.append(masked)

        async with trio.open_nursery() as nursery:
            for sender, digest, _ in recorded:
                nursery.start_soon(take, sender, digest)
        indices = [self.member_index(sender) for sender, _, _ in recorded]
        if len(inputs) != len(recorded) or any(
            m is None or samples.get(m) != n for m, (_, _, n) in zip(indices, recorded, strict=True)
        ):
            raise RoundFailed(
                f"round {self.round}: cluster {self.cluster}'s masked inputs are unavailable, "
                "or their samples are not the roster's"
            )
        try:
            aggregator = unmasking(
                self.setup, [a for _, a in keys.values()], sorted(inputs, key=lambda m: m.sender)
            )
            answers = await self.answers(
                aggregator.request(), self.node.config.federation.evaluation_timeout
            )
            return await trio.to_thread.run_sync(
                secure_mean, aggregator, answers, samples, self.layout
            )
        except (SecAggError, KeyError) as exc:
            raise RoundFailed(
                f"round {self.round}: cannot unmask cluster {self.cluster}'s aggregate to check "
                f"it: {exc}"
            ) from exc
