"""Real py-libp2p hosts on 127.0.0.1: announcements, validation and blob transfer."""

from __future__ import annotations

import re
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import pytest
import trio
from eth_account import Account

from gossip.blobs import BlobStore, blob_hash
from gossip.errors import GossipError
from gossip.messages import Announcement, AnnouncementKind
from gossip.ranges import ranges_of
from gossip.service import GossipConfig, GossipService
from gossip.validation import AnnouncementPolicy, Verdict
from medswarm.errors import leaf_errors
from tests.helpers import wait_for

pytestmark = pytest.mark.integration

KEYS = ["0x" + f"{i + 1:02x}" * 32 for i in range(3)]
ADDRESSES = [Account.from_key(key).address for key in KEYS]


class Federation:
    """Three member hosts whose membership table is filled once their peer ids are known."""

    def __init__(self) -> None:
        self.members: dict[str, str] = {}
        self.services: list[GossipService] = []

    def policy(self) -> AnnouncementPolicy:
        return AnnouncementPolicy(
            federation="test",
            member_peer_id=lambda address: self.members.get(address.lower()),
            current_round=lambda: 1,
            max_blob_bytes=2**20,
            is_member_peer=lambda peer: peer in self.members.values(),
        )


CONFIG = GossipConfig(fetch_timeout=5.0, max_blob_bytes=2**20)


@asynccontextmanager
async def federation(
    stores: list[BlobStore] | None = None, configs: list[GossipConfig] | None = None
) -> AsyncIterator[Federation]:
    fed = Federation()
    async with trio.open_nursery() as nursery:
        for i in range(3):
            store = stores[i] if stores else BlobStore()
            service = GossipService(configs[i] if configs else CONFIG, fed.policy(), store)
            await nursery.start(service.run)
            fed.services.append(service)
            fed.members[ADDRESSES[i].lower()] = service.peer_id
        for i, service in enumerate(fed.services):
            for other in fed.services[i + 1 :]:
                await service.connect(other.listen_addrs[0])
        for service in fed.services:
            peers = [s.peer_id for s in fed.services if s is not service]
            await service.wait_for_topic_peers(peers, timeout=10)
        yield fed
        nursery.cancel_scope.cancel()


def announce(service: GossipService, index: int, data: bytes) -> Announcement:
    return Announcement(
        kind=AnnouncementKind.UPDATE,
        federation="test",
        round=1,
        cluster=0,
        blob_hash=blob_hash(data),
        size=len(data),
        codec="raw",
        samples=7,
        sender=ADDRESSES[index],
        peer_id=service.peer_id,
    ).signed(KEYS[index])


async def receive(service: GossipService, timeout: float = 10) -> Announcement:
    with trio.fail_after(timeout):
        return await service.announcements.receive()


async def test_announcement_reaches_every_member_and_blob_is_fetched() -> None:
    async with federation() as fed:
        sender, *receivers = fed.services
        data = b"\x01\x02" * 40_000
        sender.store.put(data)
        sent = announce(sender, 0, data)
        await sender.publish(sent)
        for service in fed.services:
            got = await receive(service)
            assert got == sent
        fetched = await receivers[1].fetch(sent.blob_hash, [sent.peer_id])
        assert fetched == data
        assert receivers[1].store.has(sent.blob_hash)


async def test_tampered_announcement_is_rejected_and_not_delivered() -> None:
    async with federation() as fed:
        sender, first, second = fed.services
        honest = announce(sender, 0, b"update")
        tampered = replace(honest, samples=1_000_000)
        await sender._pubsub.publish(sender.topic, tampered.encode())
        await wait_for(lambda: sender.decisions[Verdict.REJECT] >= 1, timeout=5)
        # The honest one published afterwards is the first thing anyone receives.
        await sender.publish(honest)
        for service in (first, second):
            assert (await receive(service)).samples == honest.samples
        assert sender.offences[sender.peer_id] == 1


async def test_forged_blob_is_refetched_from_an_honest_provider() -> None:
    real = b"real update bytes" * 100
    digest = blob_hash(real)
    forged_store = BlobStore()
    forged_store._memory[digest] = b"forged" * 100  # a provider lying about its content
    async with federation([BlobStore(), forged_store, BlobStore()]) as fed:
        fetcher, forger, honest = fed.services
        honest.store.put(real)
        data = await fetcher.fetch(digest, [forger.peer_id, honest.peer_id])
        assert data == real
        assert fetcher.offences[forger.peer_id] == 1


async def test_waiting_for_an_absent_peer_names_it() -> None:
    async with federation() as fed:
        absent = "12D3KooWAbsentPeerAbsentPeerAbsentPeerAbsentPeerAb"
        with pytest.raises(GossipError, match="did not join"):
            await fed.services[0].wait_for_topic_peers([fed.services[1].peer_id, absent], 0.5)


async def test_blob_travels_over_the_bulk_channel() -> None:
    data = bytes(range(256)) * 3000  # 768 000 bytes: several bulk frames
    async with federation() as fed:
        provider, fetcher, _ = fed.services
        digest = provider.store.put(data)
        assert await fetcher.fetch(digest, [provider.peer_id]) == data
        assert fetcher.store.get(digest) == data
        assert fetcher.traffic["bulk_received"] == fetcher.traffic["received"] == len(data)
        assert provider.traffic["bulk_sent"] == len(data)


async def test_forged_blob_over_the_bulk_channel_is_refetched_from_another_provider() -> None:
    real = b"real update bytes" * 1000
    digest = blob_hash(real)
    async with federation() as fed:
        fetcher, forger, honest = fed.services
        forger.serve_lookup = lambda wanted: b"forged update" * 1000 if wanted == digest else None
        honest.store.put(real)
        assert await fetcher.fetch(digest, [forger.peer_id, honest.peer_id]) == real
        assert fetcher.offences[forger.peer_id] == 1
        assert honest.traffic["bulk_sent"] == len(real)
        assert fetcher.traffic["bulk_received"] == len(real)


async def test_peer_without_the_bulk_protocol_is_served_over_the_libp2p_stream() -> None:
    data = b"update" * 10_000
    legacy = replace(CONFIG, bulk_channel=False)
    async with federation(configs=[legacy, CONFIG, CONFIG]) as fed:
        old, fetcher, _ = fed.services
        digest = old.store.put(data)
        assert await fetcher.fetch(digest, [old.peer_id]) == data
        assert fetcher.traffic["received"] == len(data)
        assert fetcher.traffic["bulk_received"] == 0


@pytest.mark.parametrize("bulk_channel", [True, False])
async def test_a_registered_key_is_served_and_an_unregistered_one_gets_nothing(
    bulk_channel: bool,
) -> None:
    async with federation() as fed:
        provider, member = fed.services[0], fed.services[1]
        digest = provider.store.put(b"model of round 1" * 1000)
        outsider = GossipService(
            replace(CONFIG, bulk_channel=bulk_channel), fed.policy(), BlobStore()
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(outsider.run)
            await outsider.connect(provider.listen_addrs[0])
            with pytest.raises(GossipError, match=provider.peer_id):
                await outsider.fetch(digest, [provider.peer_id])
            assert provider.refused["non-member"] >= 1
            assert await member.fetch(digest, [provider.peer_id]) == provider.store.get(digest)
            nursery.cancel_scope.cancel()


async def test_a_peer_is_cut_off_after_repeated_offences() -> None:
    config = replace(CONFIG, max_offences=2)
    async with federation(configs=[config] * 3) as fed:
        victim, forger = fed.services[0], fed.services[1]
        data = b"honest bytes" * 100
        forger.serve_lookup = lambda digest: b"forged bytes" * 100
        for wanted in (blob_hash(b"an update"), blob_hash(b"another update")):
            with pytest.raises(GossipError):
                await victim.fetch(wanted, [forger.peer_id])
        assert victim.is_blacklisted(forger.peer_id)
        await wait_for(lambda: not victim.is_connected(forger.peer_id), timeout=10)
        forger.serve_lookup = forger.store.get
        forger.store.put(data)
        served_before = forger.traffic["sent"]
        with pytest.raises(GossipError, match="no providers"):
            await victim.fetch(blob_hash(data), [forger.peer_id])  # not even asked again
        assert forger.traffic["sent"] == served_before
        # Cutting the peer off leaves this host working with the others.
        honest = fed.services[2]
        honest.store.put(data)
        assert await victim.fetch(blob_hash(data), [forger.peer_id, honest.peer_id]) == data


SEGMENTED = replace(CONFIG, segment_bytes=64 * 2**10)  # the smallest segments allowed
LARGE = bytes(range(256)) * 2500  # 640 000 bytes: 10 segments of 64 KiB


@pytest.mark.parametrize("bulk_channel", [True, False])
async def test_a_large_blob_comes_in_segments_from_both_providers(bulk_channel: bool) -> None:
    config = replace(SEGMENTED, bulk_channel=bulk_channel)
    async with federation(configs=[config] * 3) as fed:
        fetcher, first, second = fed.services
        digest = first.store.put(LARGE)
        second.store.put(LARGE)
        assert await fetcher.fetch(digest, [first.peer_id, second.peer_id]) == LARGE
        assert fetcher.store.get(digest) == LARGE
        sent = [first.traffic["sent"], second.traffic["sent"]]
        assert min(sent) > 0 and sum(sent) == len(LARGE)  # each sent some segments
        assert fetcher.traffic["bulk_received"] == (len(LARGE) if bulk_channel else 0)
        assert not fetcher.offences


async def test_an_announced_blob_is_fetched_without_asking_its_length() -> None:
    async with federation(configs=[SEGMENTED] * 3) as fed:
        sender, fetcher, other = fed.services
        lengths_asked: list[str] = []
        for provider in (sender, other):
            read_range = provider.serve_range

            def counting(
                digest: str, offset: int, count: int, read_range: Any = read_range
            ) -> tuple[int, bytes] | None:
                if count == 0:
                    lengths_asked.append(digest)
                return read_range(digest, offset, count)

            provider.serve_range = counting
        for data in (b"small update" * 100, LARGE):
            digest = sender.store.put(data)
            other.store.put(data)
            await sender.publish(announce(sender, 0, data))
            await receive(fetcher)
            assert await fetcher.fetch(digest, [sender.peer_id, other.peer_id]) == data
        assert lengths_asked == []
        assert sender.traffic["sent"] and other.traffic["sent"]  # LARGE came from both


async def test_a_provider_forging_ranges_is_found_and_counted_once() -> None:
    forged = bytes(byte ^ 0xFF for byte in LARGE[:16]) + LARGE[16:]
    async with federation(configs=[SEGMENTED] * 3) as fed:
        fetcher, forger, honest = fed.services
        digest = honest.store.put(LARGE)
        forger.serve_lookup = lambda wanted: forged if wanted == digest else None
        forger.serve_range = ranges_of(forger.serve_lookup)
        assert await fetcher.fetch(digest, [forger.peer_id, honest.peer_id]) == LARGE
        assert fetcher.offences == {forger.peer_id: 1}


async def test_obtain_writes_a_bulk_blob_to_the_disk_store_and_charges_a_forger(
    tmp_path: Any,
) -> None:
    real = b"update of one member" * 5000
    digest = blob_hash(real)
    stores = [BlobStore(tmp_path / name) for name in ("fetcher", "forger", "honest")]
    async with federation(stores) as fed:
        fetcher, forger, honest = fed.services
        honest.store.put(real)
        await fetcher.obtain(digest, [honest.peer_id])
        assert fetcher.store.get(digest) == real
        assert fetcher.traffic["bulk_received"] == len(real)
        assert honest.traffic["bulk_sent"] == len(real)

        other = b"another update" * 5000
        wanted = blob_hash(other)
        forger.serve_lookup = lambda asked: b"forged update" * 5000 if asked == wanted else None
        with pytest.raises(GossipError, match="hash mismatch"):
            await fetcher.obtain(wanted, [forger.peer_id])
        assert fetcher.offences[forger.peer_id] == 1
        assert not fetcher.store.has(wanted)
        # Asked again for that blob, the forger is not asked (nor charged) twice.
        sent_before = forger.traffic["sent"]
        with pytest.raises(GossipError, match=r"hash mismatch \(earlier\)"):
            await fetcher.fetch(wanted, [forger.peer_id])
        assert fetcher.offences[forger.peer_id] == 1
        assert forger.traffic["sent"] == sent_before


async def test_a_port_already_in_use_is_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        config = replace(CONFIG, listen_port=taken.getsockname()[1])
        service = GossipService(config, Federation().policy(), BlobStore())
        with pytest.raises(BaseException) as caught:  # the error, or a group holding it
            async with trio.open_nursery() as nursery:
                await nursery.start(service.run)
    (error,) = leaf_errors(caught.value)
    assert isinstance(error, GossipError)
    assert re.search(r"could not listen on .* choose another", str(error))
