"""A cluster aggregator's duty under secure aggregation: it learns the members' sum only.

The first aggregator candidate of the cluster (:mod:`node.aggregator` for the order and the
take-over) announces the roster once the shares of every member that sent keys are here
(keys are awaited up to ``federation.update_timeout`` after the round began, shares up to
``update_timeout`` more): the members whose share bundles reach every other member of it.
Then it collects the roster members' masked inputs (the update announcements of the round,
up to ``update_timeout`` after the roster), announces the unmasking request for those it
holds, waits for every survivor's answer (up to ``federation.evaluation_timeout``), unmasks
the survivors' FedAvg
(:func:`node.secure_sum.secure_mean`), and commits it like any aggregate: the inputs are the
survivors' masked-input hashes. No single update can be scored, so each survivor's score is
its number of samples (its share of the cluster's data). A masked input that is not one
(cannot be decoded, wrong length, masked with other members, other samples than the roster
says) is rejected as an invalid update is; one that never arrives is a dropout, whose masks
the survivors' answers remove. A later candidate takes over with the first one's roster when
nothing is committed in time.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio

from gossip.messages import AggregateInput, Announcement, AnnouncementKind
from node.errors import SecAggError
from node.phases import PhaseClock
from node.round_book import averaged_inputs
from node.secagg import MaskedInput, ShareBundle
from node.secure_round import SecureRound
from node.secure_sum import roster_members, secure_mean, unmasking

if TYPE_CHECKING:
    from node.hospital import HospitalNode

log = logging.getLogger(__name__)


class SecureAggregatorDuty:
    """One node's part as aggregator candidate ``rank`` of its cluster under secure
    aggregation (see the module doc)."""

    def __init__(self, node: HospitalNode, secure: SecureRound, rank: int) -> None:
        self.node = node
        self.secure = secure
        self.round = secure.round
        self.cluster = secure.cluster
        self.rank = rank
        self._phases = PhaseClock()
        self._rejected: dict[str, Announcement] = {}  # by sender

    async def run(self, round_started: float) -> None:
        """Announce the roster (the first candidate), or wait for this candidate's turn;
        then aggregate unless someone already did."""
        federation = self.node.config.federation
        if self.rank == 0:
            await self._announce_roster(round_started + federation.update_timeout)
        else:
            # keys, shares, masked inputs: an update_timeout each, then the take-over order
            turn = 3 * federation.update_timeout + self.rank * federation.takeover_timeout
            await trio.sleep_until(round_started + turn)
            if await self._recorded():
                return
            self.node.emit(
                {
                    "event": "takeover",
                    "round": self.round,
                    "cluster": self.cluster,
                    "rank": self.rank,
                }
            )
        roster = self.secure.roster()
        if roster is None:
            log.warning(
                "%s: no roster for cluster %d in round %d", self.node.name, self.cluster, self.round
            )
            return
        self._phases.lap("roster")
        inputs = await self._collect(roster)
        if await self._recorded():
            return
        self._phases.lap("collect")
        try:
            await self._unmask_and_commit(roster, inputs)
        except SecAggError as exc:
            log.warning(
                "%s: cluster %d's round %d cannot be unmasked: %s",
                self.node.name,
                self.cluster,
                self.round,
                exc,
            )
            self.node.emit(
                {
                    "event": "secagg-failed",
                    "round": self.round,
                    "cluster": self.cluster,
                    "reason": str(exc),
                }
            )

    async def _announce_roster(self, keys_deadline: float) -> None:
        """Wait for every member's keys (until ``keys_deadline``), then for the shares of
        those that sent keys (``update_timeout`` more: members deal once their keys wait
        ends), then announce the roster."""
        secure, inbox = self.secure, self.node.inbox
        keys = await secure.keys(keys_deadline)
        dealers = {secure.members[m] for m in keys}
        await inbox.wait_until(
            lambda: dealers <= set(secure.announced(AnnouncementKind.SECAGG_SHARES)),
            self.node.config.federation.update_timeout,
        )
        shares = secure.announced(AnnouncementKind.SECAGG_SHARES)
        bundles: dict[int, tuple[Announcement, ShareBundle]] = {}

        async def take(announcement: Announcement) -> None:
            bundle = await secure.fetch(announcement, ShareBundle.decode)
            if bundle is not None and bundle.sender in keys:
                bundles[bundle.sender] = (announcement, bundle)

        async with trio.open_nursery() as nursery:
            for announcement in shares.values():
                nursery.start_soon(take, announcement)
        chosen = roster_members({m: bundle for m, (_, bundle) in bundles.items()})
        if len(chosen) < secure.setup.threshold:
            log.warning(
                "%s: round %d: only %d of cluster %d's members dealt shares to each other; "
                "the round needs %d",
                self.node.name,
                self.round,
                len(chosen),
                self.cluster,
                secure.setup.threshold,
            )
            return
        entries = tuple(
            AggregateInput(bundles[m][0].sender, bundles[m][0].blob_hash, keys[m][0].samples)
            for m in chosen
        )
        node = self.node
        roster = node.announcement(
            AnnouncementKind.SECAGG_ROSTER,
            self.round,
            self.cluster,
            node.global_hash,
            0,
            sum(e.samples for e in entries),
            entries,
        )
        await node.gossip.publish(roster)
        node.inbox.add(roster)

    async def _collect(self, roster: Announcement) -> list[tuple[Announcement, MaskedInput]]:
        """The roster members' valid masked inputs, waiting for each up to
        ``federation.update_timeout``; invalid ones are rejected."""
        secure, inbox = self.secure, self.node.inbox
        samples = secure.roster_samples(roster)
        expected = {secure.members[m] for m in samples}

        def heard_from() -> set[str]:
            return (
                set(inbox.updates(self.round)) | set(inbox.refused_updates(self.round))
            ) & expected

        await inbox.wait_until(
            lambda: heard_from() == expected, self.node.config.federation.update_timeout
        )
        for sender, (announcement, reason) in sorted(inbox.refused_updates(self.round).items()):
            if sender in expected:
                self._reject(announcement, reason)
        accepted: list[tuple[Announcement, MaskedInput]] = []

        async def take(announcement: Announcement) -> None:
            masked = await secure.fetch(announcement, MaskedInput.decode)
            index = secure.member_index(announcement.sender)
            if masked is None:
                # it came and is not a masked input, or its sender served false bytes
                if self.node.gossip.store.has(
                    announcement.blob_hash
                ) or self.node.gossip.served_forged(announcement.blob_hash, announcement.peer_id):
                    self._reject(announcement, "its blob is not a masked input of this round")
                return
            if masked.peers != tuple(sorted(samples)):
                self._reject(
                    announcement, f"masked with members {list(masked.peers)}, not the roster's"
                )
            elif index is None or announcement.samples != samples.get(index):
                self._reject(announcement, "announces other samples than the roster")
            else:
                accepted.append((announcement, masked))

        async with trio.open_nursery() as nursery:
            for sender, announcement in inbox.updates(self.round).items():
                if sender in expected and sender not in self._rejected:
                    nursery.start_soon(take, announcement)
        return sorted(accepted, key=lambda item: item[1].sender)

    async def _unmask_and_commit(
        self, roster: Announcement, inputs: list[tuple[Announcement, MaskedInput]]
    ) -> None:
        node, secure = self.node, self.secure
        keys = await secure.keys(trio.current_time())
        aggregator = unmasking(secure.setup, [a for _, a in keys.values()], [m for _, m in inputs])
        request = aggregator.request()
        await secure.publish(AnnouncementKind.SECAGG_REQUEST, request.encode(secure.setup))
        answers = await secure.answers(request, node.config.federation.evaluation_timeout)
        self._phases.lap("answers")
        samples = secure.roster_samples(roster)
        mean = await trio.to_thread.run_sync(
            secure_mean, aggregator, answers, samples, secure.layout
        )
        blob = (await trio.to_thread.run_sync(node.store_aggregate, self.round, mean))[0]
        del mean
        self._phases.lap("unmask")
        taken = [
            AggregateInput(a.sender, a.blob_hash, a.samples, score=a.samples) for a, _ in inputs
        ]
        refused = [
            AggregateInput(a.sender, a.blob_hash, a.samples, 0, rejected=True)
            for _, a in sorted(self._rejected.items())
        ]
        commitment = (*taken, *refused)
        node.remember_average(
            blob.digest, averaged_inputs((i.sender, i.blob_hash, i.samples) for i in taken)
        )
        if not await node.commit_cluster(self.round, self.cluster, blob, commitment, self._phases):
            return
        dropped = [secure.members[m] for m in request.dropped]
        node.emit(
            {
                "event": "aggregated",
                "round": self.round,
                "cluster": self.cluster,
                "rank": self.rank,
                "aggregate_hash": blob.digest,
                "aggregate_codec": blob.codec,
                "aggregate_bytes": blob.size,
                "inputs": len(taken),
                "rejected": sorted(a.sender for a in self._rejected.values()),
                "secure": {"dropped": dropped, "answers": len(answers)},
                "phase_seconds": self._phases.laps,
            }
        )

    def _reject(self, announcement: Announcement, why: str) -> None:
        self._rejected[announcement.sender.lower()] = announcement
        log.warning(
            "round %d: masked input of %s rejected: %s", self.round, announcement.sender, why
        )
        self.node.emit(
            {"event": "excluded", "round": self.round, "member": announcement.sender, "reason": why}
        )

    async def _recorded(self) -> bool:
        return await self.node.book.cluster_record(self.round, self.cluster) is not None
