"""Secure aggregation in a round, the members' and the aggregator's steps over a stand-in
network: announcements reach every node's inbox, blobs are fetched from one shared table
(node/secure_round.py, node/secure_aggregator.py). The real network runs in
tests/integration/test_secure_aggregation.py."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import trio
import trio.testing
from eth_account import Account

from gossip.errors import FetchFailed
from gossip.messages import AggregateInput, Announcement, AnnouncementKind
from incentive.records import ClusterInfo
from node.aggregation import fedavg
from node.hospital import AggregateBlob, HospitalNode
from node.round_book import averaged_inputs
from node.secure_aggregator import SecureAggregatorDuty
from node.secure_round import MASKED_CODEC, SecureRound
from node.weights import CODEC, WeightArray, Weights, decode_weights, encode_weights

KEYS = [f"0x{i:064x}" for i in range(11, 15)]
SAMPLES = [40, 60, 100, 50]
UPDATE_TIMEOUT = 10.0


@dataclass
class Network:
    """Every node's inbox gets every announcement; blobs are in one table."""

    nodes: list[FakeNode] = field(default_factory=list)
    blobs: dict[str, bytes] = field(default_factory=dict)
    records: dict[int, Announcement] = field(default_factory=dict)


class FakeStore:
    def __init__(self, network: Network) -> None:
        self.network = network
        self.held: set[str] = set()

    def put(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        self.network.blobs[digest] = data
        self.held.add(digest)
        return digest

    def has(self, digest: str) -> bool:
        return digest in self.held


class FakeGossip:
    def __init__(self, network: Network, peer_id: str) -> None:
        self.network = network
        self.peer_id = peer_id
        self.store = FakeStore(network)
        self.silenced: set[AnnouncementKind] = set()

    async def publish(self, announcement: Announcement) -> None:
        if announcement.kind in self.silenced:
            return
        for node in self.network.nodes:
            node.inbox.add(announcement)

    async def fetch(self, digest: str, providers: list[str]) -> bytes:
        if digest not in self.network.blobs:
            raise FetchFailed(f"no provider has {digest}")
        self.store.held.add(digest)
        return self.network.blobs[digest]

    def served_forged(self, digest: str, peer: str) -> bool:
        return False


class FakeBook:
    def __init__(self, network: Network) -> None:
        self.network = network

    async def record_cluster(self, round_number: int, cluster: int, *_: Any) -> bool:
        return cluster not in self.network.records

    async def cluster_record(self, round_number: int, cluster: int) -> ClusterInfo | None:
        found = self.network.records.get(cluster)
        if found is None:
            return None
        return ClusterInfo(
            round_number, cluster, found.blob_hash, "", found.signature, found.sender,
            found.samples, 0,
        )  # fmt: skip


class FakeNode:
    """What the secure round uses of a :class:`~node.hospital.HospitalNode`."""

    commit_cluster = HospitalNode.commit_cluster  # the real one, on these stand-ins

    def __init__(self, network: Network, key: str, samples: int) -> None:
        from node.inbox import RoundInbox

        self.address = Account.from_key(key).address
        self.name = self.address[:8]
        self._key = key
        self.network = network
        self.inbox = RoundInbox()
        self.gossip = FakeGossip(network, f"peer-{self.address.lower()}")
        self.book = FakeBook(network)
        self.global_hash = "00" * 32
        self.config = SimpleNamespace(
            federation=SimpleNamespace(
                name="heart", update_timeout=UPDATE_TIMEOUT, evaluation_timeout=5.0
            )
        )
        self.learner = SimpleNamespace(
            update_layout=lambda _round: {"w": (2, 2), "b": (3,)},
            loaded_site=SimpleNamespace(n_train=samples),
        )
        self.membership = SimpleNamespace(
            addresses=lambda cluster=None: sorted(n.address.lower() for n in network.nodes),
            peer_id=lambda address: f"peer-{address.lower()}",
        )
        self.events: list[dict[str, Any]] = []
        self.averages: dict[str, Any] = {}

    def announcement(
        self,
        kind: AnnouncementKind,
        round_number: int,
        cluster: int,
        digest: str,
        size: int,
        samples: int,
        inputs: tuple[AggregateInput, ...] = (),
        codec: str = "",
    ) -> Announcement:
        unsigned = Announcement(
            kind, "heart", round_number, cluster, digest, size, codec or "msw1-f32", samples,
            self.address, self.gossip.peer_id, inputs,
        )  # fmt: skip
        announcement = unsigned.signed(self._key)
        if kind is AnnouncementKind.AGGREGATE:
            self.network.records.setdefault(cluster, announcement)
        return announcement

    def emit(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    def store_weights(self, weights: Mapping[str, WeightArray]) -> str:
        return self.gossip.store.put(encode_weights(weights))

    def store_aggregate(
        self, round_number: int, weights: Mapping[str, WeightArray]
    ) -> tuple[AggregateBlob, Mapping[str, WeightArray]]:
        data = encode_weights(weights)  # secure aggregation: aggregates are float32
        return AggregateBlob(self.gossip.store.put(data), len(data), CODEC), weights

    def remember_average(self, digest: str, inputs: Any) -> None:
        self.averages[digest] = inputs


def update(seed: int) -> Weights:
    rng = np.random.default_rng(seed)
    return {
        "w": rng.normal(0, 0.05, (2, 2)).astype(np.float32),
        "b": rng.normal(0, 0.05, 3).astype(np.float32),
    }


async def play_round(
    network: Network, dropping: set[int], garbling: frozenset[int] = frozenset()
) -> list[SecureRound]:
    """One round of cluster 0 with the first node as aggregator; ``dropping`` nodes mask and
    then go silent (their masked inputs and answers never leave them); ``garbling`` nodes
    announce bytes that are no masked input as their update."""
    nodes = network.nodes
    candidates = [n.address for n in nodes]
    rounds = [SecureRound(node, 1, 0, candidates) for node in nodes]  # type: ignore[arg-type]
    started = trio.current_time()

    async def member(index: int) -> None:
        secure = rounds[index]
        await secure.prepare(started + UPDATE_TIMEOUT)
        if index in dropping:
            nodes[index].gossip.silenced |= {
                AnnouncementKind.UPDATE,
                AnnouncementKind.SECAGG_ANSWER,
            }
        if index in garbling:
            samples = nodes[index].learner.loaded_site.n_train
            await secure.publish(AnnouncementKind.UPDATE, b"garbage", samples, MASKED_CODEC)
        else:
            await secure.mask(update(index), secure.roster_deadline(started))
        await secure.answer_requests()

    async with trio.open_nursery() as nursery:
        for index in range(len(nodes)):
            nursery.start_soon(member, index)
        duty = SecureAggregatorDuty(nodes[0], rounds[0], 0)  # type: ignore[arg-type]
        nursery.start_soon(duty.run, started)
        while 0 not in network.records:
            await trio.sleep(0.1)
        nursery.cancel_scope.cancel()
    return rounds


def make_network() -> Network:
    network = Network()
    network.nodes = [FakeNode(network, key, n) for key, n in zip(KEYS, SAMPLES, strict=True)]
    network.nodes.sort(key=lambda n: n.address.lower())  # the setup's member order
    return network


@pytest.mark.parametrize("dropping", [set(), {2}])
def test_the_aggregator_commits_the_survivors_fedavg_and_a_member_unmasks_it_again(
    dropping: set[int],
) -> None:
    network = make_network()
    samples = [n.learner.loaded_site.n_train for n in network.nodes]

    async def main() -> None:
        rounds = await play_round(network, dropping)
        commitment = network.records[0]
        survivors = [i for i in range(len(network.nodes)) if i not in dropping]
        assert [i.sender for i in commitment.inputs] == [
            network.nodes[i].address for i in survivors
        ]
        assert [i.score for i in commitment.inputs] == [samples[i] for i in survivors]
        assert commitment.samples == sum(samples[i] for i in survivors)
        aggregate = decode_weights(network.blobs[commitment.blob_hash])
        expected = fedavg([(update(i), samples[i]) for i in survivors])
        for name in expected:
            np.testing.assert_allclose(aggregate[name], expected[name], rtol=0, atol=4e-6)
        aggregated = next(e for e in network.nodes[0].events if e["event"] == "aggregated")
        dropped = [network.nodes[i].address.lower() for i in sorted(dropping)]
        assert aggregated["secure"]["dropped"] == dropped
        # every update announced is a masked input; the aggregator never held a plain one
        plain = {hashlib.sha256(encode_weights(update(i))).hexdigest() for i in range(4)}
        assert not plain & set(network.blobs)
        masked = network.nodes[0].inbox.updates(1)
        assert all(a.codec == MASKED_CODEC for a in masked.values())
        # a checking member rebuilds the same bytes from what was gossiped
        info = await network.nodes[1].book.cluster_record(1, 0)
        assert info is not None
        recorded = averaged_inputs((i.sender, i.blob_hash, i.samples) for i in commitment.inputs)
        again = await rounds[1].check(info, recorded)
        assert encode_weights(again) == network.blobs[commitment.blob_hash]

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_a_member_left_out_of_the_roster_sits_the_round_out() -> None:
    network = make_network()
    late = network.nodes[3]
    late.gossip.silenced.add(AnnouncementKind.SECAGG_SHARES)  # its shares never leave it

    async def main() -> None:
        await play_round(network, set())
        commitment = network.records[0]
        assert late.address not in [i.sender for i in commitment.inputs]
        assert len(commitment.inputs) == 3
        assert [e["event"] for e in late.events] == ["secagg-sat-out"]
        assert "roster leaves this member out" in late.events[0]["reason"]

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_an_update_that_is_no_masked_input_is_rejected_and_its_masks_removed() -> None:
    network = make_network()
    samples = [n.learner.loaded_site.n_train for n in network.nodes]

    async def main() -> None:
        await play_round(network, set(), garbling=frozenset({1}))
        commitment = network.records[0]
        assert [(i.sender, i.rejected) for i in commitment.inputs] == [
            (network.nodes[i].address, i == 1) for i in (0, 2, 3, 1)
        ]
        aggregate = decode_weights(network.blobs[commitment.blob_hash])
        expected = fedavg([(update(i), samples[i]) for i in (0, 2, 3)])
        for name in expected:
            np.testing.assert_allclose(aggregate[name], expected[name], rtol=0, atol=4e-6)
        excluded = [e for e in network.nodes[0].events if e["event"] == "excluded"]
        assert [e["member"] for e in excluded] == [network.nodes[1].address]
        assert "not a masked input" in excluded[0]["reason"]

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
