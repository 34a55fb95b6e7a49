"""The hospital node: the one place where training, gossip and the chain meet.

One round ``r`` seen from a node (see docs/architecture.md for the picture):

1. train locally from the global model of round ``r-1``; the update is the weight delta;
2. store the update as a content-addressed blob and publish a signed announcement;
3. if the registry names this node the round's aggregator: wait for members' updates
   (all, or a quorum once ``update_timeout`` passes), fetch and check them, score them,
   average them (FedAvg by samples) and announce the aggregate, then record the round on
   chain;
4. every node fetches the aggregate (optionally recomputing it from its inputs), applies it
   to the previous global model, hashes the result and attests that hash on chain.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio
from libp2p.crypto.keys import KeyPair

from gossip.blobs import BlobStore, blob_hash
from gossip.errors import GossipError
from gossip.messages import AggregateInput, Announcement, AnnouncementKind
from gossip.service import GossipService
from gossip.validation import AnnouncementPolicy
from incentive.clients import MemberClient
from incentive.contribution import contribution_score
from incentive.records import MemberRecord
from node.aggregation import apply_delta, delta, fedavg
from node.config import MedswarmConfig
from node.data import SiteData
from node.errors import NodeError, RoundFailed
from node.inbox import RoundInbox
from node.membership import Membership
from node.training import derive_seed, evaluate, train_local
from node.weights import CODEC, Weights, decode_weights, encode_weights, weights_hash

log = logging.getLogger(__name__)

CLUSTER = 0  # this slice: every hospital in one cluster
RoundEventSink = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class RoundOutcome:
    """What one node ends a round with."""

    round: int
    global_hash: str
    test_loss: float
    test_accuracy: float


class HospitalNode:
    """A hospital's node: local data, a libp2p presence, an account on the ledger."""

    def __init__(
        self,
        config: MedswarmConfig,
        site: SiteData,
        chain: MemberClient,
        account_key: str,
        store: BlobStore,
        initial_weights: Weights,
        identity: KeyPair | None = None,
        on_event: RoundEventSink | None = None,
    ) -> None:
        self.config = config
        self.site = site
        self.chain = chain
        self.address: str = chain.address
        self._account_key = account_key
        self.membership = Membership()
        self.inbox = RoundInbox()
        self.current_round = 0
        self.global_weights = initial_weights
        self.global_hash = weights_hash(initial_weights)
        self._on_event = on_event or (lambda _event: None)
        policy = AnnouncementPolicy(
            federation=config.federation.name,
            member_peer_id=self.membership.peer_id,
            current_round=lambda: self.current_round,
            max_blob_bytes=config.network.max_blob_bytes,
        )
        self.gossip = GossipService(config.network, policy, store, identity)

    @property
    def name(self) -> str:
        return self.site.display_name

    async def start(self, nursery: trio.Nursery) -> None:
        """Start the network services in ``nursery``; returns once listening."""
        await nursery.start(self.gossip.run)
        nursery.start_soon(self._pump_announcements)

    async def register(self) -> None:
        """Bind this node's libp2p peer id and addresses to its account on chain."""
        await self._on_chain(self.chain.register, self.gossip.peer_id, self.gossip.listen_addrs)

    async def connect_to_members(self, timeout: float, bootstrap: tuple[str, ...] = ()) -> None:
        """Dial the bootstrap peers, then every member the registry lists; wait for the topic.

        Bootstrap addresses come from ``network.bootstrap`` and ``bootstrap``; members'
        addresses come from their own registration transactions.
        """
        for address in (*self.config.network.bootstrap, *bootstrap):
            await self.gossip.connect(address)
        await self.refresh_membership()
        others = [m for m in self.membership.members if m.address.lower() != self.address.lower()]
        for member in others:
            if member.multiaddrs:
                await self.gossip.connect(member.multiaddrs[0])
        await self.gossip.wait_for_topic_peers([m.peer_id for m in others], timeout)

    async def run(self, rounds: int) -> list[RoundOutcome]:
        """Take part in rounds 1..``rounds`` one after another."""
        return [await self.run_round(r) for r in range(1, rounds + 1)]

    async def refresh_membership(self) -> None:
        self.membership.update(await self._on_chain(self.chain.members))

    async def run_round(self, round_number: int) -> RoundOutcome:
        """Take part in one round; return the new global model's hash and its test metrics."""
        started = time.monotonic()
        self.current_round = round_number
        self.inbox.forget_before(round_number)
        update = await self._train_and_announce(round_number)
        aggregator = await self._on_chain(self.chain.expected_aggregator, round_number)
        aggregate_task_result: dict[str, Any] = {}
        async with trio.open_nursery() as nursery:
            if aggregator.lower() == self.address.lower():
                nursery.start_soon(self._aggregate, round_number, aggregate_task_result)
            aggregate = await self._await_aggregate(round_number, aggregator)
            new_global = await self._adopt(aggregate)
        new_hash = weights_hash(new_global)
        previous_hash = self.global_hash
        if "records" in aggregate_task_result:
            await self._on_chain(
                self.chain.record_round,
                round_number,
                new_hash,
                previous_hash,
                aggregate_task_result["records"],
            )
        self.global_weights, self.global_hash = new_global, new_hash
        await self._attest(round_number, new_hash)
        metrics = await trio.to_thread.run_sync(
            evaluate, new_global, self.site.test_x, self.site.test_y, self.site.dataset
        )
        outcome = RoundOutcome(round_number, new_hash, metrics.loss, metrics.accuracy)
        self._on_event(
            {
                "event": "round",
                "round": round_number,
                "node": self.name,
                "address": self.address,
                "aggregator": aggregator,
                "update_hash": update.blob_hash,
                "samples": update.samples,
                "included": [item.sender for item in aggregate.inputs],
                "global_hash": new_hash,
                "test_loss": metrics.loss,
                "test_accuracy": metrics.accuracy,
                "seconds": round(time.monotonic() - started, 3),
            }
        )
        return outcome

    async def _train_and_announce(self, round_number: int) -> Announcement:
        # The same seed the in-memory simulation uses, so both give the same numbers.
        seed = derive_seed(self.config.federation.seed, "train", round_number - 1, self.site.site)
        result = await trio.to_thread.run_sync(
            train_local, self.global_weights, self.site, self.config.training, seed
        )
        blob = encode_weights(delta(result.weights, self.global_weights))
        digest = self.gossip.store.put(blob)
        announcement = self._announcement(
            AnnouncementKind.UPDATE, round_number, digest, len(blob), result.samples
        )
        await self.gossip.publish(announcement)
        return announcement

    async def _aggregate(self, round_number: int, result: dict[str, Any]) -> None:
        """As the round's aggregator: collect, check, score and average the updates."""
        members = self.membership.addresses()
        needed = max(1, math.ceil(self.config.federation.quorum * len(members)))
        await self.inbox.wait_until(
            lambda: len(self.inbox.updates(round_number)) >= len(members),
            self.config.federation.update_timeout,
        )
        announced = self.inbox.updates(round_number)
        accepted: list[tuple[Announcement, Weights]] = []
        for sender in sorted(announced):
            announcement = announced[sender]
            try:
                blob = await self.gossip.fetch(announcement.blob_hash, [announcement.peer_id])
                accepted.append((announcement, decode_weights(blob)))
            except (GossipError, NodeError, ValueError) as exc:
                log.warning("round %d: update of %s excluded: %s", round_number, sender, exc)
                self._on_event(
                    {
                        "event": "excluded",
                        "round": round_number,
                        "node": self.name,
                        "member": announcement.sender,
                        "reason": str(exc),
                    }
                )
        if len(accepted) < needed:
            raise RoundFailed(
                f"round {round_number}: aggregator {self.name} has {len(accepted)} valid "
                f"updates, the quorum needs {needed} of {len(members)} "
                "(federation.quorum, federation.update_timeout)"
            )
        mean_delta = fedavg([(weights, a.samples) for a, weights in accepted])
        blob = encode_weights(mean_delta)
        digest = self.gossip.store.put(blob)
        inputs = tuple(
            AggregateInput(sender=a.sender, blob_hash=a.blob_hash, samples=a.samples)
            for a, _ in accepted
        )
        total = sum(a.samples for a, _ in accepted)
        announcement = self._announcement(
            AnnouncementKind.AGGREGATE, round_number, digest, len(blob), total, inputs
        )
        result["records"] = await trio.to_thread.run_sync(self._score, accepted)
        await self.gossip.publish(announcement)

    def _score(self, accepted: list[tuple[Announcement, Weights]]) -> list[MemberRecord]:
        """Each update's effect on this node's training loss, weighted by its samples."""
        x, y = self.site.train_x, self.site.train_y
        dataset = self.site.dataset
        before = evaluate(self.global_weights, x, y, dataset).loss
        records = []
        for announcement, update in accepted:
            after = evaluate(apply_delta(self.global_weights, update), x, y, dataset).loss
            records.append(
                MemberRecord(
                    address=announcement.sender,
                    update_hash=announcement.blob_hash,
                    samples=announcement.samples,
                    score=contribution_score(announcement.samples, before, after),
                )
            )
        return records

    async def _await_aggregate(self, round_number: int, aggregator: str) -> Announcement:
        def from_aggregator() -> list[Announcement]:
            return [
                a
                for a in self.inbox.aggregates(round_number, CLUSTER)
                if a.sender.lower() == aggregator.lower()
            ]

        arrived = await self.inbox.wait_until(
            lambda: bool(from_aggregator()), self.config.federation.aggregate_timeout
        )
        if not arrived:
            raise RoundFailed(
                f"round {round_number}: no aggregate from aggregator {aggregator} within "
                f"{self.config.federation.aggregate_timeout:.0f}s (federation.aggregate_timeout)"
            )
        return from_aggregator()[0]

    async def _adopt(self, aggregate: Announcement) -> Weights:
        """Fetch (and, if configured, recompute) the aggregate; return the new global model.

        With ``verify_aggregates`` the aggregate is recomputed from its listed inputs and must
        hash to what the aggregator announced; that also covers an aggregator that announces
        but cannot serve its aggregate.
        """
        verify = self.config.federation.verify_aggregates
        blob: bytes | None = None
        try:
            blob = await self.gossip.fetch(aggregate.blob_hash, [aggregate.peer_id])
        except GossipError as exc:
            if not verify:
                raise RoundFailed(f"round {aggregate.round}: aggregate unavailable: {exc}") from exc
            log.warning(
                "round %d: aggregate not fetched (%s); recomputing from its inputs",
                aggregate.round,
                exc,
            )
        if verify:
            recomputed = encode_weights(fedavg(await self._fetch_inputs(aggregate)))
            if blob_hash(recomputed) != aggregate.blob_hash:
                raise RoundFailed(
                    f"round {aggregate.round}: aggregate {aggregate.blob_hash} from "
                    f"{aggregate.sender} does not match the average of its inputs"
                )
            blob = recomputed
        assert blob is not None
        return apply_delta(self.global_weights, decode_weights(blob))

    async def _fetch_inputs(self, aggregate: Announcement) -> list[tuple[Weights, int]]:
        updates = []
        for item in aggregate.inputs:
            sources = [p for p in (self.membership.peer_id(item.sender), aggregate.peer_id) if p]
            try:
                data = await self.gossip.fetch(item.blob_hash, sources)
                updates.append((decode_weights(data), item.samples))
            except (GossipError, NodeError, ValueError) as exc:
                raise RoundFailed(
                    f"round {aggregate.round}: cannot check the aggregate, input "
                    f"{item.blob_hash} of {item.sender} is unavailable or invalid: {exc}"
                ) from exc
        return updates

    async def _attest(self, round_number: int, global_hash: str) -> None:
        deadline = trio.current_time() + self.config.federation.chain_timeout
        while True:
            info = await self._on_chain(self.chain.round_info, round_number)
            if info is not None:
                break
            if trio.current_time() > deadline:
                raise RoundFailed(
                    f"round {round_number} was not recorded on chain within "
                    f"{self.config.federation.chain_timeout:.0f}s (federation.chain_timeout)"
                )
            await trio.sleep(0.05)
        if info.global_hash != global_hash:
            raise RoundFailed(
                f"round {round_number}: chain records global model {info.global_hash}, this "
                f"node computed {global_hash}; not attesting"
            )
        await self._on_chain(self.chain.attest, round_number, global_hash)

    def _announcement(
        self,
        kind: AnnouncementKind,
        round_number: int,
        digest: str,
        size: int,
        samples: int,
        inputs: tuple[AggregateInput, ...] = (),
    ) -> Announcement:
        return Announcement(
            kind=kind,
            federation=self.config.federation.name,
            round=round_number,
            cluster=CLUSTER,
            blob_hash=digest,
            size=size,
            codec=CODEC,
            samples=samples,
            sender=self.address,
            peer_id=self.gossip.peer_id,
            inputs=inputs,
        ).signed(self._account_key)

    async def _pump_announcements(self) -> None:
        async for announcement in self.gossip.announcements:
            self.inbox.add(announcement)

    async def _on_chain(self, function: Callable[..., Any], *args: Any) -> Any:
        return await trio.to_thread.run_sync(function, *args)
