"""A cluster aggregator's duty for one round, with take-over by the next in line.

A cluster's members are ordered for each round by a key derived from the round, the cluster
and each member's account (:mod:`incentive.candidates`; the Ledger's ``aggregatorCandidates``).
The first candidate collects the cluster's updates (all of them, or a quorum once
``federation.update_timeout`` has passed), checks them, scores them, averages them, commits
the aggregate in the round book and announces it with every input's score (and the updates it
rejected as invalid). Candidate ``k`` waits ``takeover_timeout`` seconds longer per rank and
acts only if nobody has committed the cluster's aggregate by then. The Ledger accepts one
record per round and cluster; on the Consortium the members take the best-ranked candidate's
announced commitment (:mod:`node.consortium_book`).
"""

from __future__ import annotations

import logging
import math
import statistics
from collections.abc import Mapping
from typing import TYPE_CHECKING

import trio

from gossip.errors import FetchFailed, GossipError
from gossip.messages import AggregateInput, Announcement
from incentive.contribution import contribution_score
from node import robust
from node.errors import NodeError
from node.phases import PhaseClock
from node.round_book import averaged_inputs
from node.running_mean import OrderedRunningMean
from node.training import evaluate
from node.validation import RATIO_SCALE, validation_outliers
from node.weights import WeightArray

if TYPE_CHECKING:
    from node.hospital import HospitalNode

log = logging.getLogger(__name__)


class AggregatorDuty:
    """One node's part as aggregator candidate ``rank`` of ``cluster`` in ``round``."""

    def __init__(self, node: HospitalNode, round_number: int, cluster: int, rank: int) -> None:
        self.node = node
        self.round = round_number
        self.cluster = cluster
        self.rank = rank
        self._phases = PhaseClock()  # the duty runs as soon as it is made
        self._scores: dict[str, int] = {}  # by sender, for the updates accepted
        self._rejected: dict[str, Announcement] = {}  # by sender: fetched, but not valid
        # by sender: relative change of this node's training loss the update alone makes
        self._loss_change: dict[str, float] = {}
        # FedAvg built as the updates arrive, when nothing needs them all at once
        self._stream: OrderedRunningMean | None = None

    async def run(self, round_started: float) -> None:
        """Wait for this candidate's turn, then aggregate unless someone already did."""
        federation = self.node.config.federation
        members = self.node.membership.addresses(cluster=self.cluster)
        needed = max(1, math.ceil(federation.quorum * len(members)))
        collect_until = round_started + federation.update_timeout
        if self.rank == 0:
            await self.node.inbox.wait_until(
                lambda: len(self._heard_from(members)) >= len(members),
                collect_until - trio.current_time(),
            )
        else:
            await trio.sleep_until(collect_until + self.rank * federation.takeover_timeout)
            if await self._recorded():
                return
            log.warning(
                "%s: taking over as aggregator (rank %d) of cluster %d in round %d",
                self.node.name,
                self.rank,
                self.cluster,
                self.round,
            )
            self.node.emit(
                {
                    "event": "takeover",
                    "round": self.round,
                    "cluster": self.cluster,
                    "rank": self.rank,
                }
            )
        self._phases.lap("wait")
        accepted = await self._collect(members, needed)
        if accepted is None or await self._recorded():
            return
        self._phases.lap("collect")
        if self.node.config.federation.screen_updates:
            accepted = await self._screen(accepted)
            self._phases.lap("screen")
        if self.node.validates_updates(self.round):
            accepted = await self._validate(accepted)
            self._phases.lap("validate")
        accepted = self._without_refused(accepted)
        if not accepted:
            log.warning(
                "%s: every update of cluster %d in round %d was refused; nothing to commit",
                self.node.name,
                self.cluster,
                self.round,
            )
            return
        await self._aggregate(accepted)

    def _without_refused(
        self, accepted: list[tuple[Announcement, Mapping[str, WeightArray]]]
    ) -> list[tuple[Announcement, Mapping[str, WeightArray]]]:
        """``accepted`` without the updates of members that also signed an announcement the
        validators refused this round (which may have come after their update): those are
        rejected, as every member's check of the commitment would refuse it otherwise."""
        refused = self.node.inbox.refused_updates(self.round)
        kept = []
        for announcement, weights in accepted:
            sender = announcement.sender.lower()
            if sender in refused:
                self._scores.pop(sender, None)
                self._reject(refused[sender][0], refused[sender][1])
            else:
                kept.append((announcement, weights))
        return kept

    async def _collect(
        self, members: list[str], needed: int
    ) -> list[tuple[Announcement, Mapping[str, WeightArray]]] | None:
        """Fetch and check updates until a quorum of members has taken part (an update
        valid or rejected, at least one valid); None if the round moved on.

        Every announced update is fetched at once, so a stalled provider holds up only its
        own update (for at most the fetch budget), and each is scored as soon as it is here,
        one at a time. An update whose prefetch failed this round is left out at once (a
        stalled member is not asked again). The aggregate waits for every fetch started.
        An update the gossip validators refused for what it says (an oversized blob, say),
        or an old one replayed, though its member signed and published it, is rejected
        without a fetch (and an update of the member that came first with it, before the
        commitment: :meth:`_without_refused`).
        """
        excluded: set[str] = set()
        accepted: dict[str, tuple[Announcement, Mapping[str, WeightArray]]] = {}
        started: set[str] = set()
        self._scores.clear()
        self._rejected.clear()
        self._loss_change.clear()
        stream = self._stream = OrderedRunningMean(members) if self._streams() else None
        adding = trio.Lock()  # the running sum takes one update at a time
        empty: dict[str, WeightArray] = {}
        site = self.node.learner.site
        start = self.node.learner.model()
        before = await trio.to_thread.run_sync(
            lambda: evaluate(start, site.train_x, site.train_y, site.dataset).loss
        )
        scoring = trio.Lock()  # one at a time: each evaluation at once needs a model of its own
        progress = trio.Event()

        async def take(sender: str, announcement: Announcement) -> None:
            offered = False
            copied = self._copy_reason(announcement)
            if copied is not None:  # the copier need not hold the blob: no fetch to fail
                refuse(sender, announcement, copied)
                return
            try:
                unfetched = self.node.unfetched_updates.get(announcement.blob_hash)
                if unfetched is not None:
                    raise FetchFailed(f"{unfetched} (when prefetched)")
                update = await self.node.update_of(
                    announcement.blob_hash, [announcement.peer_id], self.round
                )
                async with scoring:
                    self._scores[sender] = await trio.to_thread.run_sync(
                        self._score, announcement, update, before
                    )
                if stream is not None:
                    offered = True
                    async with adding:  # added now, or kept until the members before it are in
                        await trio.to_thread.run_sync(
                            stream.offer, sender, update, announcement.samples
                        )
                    update = empty  # the running sum holds it (or will): let it go
                accepted[sender] = (announcement, update)
            except (GossipError, NodeError, ValueError) as exc:
                excluded.add(sender)
                if stream is not None and not offered:
                    stream.drop(sender)
                forged = self.node.gossip.served_forged(
                    announcement.blob_hash, announcement.peer_id
                )
                if forged or not isinstance(exc, GossipError):
                    # it came and is not a valid update, or its own sender served false bytes
                    self._rejected[sender] = announcement
                log.warning("round %d: update of %s excluded: %s", self.round, sender, exc)
                self.node.emit(
                    {
                        "event": "excluded",
                        "round": self.round,
                        "member": announcement.sender,
                        "reason": str(exc),
                    }
                )
            progress.set()

        def refuse(sender: str, announcement: Announcement, reason: str) -> None:
            excluded.add(sender)
            if stream is not None:
                stream.drop(sender)
            self._rejected[sender] = announcement
            log.warning("round %d: update of %s rejected: %s", self.round, sender, reason)
            self.node.emit(
                {
                    "event": "excluded",
                    "round": self.round,
                    "member": announcement.sender,
                    "reason": reason,
                }
            )
            progress.set()

        def unstarted() -> dict[str, Announcement]:
            return {s: a for s, a in self._announced(members).items() if s not in started}

        def unstarted_refused() -> dict[str, tuple[Announcement, str]]:
            refused = self.node.inbox.refused_updates(self.round)
            return {s: refused[s] for s in members if s in refused and s not in started}

        def start_fetches(nursery: trio.Nursery) -> None:
            for sender, (announcement, reason) in sorted(unstarted_refused().items()):
                started.add(sender)
                refuse(sender, announcement, reason)
            for sender, announcement in sorted(unstarted().items()):
                started.add(sender)
                nursery.start_soon(take, sender, announcement)

        async def fetch_late_updates(nursery: trio.Nursery) -> None:
            while True:
                await self.node.inbox.wait_until(
                    lambda: bool(unstarted()) or bool(unstarted_refused()), math.inf
                )
                start_fetches(nursery)

        async with trio.open_nursery() as nursery:
            start_fetches(nursery)
            nursery.start_soon(fetch_late_updates, nursery)
            while True:
                progress = trio.Event()
                in_flight = started - set(accepted) - excluded
                # A rejected update counts towards the quorum: its member took part, and the
                # commitment answers for it; an update merely left out (no fetch) does not.
                heard = len(accepted) + len(self._rejected)
                if accepted and heard >= needed and not in_flight:
                    nursery.cancel_scope.cancel()
                    return [accepted[sender] for sender in sorted(accepted)]
                if not in_flight:
                    log.info(
                        "%s: cluster %d has %d of the %d updates round %d needs (valid or "
                        "rejected, at least one valid); waiting",
                        self.node.name,
                        self.cluster,
                        heard,
                        needed,
                        self.round,
                    )
                with trio.move_on_after(1.0):
                    await progress.wait()
                if not in_flight and await self._recorded():
                    nursery.cancel_scope.cancel()
                    return None
        return None  # not reached: the loop returns

    async def _screen(
        self, accepted: list[tuple[Announcement, Mapping[str, WeightArray]]]
    ) -> list[tuple[Announcement, Mapping[str, WeightArray]]]:
        """Reject the updates no honest member sends (docs/robustness.md): a blob announced
        before by someone else or in an earlier round (a copy, a replay), and what
        :func:`node.robust.screen` flags. The statistics round is not screened."""
        node = self.node
        if node.learner.statistics_round(self.round):
            return accepted
        reasons: dict[str, str] = {}
        for announcement, _ in accepted:
            reason = self._copy_reason(announcement)
            if reason is not None:
                reasons[announcement.sender.lower()] = reason
        fresh = [(a, w) for a, w in accepted if a.sender.lower() not in reasons]
        federation = node.config.federation
        flagged = await trio.to_thread.run_sync(
            robust.screen,
            [(w, a.samples) for a, w in fresh],
            federation.outlier_norm_factor,
            federation.outlier_min_cosine,
        )
        for index, reason in flagged.items():
            reasons[fresh[index][0].sender.lower()] = reason
        kept = [(a, w) for a, w in accepted if a.sender.lower() not in reasons]
        if not kept:
            log.warning("round %d: screening flagged every update; none rejected", self.round)
            return accepted
        for announcement, _ in accepted:
            why = reasons.get(announcement.sender.lower())
            if why is not None:
                self._reject(announcement, why)
        return kept

    def _copy_reason(self, announcement: Announcement) -> str | None:
        """Why ``announcement`` announces a blob no honest member would (one announced first
        by another member, or in an earlier round), or None; only when screening, in every
        round (feature statistics are copied as easily as updates). Judged by the hash alone,
        so it needs no fetch."""
        node = self.node
        if not node.config.federation.screen_updates:
            return None
        sender = announcement.sender.lower()
        first = node.first_announced(announcement.blob_hash)
        first_round, first_sender = first or (self.round, sender)
        if first_round < self.round:
            return f"replays an update first announced in round {first_round}"
        if first_sender != sender:
            return f"copies the update {first_sender} announced first"
        return None

    async def _validate(
        self, accepted: list[tuple[Announcement, Mapping[str, WeightArray]]]
    ) -> list[tuple[Announcement, Mapping[str, WeightArray]]]:
        """Reject the updates whose steps raise the other members' loss clearly, and more than
        the round's other updates do, from the validations the members gossip, waiting for
        every member's up to ``federation.evaluation_timeout`` (:mod:`node.validation`)."""
        node = self.node
        members = set(node.membership.addresses())

        def measured() -> dict[str, dict[tuple[str, str], float]]:
            found = {}
            for validation in node.inbox.validations(self.round):  # oldest first: newest wins
                evaluator = validation.sender.lower()
                if evaluator in members:
                    found[evaluator] = {
                        (i.sender.lower(), i.blob_hash): i.score / RATIO_SCALE
                        for i in validation.inputs
                    }
            return found

        await node.inbox.wait_until(
            lambda: set(measured()) >= members, node.config.federation.evaluation_timeout
        )
        # Every update an evaluator measured sets its scale; of this cluster's senders, only
        # a measure of the very blob this aggregator holds counts.
        held = {a.sender.lower(): a.blob_hash for a, _ in accepted}
        by_evaluator = {
            evaluator: {
                sender: loss
                for (sender, blob), loss in losses.items()
                if held.get(sender, blob) == blob
            }
            for evaluator, losses in measured().items()
        }
        federation = node.config.federation
        scores, reasons = validation_outliers(
            by_evaluator,
            sorted(held),
            federation.validation_threshold,
            federation.validation_max_loss_increase,
        )
        node.emit(
            {
                "event": "validation",
                "round": self.round,
                "cluster": self.cluster,
                "evaluators": len(by_evaluator),
                "z_scores": {s: round(z, 3) for s, (z, _) in sorted(scores.items())},
                "loss_increase": {s: round(x, 4) for s, (_, x) in sorted(scores.items())},
            }
        )
        kept = [(a, w) for a, w in accepted if a.sender.lower() not in reasons]
        if not kept:
            log.warning("round %d: validation flagged every update; none rejected", self.round)
            return accepted
        for announcement, _ in accepted:
            why = reasons.get(announcement.sender.lower())
            if why is not None:
                self._reject(announcement, why)
        return kept

    def _reject(self, announcement: Announcement, why: str) -> None:
        """Leave a fetched update out of the average as invalid, and say why."""
        self._rejected[announcement.sender.lower()] = announcement
        log.warning("round %d: update of %s rejected: %s", self.round, announcement.sender, why)
        self.node.emit(
            {
                "event": "excluded",
                "round": self.round,
                "member": announcement.sender,
                "reason": why,
                "screened": True,
            }
        )

    def _streams(self) -> bool:
        """Whether the aggregate is the FedAvg of every update accepted when collecting, which
        can then be summed as the updates arrive (:mod:`node.running_mean`): not when
        screening, validation or Shapley scores may still leave updates out or need them all,
        nor under a robust rule or clipping."""
        node = self.node
        federation = node.config.federation
        return (
            (
                node.learner.statistics_round(self.round)
                or (federation.aggregation == "fedavg" and not federation.clip_norm)
            )
            and not federation.screen_updates
            and not node.validates_updates(self.round)
            and not node.measures_shapley(self.round)
        )

    async def _aggregate(
        self, accepted: list[tuple[Announcement, Mapping[str, WeightArray]]]
    ) -> None:
        node = self.node
        senders = sorted(a.sender.lower() for a, _ in accepted)
        if self._stream is not None and self._stream.offered() == senders:
            # the running sum of the accepted updates, in order
            mean_delta = await trio.to_thread.run_sync(self._stream.finish, senders)
        else:  # not streamed, or an update left out after it was added: read them again
            updates = [
                (weights or await node.update_of(a.blob_hash, [a.peer_id], self.round), a.samples)
                for a, weights in accepted
            ]
            mean_delta = await trio.to_thread.run_sync(node.aggregate_updates, self.round, updates)
            del updates
        # stored as every member of the cluster will store its own average (node.store_aggregate)
        blob = (await trio.to_thread.run_sync(node.store_aggregate, self.round, mean_delta))[0]
        node.remember_average(
            blob.digest, averaged_inputs((a.sender, a.blob_hash, a.samples) for a, _ in accepted)
        )
        del mean_delta
        self._phases.lap("average")
        if node.measures_shapley(self.round):
            self._scores.update(await self._shapley_scores(accepted))
            self._phases.lap("contribution")
        inputs = self._inputs(accepted)
        if not await node.commit_cluster(self.round, self.cluster, blob, inputs, self._phases):
            return
        node.emit(
            {
                "event": "aggregated",
                "round": self.round,
                "cluster": self.cluster,
                "rank": self.rank,
                "aggregate_hash": blob.digest,
                "aggregate_codec": blob.codec,
                "aggregate_bytes": blob.size,
                "inputs": len(accepted),
                "rejected": sorted(a.sender for a in self._rejected.values()),
                "loss_change": {s: round(v, 6) for s, v in sorted(self._loss_change.items())},
                "phase_seconds": self._phases.laps,
            }
        )

    async def _shapley_scores(
        self, accepted: list[tuple[Announcement, Mapping[str, WeightArray]]]
    ) -> dict[str, int]:
        """Each accepted update's Shapley share: the median of this node's measure and those
        of the cluster's other members that measured the very same updates, waiting for them
        up to ``federation.evaluation_timeout`` (docs/contribution.md)."""
        node = self.node
        updates = {a.sender.lower(): (weights, a.samples) for a, weights in accepted}
        hashes = {a.sender.lower(): a.blob_hash for a, _ in accepted}
        own = await trio.to_thread.run_sync(node.measure_shares, self.round, self.cluster, updates)
        others = set(hashes) - {node.address.lower()}

        def measured() -> dict[str, dict[str, int]]:
            found = {}
            for evaluation in node.inbox.evaluations(self.round):  # oldest first: newest wins
                sender = evaluation.sender.lower()
                listed = {i.sender.lower(): i.blob_hash for i in evaluation.inputs}
                if sender in others and evaluation.cluster == self.cluster and listed == hashes:
                    found[sender] = {i.sender.lower(): i.score for i in evaluation.inputs}
            return found

        timeout = node.config.federation.evaluation_timeout
        await node.inbox.wait_until(lambda: set(measured()) >= others, timeout)
        by_evaluator = {node.address.lower(): own, **measured()}
        scores = {m: int(statistics.median(s[m] for s in by_evaluator.values())) for m in updates}
        node.emit(
            {
                "event": "contribution",
                "round": self.round,
                "cluster": self.cluster,
                "measured": by_evaluator,
                "scores": scores,
            }
        )
        return scores

    def _inputs(
        self, accepted: list[tuple[Announcement, Mapping[str, WeightArray]]]
    ) -> tuple[AggregateInput, ...]:
        """The averaged updates with their scores, then the rejected ones, each by sender."""
        taken = [
            AggregateInput(a.sender, a.blob_hash, a.samples, self._scores[a.sender.lower()])
            for a, _ in accepted
        ]
        refused = [
            AggregateInput(a.sender, a.blob_hash, a.samples, 0, rejected=True)
            for _, a in sorted(self._rejected.items())
        ]
        return (*taken, *refused)

    def _score(
        self, announcement: Announcement, update: Mapping[str, WeightArray], before: float
    ) -> int:
        """The update's effect on this node's training loss (``before`` it), weighted by its
        samples."""
        site = self.node.learner.site
        model = self.node.learner.with_update(update, self.round)
        after = evaluate(model, site.train_x, site.train_y, site.dataset)
        self._loss_change[announcement.sender.lower()] = (after.loss - before) / max(before, 1e-12)
        return contribution_score(announcement.samples, before, after.loss)

    def _announced(self, members: list[str]) -> dict[str, Announcement]:
        updates = self.node.inbox.updates(self.round)
        return {sender: updates[sender] for sender in members if sender in updates}

    def _heard_from(self, members: list[str]) -> set[str]:
        """The members whose update for the round came, accepted or refused."""
        refused = self.node.inbox.refused_updates(self.round)
        return set(self._announced(members)) | {sender for sender in members if sender in refused}

    async def _recorded(self) -> bool:
        return await self.node.book.cluster_record(self.round, self.cluster) is not None
