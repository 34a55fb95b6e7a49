"""The hospital node: the one place where training, gossip and the chain meet.

One round ``r`` seen from a node in cluster ``c`` (see docs/architecture.md for the picture):

1. train locally from the global model of round ``r-1``; the update is the weight delta;
   store it as a content-addressed blob and publish a signed announcement;
2. if the node is among ``c``'s aggregator candidates for ``r`` (an order derived from
   on-chain facts), do the aggregator's duty when its turn comes (see
   :mod:`node.aggregator`): the first in line right away, the next ones only if nobody has
   committed ``c``'s aggregate by their deadline;
3. wait until every cluster's aggregate is committed, fetch those blobs (recomputing the own
   cluster's aggregate from its inputs), combine them by sample count into the global model,
   hash it, store it, and attest the hash;
4. wait until the round is final on chain (a quorum of members attested one hash) and
   checkpoint; if the final hash is not the one this node computed, fetch the final model by
   hash from peers instead.

Where commitments, attestations and finality live is the :class:`~node.round_book.RoundBook`'s
business: the Ledger contract, or gossip plus one Consortium transaction per round.

With ``federation.secure_aggregation`` steps 1 and 2 run the secure-aggregation protocol
instead (:mod:`node.secure_round`, :mod:`node.secure_aggregator`): keys and shares go out
while the node trains, the update is announced masked, and the aggregator commits the
unmasked mean of its cluster's updates; step 3's check of the own cluster unmasks it again.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import trio
from libp2p.crypto.keys import KeyPair

from gossip.blobs import BlobStore
from gossip.errors import GossipError
from gossip.messages import UINT64_MAX, AggregateInput, Announcement, AnnouncementKind
from gossip.service import GossipService
from gossip.validation import AnnouncementPolicy
from incentive.privacy_budget import PrivacyBudget
from incentive.records import ClusterInfo
from node import robust
from node.aggregation import fedavg
from node.aggregator import AggregatorDuty
from node.coalitions import shapley_shares
from node.codecs import announced_codec, decode_update
from node.config import FederationConfig, MedswarmConfig
from node.data import SiteData
from node.errors import InvalidWeights, NodeError, NotAMember, RoundFailed
from node.inbox import RoundInbox
from node.journal import Checkpoint, Journal
from node.learner import SiteLearner
from node.membership import Membership
from node.phases import PhaseClock
from node.privacy import ClientPrivacy, member_noise_key, privacy_spent
from node.round_book import AveragedInputs, RoundBook, averaged_inputs
from node.round_figures import RoundFigures
from node.secure_aggregator import SecureAggregatorDuty
from node.secure_round import SecureRound
from node.status_server import StatusServer
from node.training import derive_seed
from node.update_encoder import UpdateEncoder, aggregate_codec, encode_aggregate
from node.validation import VariateHistory, loss_ratios, own_step, ratio_score
from node.weights import (
    CODEC,
    BlobWeights,
    WeightArray,
    Weights,
    decode_weights,
    encoded_size,
    encoding_parts,
)

log = logging.getLogger(__name__)

RoundEventSink = Callable[[dict[str, Any]], None]
POLL_SECONDS = 0.25
VALID_BLOBS_KEPT = 256  # hashes of blobs known to hold valid weights, newest kept
FIRST_ANNOUNCED_KEPT = 4096  # update hashes remembered with who announced them first
RECORD_POLL_SECONDS = 1.0  # first pause between reads of a cluster's aggregate record
RECORD_POLL_MAX_SECONDS = 4.0  # ... doubling up to this while no announcement comes
RETRY_FIRST_SECONDS = 1.0  # pause after a failed round attempt, doubling up to the maximum
RETRY_MAX_SECONDS = 16.0
DIAL_BACKOFF_MAX_SECONDS = 15.0


@dataclass(frozen=True)
class AggregateBlob:
    """A cluster aggregate as stored, recorded and announced: its hash, its size in bytes and
    the codec its announcement names (:meth:`HospitalNode.store_aggregate`)."""

    digest: str
    size: int
    codec: str


def member_privacy(federation: FederationConfig, account_key: str) -> ClientPrivacy | None:
    """The clipping and noise this member applies to its updates (None: neither), its noise
    keyed with a secret derived from its account key (:mod:`node.privacy`)."""
    if not federation.dp_clip:
        return None
    return ClientPrivacy(
        federation.dp_clip, federation.dp_noise_multiplier, member_noise_key(account_key)
    )


class HospitalNode:
    """A hospital's node: local data, a libp2p presence, an account in the round book."""

    def __init__(
        self,
        config: MedswarmConfig,
        site: SiteData,
        book: RoundBook,
        account_key: str,
        store: BlobStore,
        initial_weights: Weights,
        name: str | None = None,
        identity: KeyPair | None = None,
        journal: Journal | None = None,
        on_event: RoundEventSink | None = None,
    ) -> None:
        self.config = config
        self.site = site
        self.name = name or site.site
        self.book = book
        self.address: str = book.address
        self._account_key = account_key
        self.membership = Membership()
        self.inbox = RoundInbox()
        # Blobs known to hold valid weights (checked here, or computed here): blobs never
        # change under their hash, so each is read through for checking once.
        self._valid_blobs: dict[str, None] = {}
        self._valid_blobs_lock = threading.Lock()  # stored to from worker threads
        # Averages this node computed, by hash: of which inputs (see averaged_inputs).
        self._averages: dict[str, AveragedInputs] = {}
        self._averaging: dict[int, trio.Event] = {}  # rounds whose updates are being averaged
        # Updates (by hash) whose prefetch failed, and why: an aggregator leaves them out
        # rather than ask a stalled provider again (cleared every round).
        self.unfetched_updates: dict[str, str] = {}
        # Commitments (ClusterInfo.records_hash) this node could not check or fetch.
        self.refused_commitments: set[str] = set()
        # Update blobs by hash: the round and sender that announced each first.
        self._first_announced: dict[str, tuple[int, str]] = {}
        # Scores each new global model on the test split beside the round's last steps.
        self._evaluator = ThreadPoolExecutor(max_workers=1, thread_name_prefix="evaluate")
        self.journal = journal
        self.current_round = 0
        self.completed_round = 0
        self.left: str | None = None  # why this node stopped taking part, if it did
        self.learner = SiteLearner(
            site,
            config.training,
            config.strategy,
            config.federation.seed,
            initial_weights,
            federation_statistics=config.federation.standardise == "federation",
            combine=self._combine_rule,
            privacy=member_privacy(config.federation, account_key),
        )
        if config.federation.dp_clip and self.learner.federation_statistics:
            log.warning(
                "%s: differential privacy covers the model updates only; round 1 announces "
                "this site's feature means and mean squares without noise "
                '(federation.standardise = "federation", docs/privacy.md)',
                self.name,
            )
        federation = config.federation
        # Encodes this member's model updates with the federation's codec (node/codecs.py);
        # top-k keeps what it did not send for the next round.
        self.encoder = UpdateEncoder(
            federation.update_codec, federation.seed, site.site, federation.topk_fraction
        )
        self.global_hash = store.put_parts(encoding_parts(initial_weights))
        # Each member's SCAFFOLD variate, rebuilt from its updates (node/validation.py).
        self._variates = VariateHistory(
            first_model_round=2 if self.learner.federation_statistics else 1
        )
        self._on_event = on_event or (lambda _event: None)
        self.figures = RoundFigures()  # what the round events say, for the status server
        self.status: StatusServer | None = None  # serving once started, if status.bind is set
        self._refresh_wanted = trio.Event()
        self._nursery: trio.Nursery | None = None
        self._dialing: set[str] = set()
        self._next_dial: dict[str, float] = {}
        self._dial_backoff: dict[str, float] = {}
        self._first_attempt: dict[int, tuple[float, dict[str, int]]] = {}
        self._round_started_at: dict[int, float] = {}  # wall clock, for blob retention
        self._secure_rounds: dict[int, SecureRound] = {}  # the current round's, if secure
        policy = AnnouncementPolicy(
            federation=config.federation.name,
            member_peer_id=self.membership.peer_id,
            current_round=lambda: self.current_round,
            max_blob_bytes=config.network.max_blob_bytes,
            on_unknown_sender=lambda _sender: self._refresh_wanted.set(),
            is_member_peer=self.membership.has_peer,
            is_barred=self.membership.is_barred,
            is_stranger=self.membership.is_stranger,
            update_codec=self.update_codec,
            aggregate_codec=self.aggregate_codec,
            finished_round=lambda: self.completed_round,
        )
        self.gossip = GossipService(config.network, policy, store, identity)
        self.gossip.on_refused = self._keep_refused_update
        self.gossip.on_blacklisted = self._report_blacklisted
        book.bind(self)

    @property
    def global_weights(self) -> Mapping[str, WeightArray]:
        """The tensors of the global blob this node adopted last (:attr:`global_hash`)."""
        return self.learner.global_tensors

    # ----------------------------------------------------------------- start-up

    async def start(self, nursery: trio.Nursery) -> None:
        """Start the network services in ``nursery``; returns once listening."""
        self._nursery = nursery
        await nursery.start(self.gossip.run)
        nursery.start_soon(self._pump_announcements)
        nursery.start_soon(self._refresh_on_demand)
        if self.config.status.bind:
            self.status = StatusServer(self, self.config.status.bind)
            url = await nursery.start(self.status.serve)
            self.emit({"event": "status-listening", "url": url})

    async def register(self) -> None:
        """Bind this node's libp2p peer id and addresses to its account on chain."""
        await self.book.register(self.gossip.peer_id, self.gossip.listen_addrs)

    async def connect_to_members(self, timeout: float, bootstrap: tuple[str, ...] = ()) -> None:
        """Dial the bootstrap peers, then every member the registry lists; wait for the topic.

        Bootstrap addresses come from ``network.bootstrap`` and ``bootstrap``; members'
        addresses come from their own registration transactions.
        """
        for address in (*self.config.network.bootstrap, *bootstrap):
            await self.gossip.connect(address)
        deadline = trio.current_time() + timeout
        while True:  # admitted members that have not registered yet are starting up
            admitted = await self.book.members()
            waiting = [m.name for m in admitted if m.active and not m.peer_id]
            if not waiting or trio.current_time() > deadline:
                break
            await trio.sleep(POLL_SECONDS)
        if waiting:
            log.warning("%s: starting without %s (admitted, not registered)", self.name, waiting)
        await self.refresh_membership()
        others = [m for m in self.membership.members if m.address.lower() != self.address.lower()]
        await self.gossip.wait_for_topic_peers([m.peer_id for m in others], timeout)

    async def refresh_membership(self) -> None:
        """Re-read the registry; dial members this node is not connected to, in the background.

        A member that cannot be reached is retried with a growing delay (up to 15 s), so a
        dead peer does not slow every round down and a healed link is used again soon.
        """
        read_at = time.monotonic()  # the membership's clock: only later reads judge strangers
        self.membership.update(await self.book.members(), read_at)
        now = trio.current_time()
        for member in self.membership.members:
            peer = member.peer_id
            if (
                member.address.lower() == self.address.lower()
                or not member.multiaddrs
                or peer in self._dialing
                or now < self._next_dial.get(peer, 0.0)
                or self.gossip.is_connected(peer)
                or self._nursery is None
            ):
                continue
            self._dialing.add(peer)
            self._nursery.start_soon(self._dial, member.name, peer, member.multiaddrs[0])

    async def _dial(self, name: str, peer: str, address: str) -> None:
        try:
            await self.gossip.connect(address)
            self._dial_backoff.pop(peer, None)
        except GossipError as exc:
            backoff = min(self._dial_backoff.get(peer, 1.0) * 2, DIAL_BACKOFF_MAX_SECONDS)
            self._dial_backoff[peer] = backoff
            self._next_dial[peer] = trio.current_time() + backoff
            log.warning(
                "%s: cannot reach member %s (retry in %.0fs): %s", self.name, name, backoff, exc
            )
        finally:
            self._dialing.discard(peer)

    def resume_from_journal(self) -> None:
        """Continue from the last checkpoint, if this node has one and still has its model."""
        checkpoint = self.journal.load() if self.journal else None
        if checkpoint is None:
            return
        blob = self.gossip.store.get(checkpoint.global_hash)
        if blob is None:
            log.warning(
                "%s: checkpoint model %s is missing; resyncing from peers",
                self.name,
                checkpoint.global_hash,
            )
            return
        if checkpoint.local_hash is not None and self.journal is not None:
            self.learner.restore_kept(self.journal.load_local(checkpoint.local_hash))
        self._adopt_global(
            checkpoint.round,
            decode_weights(blob, self.config.network.max_blob_bytes),
            checkpoint.global_hash,
        )
        self.emit(
            {"event": "resumed", "round": checkpoint.round, "global_hash": checkpoint.global_hash}
        )

    # ------------------------------------------------------------------- rounds

    async def run(self, rounds: int) -> None:
        """Take part in rounds until round ``rounds`` is final on chain, or until this node's
        account may no longer take part (then :attr:`left` says why)."""
        genesis = await self.book.genesis_hash()
        if self.completed_round == 0 and genesis != self.global_hash:
            raise NodeError(
                f"{self.name}: the initial model hashes to {self.global_hash}, but the "
                f"federation's genesis is {genesis}: use the federation's seed and data set"
            )
        if self.completed_round > 0:
            recorded = await self.book.final_hash(self.completed_round)
            if recorded != self.global_hash:
                raise NodeError(
                    f"{self.name}: the checkpoint says round {self.completed_round} ended on "
                    f"{self.global_hash}, but this chain has {recorded or 'no final model'} for "
                    "that round: the state directory belongs to another federation or chain; "
                    "delete its checkpoint.json to start over"
                )
        attempts = self.config.federation.round_attempts
        failures = 0
        while self.completed_round < rounds:
            try:
                await self.catch_up()
                if self.completed_round >= rounds:
                    break
                await self.run_round(self.completed_round + 1)
                failures = 0
            except NotAMember as exc:
                # Excluded (or removed) by the consortium: the others go on without it.
                log.warning("%s", exc)
                self.left = str(exc)
                self.emit(
                    {"event": "left-federation", "round": self.current_round, "reason": str(exc)}
                )
                return
            except RoundFailed as exc:
                # The chain says how the round ended for everyone else; try to follow it.
                failures += 1
                self.emit(
                    {"event": "round-failed", "round": self.completed_round + 1, "reason": str(exc)}
                )
                if attempts and failures >= attempts:
                    raise
                pause = min(RETRY_FIRST_SECONDS * 2 ** (failures - 1), RETRY_MAX_SECONDS)
                log.warning("%s: %s; trying again in %.0fs", self.name, exc, pause)
                await trio.sleep(pause)

    async def catch_up(self) -> None:
        """If the chain has finalized rounds this node missed, fetch that model by hash."""
        last = await self.book.last_finalized_round()
        if last <= self.completed_round:
            return
        final_hash = await self.book.final_hash(last)
        if final_hash is None:
            raise RoundFailed(f"round {last} is final on chain but its hash cannot be read")
        await self.refresh_membership()
        # An excluded node leaves now: its peers may have cut it off, so it could not fetch.
        self._check_membership(last + 1)
        blob = await self._fetch_final(last, final_hash)
        self._adopt_global(
            last, decode_weights(blob, self.config.network.max_blob_bytes), final_hash
        )
        self.emit({"event": "resynced", "round": last, "global_hash": final_hash})

    def _check_membership(self, round_number: int) -> None:
        """Raise :class:`NotAMember` unless the registry read last lists this node's account
        as an active member."""
        if self.address.lower() not in self.membership.addresses():
            raise NotAMember(
                f"{self.name}: account {self.address} may not take part in round "
                f"{round_number}: it is not an active member (removed, excluded for low "
                "reputation, or not registered); the consortium's governance can reinstate it"
            )

    async def run_round(self, round_number: int) -> None:
        """Take part in one round and finish it on the model the chain finalized."""
        started = trio.current_time()
        # Time and traffic count from the first attempt at this round (a failed attempt is
        # retried), so a round that waited out a partition shows how long it really took.
        wall_started, traffic_before = self._first_attempt.setdefault(
            round_number, (time.monotonic(), dict(self.gossip.traffic))
        )
        self._round_started_at.setdefault(round_number, time.time())
        self.current_round = round_number
        self.inbox.forget_before(round_number)
        self.unfetched_updates.clear()
        phases = PhaseClock()
        await self.refresh_membership()
        phases.lap("registry")
        self._check_membership(round_number)
        cluster = self.membership.cluster_of(self.address)
        secure = None
        if self.config.federation.secure_aggregation:
            candidates = await self.book.aggregator_candidates(round_number, cluster)
            secure = self._secure_round(round_number, cluster, candidates)
        if secure is None:
            update: Announcement | None = await self._train_and_announce(
                round_number, cluster, phases
            )
            candidates = await self.book.aggregator_candidates(round_number, cluster)
        failure: RoundFailed | None = None  # raised after the nursery, not in a group
        async with trio.open_nursery() as nursery:
            if secure is not None:
                update = await self._train_and_mask(nursery, secure, started, phases)
            elif self.address in candidates:
                duty = AggregatorDuty(self, round_number, cluster, candidates.index(self.address))
                nursery.start_soon(duty.run, started)
            first = candidates[:1] == [self.address]
            if self.validates_updates(round_number):
                nursery.start_soon(self._validate_updates, round_number, cluster, started)
            if secure is None and (self.config.federation.verify_aggregates or first):
                # The first candidate's duty averages the updates; the others check its sum.
                nursery.start_soon(self._prefetch_updates, round_number, cluster, not first)
            try:
                new_global, used = await self._combine_clusters(round_number, cluster, phases)
            except RoundFailed as exc:
                failure = exc
            nursery.cancel_scope.cancel()
        if failure is not None:
            raise failure
        new_hash = await trio.to_thread.run_sync(self.store_weights, new_global)
        # The new model is scored on the test split while the attestations come in.
        evaluation = self._evaluator.submit(self.learner.score, new_global, round_number)
        await self.book.attest(
            round_number, self.global_hash, new_hash, used, self.privacy_budget(round_number)
        )
        phases.lap("attest")
        final_hash = await self._wait_final(round_number)
        phases.lap("finalize")
        if final_hash != new_hash:
            evaluation.cancel()
            log.error(
                "%s: round %d finalized %s, this node computed %s; adopting the final one",
                self.name,
                round_number,
                final_hash,
                new_hash,
            )
            new_global = decode_weights(
                await self._fetch_final(round_number, final_hash),
                self.config.network.max_blob_bytes,
            )
            evaluation = self._evaluator.submit(self.learner.score, new_global, round_number)
        self._adopt_global(round_number, new_global, final_hash)
        self._first_attempt.pop(round_number, None)
        self._prune_blobs(round_number)
        scores = await trio.to_thread.run_sync(evaluation.result)
        metrics = scores.model
        phases.lap("evaluate")  # what of it outlasted the wait for finality
        self.emit(
            {
                "event": "round",
                "round": round_number,
                "site": self.site.site,
                "display_name": self.site.display_name,
                "cluster": cluster,
                "address": self.address,
                "aggregator": candidates[0] if candidates else None,
                "update_hash": update.blob_hash if update else None,
                "update_codec": update.codec if update else None,
                "update_bytes": update.size if update else None,
                "samples": update.samples if update else None,
                "global_hash": self.global_hash,
                "computed_hash": new_hash,
                "test_loss": metrics.loss,
                "test_accuracy": metrics.accuracy,
                "metric_name": metrics.metric_name,
                "test_metric": metrics.metric,
                **({"personal_metric": scores.personal.metric} if scores.personal else {}),
                **(
                    {"finetune_steps": scores.finetune_steps}
                    if self.config.strategy.finetune_steps
                    else {}
                ),
                **self._privacy_spent(round_number),
                "seconds": round(time.monotonic() - wall_started, 3),
                "bytes_sent": self.gossip.traffic["sent"] - traffic_before.get("sent", 0),
                "bytes_received": self.gossip.traffic["received"]
                - traffic_before.get("received", 0),
                "phase_seconds": phases.laps,
            }
        )

    def privacy_budget(self, round_number: int) -> PrivacyBudget:
        """The budget the chain records with the round: the round event's ``epsilon`` and
        ``delta`` in fixed point (:mod:`incentive.privacy_budget`); no guarantee without
        noise. Every member of a federation computes the same figure (the rounds counted
        and the ``dp_*`` settings are the federation's)."""
        spent = self._privacy_spent(round_number)
        return PrivacyBudget.from_spent(spent.get("epsilon"), spent.get("delta"))

    def _privacy_spent(self, round_number: int) -> dict[str, Any]:
        """The round event's ``epsilon``, ``epsilon_round`` and ``delta``
        (:func:`~node.privacy.privacy_spent`); nothing when updates are not clipped. Counts
        every model round up to this one (a member releases at most one update a round)."""
        federation = self.config.federation
        if not federation.dp_clip:
            return {}
        return privacy_spent(
            federation.dp_noise_multiplier,
            federation.dp_delta,
            round_number - int(self.learner.federation_statistics),
            released_now=not self.learner.statistics_round(round_number),
        )

    async def _train_and_announce(
        self, round_number: int, cluster: int, phases: PhaseClock
    ) -> Announcement:
        # The same seeds as the in-memory simulations, so both give the same numbers.
        update, samples = await trio.to_thread.run_sync(self.learner.train, round_number)
        phases.lap("train")
        codec = self.update_codec(round_number) or CODEC  # secure: a cluster of one, in the clear
        if codec == CODEC:
            digest = await trio.to_thread.run_sync(self.store_weights, update)
            size = encoded_size(update)
        else:  # encoded with the federation's codec: the delta against the round's global
            try:
                encoded = await trio.to_thread.run_sync(self.encoder.encode, update, round_number)
            except InvalidWeights as exc:  # fp16: a value beyond its range
                raise RoundFailed(
                    f"round {round_number}: this member's update cannot be encoded as "
                    f"federation.update_codec = {self.encoder.codec!r}: {exc}"
                ) from exc
            digest = await trio.to_thread.run_sync(self.gossip.store.put, encoded.data)
            size = len(encoded.data)
            del encoded
        del update
        announcement = self.announcement(
            AnnouncementKind.UPDATE, round_number, cluster, digest, size, samples, codec=codec
        )
        await self.gossip.publish(announcement)
        phases.lap("publish")
        return announcement

    def _secure_round(
        self, round_number: int, cluster: int, candidates: Sequence[str]
    ) -> SecureRound | None:
        """The round's secure aggregation in this node's cluster, the same object for every
        attempt at the round (None: a cluster of one member, aggregated in the clear)."""
        secure = self._secure_rounds.get(round_number)
        if secure is None or secure.cluster != cluster:
            secure = SecureRound.for_round(self, round_number, cluster, candidates)
            self._secure_rounds = {round_number: secure} if secure is not None else {}
        return secure

    async def _train_and_mask(
        self, nursery: trio.Nursery, secure: SecureRound, started: float, phases: PhaseClock
    ) -> Announcement | None:
        """Under secure aggregation: announce keys and shares while training, mask the
        update, announce it, and answer the aggregator's unmasking request in the background
        (:mod:`node.secure_round`); the update announcement, or None if this member sat the
        round out. The first aggregator candidate's duty starts here too: it announces the
        roster the members mask with."""
        deadline = started + self.config.federation.update_timeout
        nursery.start_soon(secure.prepare, deadline)
        if self.address.lower() in secure.candidates:
            rank = secure.candidates.index(self.address.lower())
            nursery.start_soon(SecureAggregatorDuty(self, secure, rank).run, started)
        update, _samples = await trio.to_thread.run_sync(self.learner.train, secure.round)
        phases.lap("train")
        announcement = await secure.mask(update, secure.roster_deadline(started))
        del update
        phases.lap("publish")
        nursery.start_soon(secure.answer_requests)
        return announcement

    async def _prefetch_updates(self, round_number: int, cluster: int, average_ahead: bool) -> None:
        """Fetch the cluster's updates into the store as their announcements arrive, all at
        once (the gossip service bounds how many fetches run), so that aggregating and checking
        the aggregate find them there. A failed fetch is left to whoever needs the update.
        With ``average_ahead``, once all are here they are averaged (:meth:`_average_ahead`)."""
        others = set(self.membership.addresses(cluster=cluster)) - {self.address}
        started: set[str] = set()

        async def obtain(announcement: Announcement) -> None:
            try:
                await self.gossip.obtain(announcement.blob_hash, [announcement.peer_id])
            except (GossipError, OSError) as exc:
                log.info(
                    "%s: prefetch of %s's update failed: %s", self.name, announcement.sender, exc
                )
                self.unfetched_updates[announcement.blob_hash] = str(exc)

        def unseen() -> dict[str, Announcement]:
            updates = self.inbox.updates(round_number)
            return {s: a for s, a in updates.items() if s in others and s not in started}

        async with trio.open_nursery() as nursery:
            while started != others:
                await self.inbox.wait_until(lambda: bool(unseen()), math.inf)
                for sender, announcement in sorted(unseen().items()):
                    started.add(sender)
                    nursery.start_soon(obtain, announcement)
        if average_ahead and self.config.federation.verify_aggregates:
            await self._average_ahead(round_number, cluster)

    async def _average_ahead(self, round_number: int, cluster: int) -> None:
        """With every member's update of the cluster here, average them all now, while the
        aggregator is still scoring them: when the recorded aggregate has these inputs (the
        usual round), checking it needs no averaging of its own (:meth:`_aggregate_of`)."""
        members = self.membership.addresses(cluster=cluster)
        updates = self.inbox.updates(round_number)
        if any(member not in updates for member in members):
            return
        chosen = [updates[member] for member in sorted(members)]  # the aggregator's order
        if not all(self.gossip.store.has(a.blob_hash) for a in chosen):
            return  # a fetch failed: the aggregate will not have every member's update
        self._averaging[round_number] = done = trio.Event()
        try:
            inputs = [
                (await self.update_of(a.blob_hash, [], round_number), a.samples) for a in chosen
            ]
            mean = await trio.to_thread.run_sync(self.aggregate_updates, round_number, inputs)
            del inputs
            blob = (await trio.to_thread.run_sync(self.store_aggregate, round_number, mean))[0]
            self.remember_average(
                blob.digest, averaged_inputs((a.sender, a.blob_hash, a.samples) for a in chosen)
            )
        except (GossipError, NodeError, ValueError) as exc:
            log.info("%s: averaging round %d ahead failed: %s", self.name, round_number, exc)
            return
        finally:
            done.set()
            del self._averaging[round_number]
        if self.measures_shapley(round_number):
            await self._evaluate_updates(round_number, cluster, chosen)

    def _combine_rule(self, updates: Sequence[tuple[Mapping[str, WeightArray], int]]) -> Weights:
        federation = self.config.federation
        return robust.aggregate(
            federation.aggregation,
            updates,
            trim=federation.trim_fraction,
            byzantine=federation.byzantine,
            clip_norm=federation.clip_norm,
        ).weights

    def aggregate_updates(
        self, round_number: int, updates: Sequence[tuple[Mapping[str, WeightArray], int]]
    ) -> Weights:
        """A cluster's aggregate of ``updates`` (in sender order) by the federation's rule;
        the statistics round's feature moments are always averaged (blocking)."""
        if self.learner.statistics_round(round_number):
            return fedavg(updates)
        return self._combine_rule(updates)

    def measures_shapley(self, round_number: int) -> bool:
        """Whether the round's scores are Shapley shares (not in a statistics round, whose
        updates are feature moments, not model changes)."""
        return (
            self.config.federation.contribution == "shapley"
            and not self.learner.statistics_round(round_number)
        )

    def measure_shares(
        self, round_number: int, cluster: int, updates: Mapping[str, tuple[Weights, int]]
    ) -> dict[str, int]:
        """Each update's Shapley share of the round's contribution, measured on this node's
        own rows (blocking: run it in a worker thread)."""
        federation = self.config.federation
        seed = derive_seed(federation.seed, "shapley", round_number, cluster)
        return shapley_shares(
            self.learner, round_number, updates, federation.shapley_permutations, seed
        )

    async def _evaluate_updates(
        self, round_number: int, cluster: int, chosen: list[Announcement]
    ) -> None:
        """Measure every update of the cluster on this node's rows and gossip the result, for
        the aggregator's median over evaluators."""
        try:
            updates = {
                a.sender.lower(): (
                    await self.update_of(a.blob_hash, [], round_number),
                    a.samples,
                )
                for a in chosen
            }
            shares = await trio.to_thread.run_sync(
                self.measure_shares, round_number, cluster, updates
            )
        except (GossipError, NodeError, ValueError) as exc:
            log.info("%s: measuring round %d's updates failed: %s", self.name, round_number, exc)
            return
        inputs = tuple(
            AggregateInput(a.sender, a.blob_hash, a.samples, shares[a.sender.lower()])
            for a in chosen
        )
        await self.gossip.publish(
            self.announcement(
                AnnouncementKind.EVALUATION, round_number, cluster, self.global_hash, 0, 0, inputs
            )
        )

    def validates_updates(self, round_number: int) -> bool:
        """Whether members validate the round's updates on their own rows (not in a
        statistics round, whose updates are feature moments)."""
        return self.config.federation.validate_updates and not self.learner.statistics_round(
            round_number
        )

    async def _validate_updates(self, round_number: int, cluster: int, started: float) -> None:
        """Fetch every member's update of the round (every cluster), measure the loss each
        makes on this node's training rows and gossip the losses (:mod:`node.validation`).
        Waits for the updates up to ``federation.update_timeout`` from the round's start; an
        update that cannot be fetched or is not valid weights is left out."""
        members = set(self.membership.addresses())
        deadline = started + self.config.federation.update_timeout

        def heard_from() -> set[str]:  # a refused update will not come: no need to wait
            return set(self.inbox.updates(round_number)) | set(
                self.inbox.refused_updates(round_number)
            )

        await self.inbox.wait_until(lambda: heard_from() >= members, deadline - trio.current_time())
        announced = {
            s: a for s, a in sorted(self.inbox.updates(round_number).items()) if s in members
        }
        updates: dict[str, Mapping[str, WeightArray]] = {}

        async def obtain(sender: str, announcement: Announcement) -> None:
            try:
                updates[sender] = await self.update_of(
                    announcement.blob_hash, [announcement.peer_id], round_number
                )
            except (GossipError, NodeError, InvalidWeights) as exc:
                log.info("%s: cannot validate %s's update: %s", self.name, sender, exc)

        async with trio.open_nursery() as nursery:
            for sender, announcement in announced.items():
                nursery.start_soon(obtain, sender, announcement)
        ratios = await trio.to_thread.run_sync(
            self._measure_updates, round_number, updates, announced
        )
        updates.clear()
        if not ratios:
            return
        inputs = tuple(
            AggregateInput(
                announced[s].sender,
                announced[s].blob_hash,
                announced[s].samples,
                ratio_score(ratios[s]),
            )
            for s in sorted(ratios)
        )
        validation = self.announcement(
            AnnouncementKind.VALIDATION, round_number, cluster, self.global_hash, 0, 0, inputs
        )
        await self.gossip.publish(validation)
        self.inbox.add(validation)  # the aggregator reads its own measure from there too

    def _measure_updates(
        self,
        round_number: int,
        updates: Mapping[str, Mapping[str, WeightArray]],
        announced: Mapping[str, Announcement],
    ) -> dict[str, float]:
        """The loss ratio of each update's step, weighted by its samples, on this node's rows,
        by sender; under SCAFFOLD each sender's variate is remembered for the next round
        (blocking)."""
        learner = self.learner
        ratios: dict[str, float] = {}
        mean_samples = sum(announced[s].samples for s in updates) / max(1, len(updates))
        for sender, update in sorted(updates.items()):
            samples = announced[sender].samples
            before = None
            if learner.scaffold:
                before = self._variates.before(sender, round_number, learner.shared)
                if before is None:
                    log.info(
                        "%s: %s's variate is unknown here (an update of it was missed); "
                        "its round-%d update is not validated by this node",
                        self.name,
                        sender,
                        round_number,
                    )
                    continue
            try:
                step = own_step(learner, update, samples, before, samples / mean_samples)
                ratios |= loss_ratios(learner, round_number, {sender: step})
                if before is not None:
                    self._variates.record(sender, round_number, before, update, samples)
            except (ValueError, KeyError) as exc:  # does not fit the round's layout
                log.info("%s: cannot validate %s's update: %s", self.name, sender, exc)
        return ratios

    def remember_average(self, digest: str, inputs: AveragedInputs) -> None:
        """This node computed blob ``digest`` as the FedAvg of ``inputs``."""
        self._averages[digest] = inputs
        while len(self._averages) > VALID_BLOBS_KEPT:
            del self._averages[next(iter(self._averages))]  # the oldest

    async def _combine_clusters(
        self, round_number: int, own_cluster: int, phases: PhaseClock
    ) -> tuple[Weights, list[ClusterInfo]]:
        """Fetch every cluster's aggregate as soon as it is committed; the new global model
        and the commitments it was made from."""
        clusters = self.membership.clusters()
        records: dict[int, ClusterInfo] = {}
        aggregates: dict[int, Mapping[str, WeightArray]] = {}
        failures: list[RoundFailed] = []
        all_recorded = trio.Event()
        deadline = trio.current_time() + self.config.federation.aggregate_timeout

        async def obtain(cluster: int, cancel_scope: trio.CancelScope) -> None:
            with trio.move_on_at(deadline):
                records[cluster] = await self._recorded_aggregate(round_number, cluster)
            if cluster not in records:
                return
            if len(records) == len(clusters):
                all_recorded.set()
            try:
                aggregates[cluster] = await self._aggregate_of(
                    round_number, records[cluster], cluster == own_cluster
                )
            except RoundFailed as exc:
                failures.append(exc)
                cancel_scope.cancel()

        async with trio.open_nursery() as nursery:
            for cluster in clusters:
                nursery.start_soon(obtain, cluster, nursery.cancel_scope)
            with trio.move_on_at(deadline):
                await all_recorded.wait()
                phases.lap("aggregates-recorded")
        if failures:
            raise failures[0]
        missing = sorted(set(clusters) - set(records))
        if missing:
            raise RoundFailed(
                f"round {round_number}: no aggregate recorded for cluster(s) {missing} within "
                f"{self.config.federation.aggregate_timeout:.0f}s (federation.aggregate_timeout)"
            )
        phases.lap("aggregates-fetched")
        parts = [(aggregates[c], records[c].total_samples) for c in clusters]
        try:
            members = len(self.membership.addresses())
            combined = await trio.to_thread.run_sync(self.learner.next_global, parts, members)
        except ValueError as exc:  # AggregationError, InvalidStrategyState, InvalidWeights
            raise RoundFailed(
                f"round {round_number}: the clusters' aggregates do not make a global model "
                f"under this federation's [strategy]: {exc}"
            ) from exc
        phases.lap("combine")
        return combined, [records[c] for c in clusters]

    async def _aggregate_of(
        self, round_number: int, info: ClusterInfo, verify: bool
    ) -> Mapping[str, WeightArray]:
        """The committed aggregate; for the own cluster, recomputed from the inputs committed
        with it (so an aggregator cannot dodge the check by announcing something else, or
        nothing). A commitment this node cannot check or fetch is refused for good: the
        round fails, and on the Consortium the next aggregator candidate takes over."""
        try:
            return await self._checked_aggregate(round_number, info, verify)
        except RoundFailed:
            self.refused_commitments.add(info.records_hash)
            raise

    async def _checked_aggregate(
        self, round_number: int, info: ClusterInfo, verify: bool
    ) -> Mapping[str, WeightArray]:
        if verify and self.config.federation.verify_aggregates:
            recorded = await self.book.cluster_inputs(info)
            secure = self._secure_rounds.get(round_number)
            if secure is not None and self._averages.get(info.aggregate_hash) != recorded:
                return await self._checked_secure_aggregate(secure, info, recorded)
            averaging = self._averaging.get(round_number)
            if averaging is not None:  # the same work, begun before the record: let it end
                await averaging.wait()
            if self._averages.get(info.aggregate_hash) == recorded:  # averaged here already
                return await self.aggregate_of(round_number, info.aggregate_hash, [])
            inputs = await self._fetch_inputs(round_number, info, recorded)
            recomputed = await trio.to_thread.run_sync(self.aggregate_updates, round_number, inputs)
            return await self._match_recorded(
                round_number, info, recorded, recomputed, "the average of the updates"
            )
        providers = [self.membership.peer_id(info.aggregator) or ""]
        providers += self.membership.peer_ids(exclude=self.address, cluster=info.cluster)
        try:
            return await self.aggregate_of(
                round_number, info.aggregate_hash, [p for p in providers if p]
            )
        except (GossipError, NodeError, InvalidWeights) as exc:
            raise RoundFailed(
                f"round {round_number}: cannot fetch cluster {info.cluster}'s aggregate: {exc}"
            ) from exc

    async def _checked_secure_aggregate(
        self, secure: SecureRound, info: ClusterInfo, recorded: AveragedInputs
    ) -> Mapping[str, WeightArray]:
        """The cluster's aggregate unmasked again from its masked inputs and the answers
        (:meth:`SecureRound.check`), refused unless it is the committed one."""
        recomputed = await secure.check(info, recorded)
        return await self._match_recorded(
            secure.round, info, recorded, recomputed, "the unmasked mean of the masked inputs"
        )

    async def _match_recorded(
        self,
        round_number: int,
        info: ClusterInfo,
        recorded: AveragedInputs,
        recomputed: Mapping[str, WeightArray],
        what: str,
    ) -> Mapping[str, WeightArray]:
        """Store the aggregate this node recomputed from ``recorded`` as the aggregator
        would (:meth:`store_aggregate`) and return what it decodes to; raise
        :class:`RoundFailed` (and drop it) unless it is the committed one."""
        blob, decoded = await trio.to_thread.run_sync(
            self.store_aggregate, round_number, recomputed
        )
        digest = blob.digest
        self.remember_average(digest, recorded)
        if digest != info.aggregate_hash:
            self.gossip.store.discard([digest])
            raise RoundFailed(
                f"round {round_number}: cluster {info.cluster}'s recorded aggregate "
                f"{info.aggregate_hash} is not {what} recorded with it (recomputed: {digest}); "
                f"this node will not attest a global model built on it. The aggregator was "
                f"{info.aggregator}"
            )
        return decoded

    async def _recorded_aggregate(self, round_number: int, cluster: int) -> ClusterInfo:
        """The cluster's aggregate once it is recorded on chain for the round.

        The aggregator announces right after recording, so the chain is asked again when an
        aggregate announcement for the cluster arrives, and otherwise after
        :data:`RECORD_POLL_SECONDS`, a pause that doubles up to
        :data:`RECORD_POLL_MAX_SECONDS` while no announcement comes (a lost announcement only
        costs time; a read every second by every node made the chain requests of a long wait
        grow with the member count times the round's length).
        """

        def announced() -> int:
            return len(self.inbox.aggregates(round_number, cluster))

        def more_than(seen: int) -> Callable[[], bool]:
            return lambda: announced() > seen

        pause = RECORD_POLL_SECONDS
        while True:
            news = more_than(announced())
            info = await self.book.cluster_record(round_number, cluster)
            if info is not None:
                return info
            if await self.inbox.wait_until(news, pause):
                pause = RECORD_POLL_SECONDS
            else:
                pause = min(2 * pause, RECORD_POLL_MAX_SECONDS)

    async def _fetch_inputs(
        self, round_number: int, info: ClusterInfo, recorded: AveragedInputs
    ) -> list[tuple[Mapping[str, WeightArray], int]]:
        aggregator = self.membership.peer_id(info.aggregator)
        updates = []
        for member, update, samples in recorded:
            sources = [p for p in (self.membership.peer_id(member), aggregator) if p]
            try:
                updates.append((await self.update_of(update, sources, round_number), samples))
            except (GossipError, NodeError, ValueError) as exc:
                raise RoundFailed(
                    f"round {round_number}: cannot check cluster {info.cluster}'s aggregate, "
                    f"input {update} of {member} is unavailable or invalid: {exc}"
                ) from exc
        return updates

    async def _wait_final(self, round_number: int) -> str:
        with trio.move_on_after(self.config.federation.chain_timeout):
            while True:
                final = await self.book.poll_final(round_number)
                if final is not None:
                    return final
                await trio.sleep(POLL_SECONDS)
        raise RoundFailed(
            f"round {round_number} was not finalized on chain within "
            f"{self.config.federation.chain_timeout:.0f}s (federation.chain_timeout): fewer than "
            "a quorum of members attested the same global model"
        )

    def _prune_blobs(self, round_number: int) -> None:
        """Delete blobs older than the last ``network.retain_rounds`` rounds (the model stays)."""
        retain = self.config.network.retain_rounds
        cutoff = self._round_started_at.get(round_number - retain + 1) if retain else None
        if cutoff is None:
            return
        deleted = self.gossip.store.prune(cutoff, keep=[self.global_hash])
        for old in [r for r in self._round_started_at if r <= round_number - retain]:
            del self._round_started_at[old]
        if deleted:
            log.debug(
                "%s: deleted %d blobs from before round %d",
                self.name,
                deleted,
                round_number - retain + 1,
            )

    async def _fetch_final(self, round_number: int, final_hash: str) -> bytes:
        try:
            return await self.gossip.fetch(final_hash, self.membership.peer_ids(self.address))
        except GossipError as exc:
            raise RoundFailed(
                f"round {round_number} ended on {final_hash}, which no reachable member "
                f"served: {exc}"
            ) from exc

    def _adopt_global(self, round_number: int, weights: Weights, digest: str) -> None:
        """Make ``weights`` (already in the store as blob ``digest``) the global model."""
        try:
            self.learner.adopt(weights, round_number)
        except ValueError as exc:  # InvalidStrategyState, or statistics that cannot standardise
            raise NodeError(
                f"{self.name}: round {round_number}'s global model {digest} does not fit this "
                f"node's strategy ({exc}); every member must run the federation's [strategy]"
            ) from exc
        self.global_hash = digest
        self.completed_round = round_number
        if self.journal is not None:
            kept = self.learner.kept_on_site()
            local_hash = self.journal.save_local(kept) if kept else None
            self.journal.save(Checkpoint(round_number, self.global_hash, local_hash))

    async def commit_cluster(
        self,
        round_number: int,
        cluster: int,
        aggregate: AggregateBlob,
        inputs: tuple[AggregateInput, ...],
        phases: PhaseClock,
    ) -> bool:
        """Record a cluster's aggregate (stored by :meth:`store_aggregate`) with its inputs in
        the round book and announce it with its codec (the commitment), lapping ``record``
        and ``announce`` on ``phases``; False, with nothing announced, if a better-ranked
        candidate committed the cluster first."""
        if not await self.book.record_cluster(
            round_number, cluster, aggregate.digest, self.global_hash, inputs
        ):
            log.info("%s: another candidate committed cluster %d first", self.name, cluster)
            return False
        phases.lap("record")
        total = sum(i.samples for i in inputs if not i.rejected)
        await self.gossip.publish(
            self.announcement(
                AnnouncementKind.AGGREGATE,
                round_number,
                cluster,
                aggregate.digest,
                aggregate.size,
                total,
                inputs,
                codec=aggregate.codec,
            )
        )
        phases.lap("announce")
        return True

    # ------------------------------------------------------------------ helpers

    def announcement(
        self,
        kind: AnnouncementKind,
        round_number: int,
        cluster: int,
        digest: str,
        size: int,
        samples: int,
        inputs: tuple[AggregateInput, ...] = (),
        round_signature: str = "",
        codec: str = "",
    ) -> Announcement:
        """A signed announcement from this node (``codec``: its blob's, by default the
        weights codec)."""
        return Announcement(
            kind=kind,
            federation=self.config.federation.name,
            round=round_number,
            cluster=cluster,
            blob_hash=digest,
            size=size,
            codec=codec or CODEC,
            samples=samples,
            sender=self.address,
            peer_id=self.gossip.peer_id,
            inputs=inputs,
            round_signature=round_signature,
        ).signed(self._account_key)

    def store_weights(self, weights: Mapping[str, WeightArray]) -> str:
        """Store ``weights``' encoding as a blob (written out piece by piece); its hash.

        The weights are this node's own results (whose arithmetic rejects non-finite values),
        so the blob counts as checked."""
        digest = self.gossip.store.put_parts(encoding_parts(weights))
        self._remember_valid(digest)
        return digest

    def store_aggregate(
        self, round_number: int, aggregate: Mapping[str, WeightArray]
    ) -> tuple[AggregateBlob, Mapping[str, WeightArray]]:
        """Store a cluster's aggregate of ``round_number`` (a delta) as a blob encoded with
        the round's :meth:`aggregate_codec`; the blob, and the tensors every node decodes
        from it, which are what the global model is made of (blocking). The same aggregate
        gives the same blob on every node (:func:`~node.update_encoder.encode_aggregate`)."""
        codec = self.aggregate_codec(round_number)
        if codec == CODEC:
            blob = AggregateBlob(self.store_weights(aggregate), encoded_size(aggregate), codec)
            return blob, aggregate
        encoded = encode_aggregate(aggregate, self.config.federation.update_codec)
        digest = self.gossip.store.put(encoded.data)
        return AggregateBlob(digest, len(encoded.data), encoded.codec), encoded.sent

    def _remember_valid(self, digest: str) -> None:
        with self._valid_blobs_lock:
            self._valid_blobs[digest] = None
            while len(self._valid_blobs) > VALID_BLOBS_KEPT:
                del self._valid_blobs[next(iter(self._valid_blobs))]  # the oldest

    async def weights_of(self, digest: str, providers: list[str]) -> Mapping[str, WeightArray]:
        """Blob ``digest`` as weights, fetched from ``providers`` unless held already.

        From a disk store the weights are a :class:`BlobWeights`: checked in full here, then
        read tensor by tensor when used, so averaging several models holds one tensor of
        each. Raises :class:`GossipError` if no provider delivers, :class:`NodeError` if the
        store loses the blob, :class:`~node.errors.InvalidWeights` if it is not valid weights.
        """
        store = self.gossip.store
        limit = self.config.network.max_blob_bytes
        if not store.on_disk:
            return decode_weights(await self.gossip.fetch(digest, providers), limit)
        await self.gossip.obtain(digest, providers)
        path = await trio.to_thread.run_sync(store.checked_path, digest)
        if path is None:  # the file was corrupt and has been deleted: fetch it again
            await self.gossip.fetch(digest, providers)
            path = await trio.to_thread.run_sync(store.checked_path, digest)
        if path is None:
            raise NodeError(f"blob {digest} is missing from the store right after fetching it")
        weights = BlobWeights(path, limit)
        if digest not in self._valid_blobs:
            await trio.to_thread.run_sync(weights.check)
            self._remember_valid(digest)
        return weights

    def update_codec(self, round_number: int) -> str | None:
        """The codec a member's update of ``round_number`` is encoded with, as its
        announcement names it: the federation's ``update_codec`` for model updates, float32
        weights for the statistics round's feature moments, None (any) under secure
        aggregation, whose masked inputs have a codec of their own."""
        federation = self.config.federation
        if federation.secure_aggregation:
            return None
        if self.learner.statistics_round(round_number):
            return CODEC
        return announced_codec(federation.update_codec)

    def aggregate_codec(self, round_number: int) -> str:
        """The codec a cluster aggregate of ``round_number`` is encoded with, as its
        announcement names it: under fp16 and int8 updates the update codec's, float32
        weights otherwise (top-k updates, the statistics round, secure aggregation;
        :func:`~node.update_encoder.aggregate_codec`)."""
        codec = self.update_codec(round_number)
        if codec is None or codec == CODEC:
            return CODEC
        return aggregate_codec(self.config.federation.update_codec)

    async def update_of(
        self, digest: str, providers: list[str], round_number: int
    ) -> Mapping[str, WeightArray]:
        """A member's update of ``round_number`` (blob ``digest``) as tensors, fetched from
        ``providers`` unless held already, decoded with the round's codec
        (:meth:`update_codec`). Raises as :meth:`weights_of` does; bytes that are not a valid
        encoding raise :class:`~node.errors.InvalidUpdateEncoding` (an ``InvalidWeights``)."""
        return await self._decoded(digest, providers, self.update_codec(round_number))

    async def aggregate_of(
        self, round_number: int, digest: str, providers: list[str]
    ) -> Mapping[str, WeightArray]:
        """A cluster aggregate of ``round_number`` (blob ``digest``) as tensors, fetched from
        ``providers`` unless held already, decoded with the round's
        :meth:`aggregate_codec`. Raises as :meth:`update_of` does."""
        return await self._decoded(digest, providers, self.aggregate_codec(round_number))

    async def _decoded(
        self, digest: str, providers: list[str], codec: str | None
    ) -> Mapping[str, WeightArray]:
        """Blob ``digest`` decoded with ``codec`` (None or float32 weights: :meth:`weights_of`)."""
        if codec is None or codec == CODEC:
            return await self.weights_of(digest, providers)
        store = self.gossip.store
        await self.gossip.obtain(digest, providers)  # shares a fetch under way (a prefetch)
        data = await trio.to_thread.run_sync(store.get, digest)  # checked against its hash
        if data is None:  # the file was corrupt and has been deleted: fetch it again
            data = await self.gossip.fetch(digest, providers)
        limit = self.config.network.max_blob_bytes
        return await trio.to_thread.run_sync(decode_update, data, codec, limit)

    def emit(self, event: dict[str, Any]) -> None:
        """Report a structured event (round results, exclusions, resyncs)."""
        stamped = {"ts": time.time(), "node": self.name, **event}
        self.figures.observe(stamped)
        self._on_event(stamped)

    async def on_chain(self, function: Callable[..., Any], *args: Any) -> Any:
        """Run a (blocking) chain client call in a worker thread."""
        return await trio.to_thread.run_sync(function, *args)

    async def _pump_announcements(self) -> None:
        async for announcement in self.gossip.announcements:
            if announcement.kind is AnnouncementKind.UPDATE:
                first = (announcement.round, announcement.sender.lower())
                self._first_announced.setdefault(announcement.blob_hash, first)
                while len(self._first_announced) > FIRST_ANNOUNCED_KEPT:
                    del self._first_announced[next(iter(self._first_announced))]  # the oldest
            self.inbox.add(announcement)

    def _keep_refused_update(self, announcement: Announcement, reason: str) -> None:
        """Keep a member's update announcement for this round or the next that the validators
        rejected for what it says (an oversized blob, say), or its replay of an old round's
        (kept for the round under way), so that the cluster's aggregator lists it as rejected
        (:mod:`node.aggregator`) and no commitment takes the member's update of that round
        (:mod:`node.consortium_book`). A rejected input must name a number of samples from 1
        to 2**64-1 (the contract's records); an announcement with another stays a gossip
        offence only."""
        window = self.current_round + self.gossip.policy.rounds_ahead
        if announcement.kind is not AnnouncementKind.UPDATE or not (
            0 < announcement.samples <= UINT64_MAX
        ):
            return
        if self.current_round <= announcement.round <= window:
            self.inbox.refuse(announcement, reason)
        elif announcement.round < self.current_round:  # a replay: kept for the round it is in
            self.inbox.refuse(announcement, reason, self.gossip.policy.replay_round())

    def _report_blacklisted(self, peer: str, reason: str) -> None:
        self.emit(
            {
                "event": "peer-blacklisted",
                "round": self.current_round,
                "peer": peer,
                "reason": reason,
            }
        )

    def first_announced(self, update_hash: str) -> tuple[int, str] | None:
        """The round and (lowercase) sender of the first update announcement of this blob
        this node received (copies and replays announce a blob someone announced before);
        None if it has forgotten (it keeps the newest :data:`FIRST_ANNOUNCED_KEPT`)."""
        return self._first_announced.get(update_hash)

    async def _refresh_on_demand(self) -> None:
        """Re-read the registry when an unknown member speaks, at most once a second."""
        while True:
            await self._refresh_wanted.wait()
            self._refresh_wanted = trio.Event()
            try:
                await self.refresh_membership()
            except Exception as exc:  # a failed refresh must not take the node down
                log.warning("%s: registry refresh failed: %s", self.name, exc)
            await trio.sleep(1.0)
