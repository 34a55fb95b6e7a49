"""One node process of the dissemination bench (``python -m testnet.gossip_bench_node``).

The process runs two :class:`GossipService` hosts on 127.0.0.1, one per path the bench
compares: ``bulk`` (the encrypted bulk channel beside libp2p) and ``stock``
(``network.bulk_channel = false``: blobs over ``/medswarm/blob/1.0.0`` Yamux streams). Each
host admits exactly the bench's hosts of its own path: the member list comes from the
parent, not from a chain, since the bench measures the network layer alone.

The parent drives it with one JSON object per line on stdin, and it answers one JSON object
per line on stdout:

    (at start)                          -> {"ready": {path: {"peer_id", "address"}}, ...}
    {"cmd": "peers", "peers": [...]}    -> {"connected": true}   (dials, waits for the topic)
    {"cmd": "cpu"}                      -> {"cpu": CPU seconds of this process so far}
    {"cmd": "round", "path", "round"}   -> {"done": round, "path", "own": digest,
                                            "received": bytes, "bulk_received": bytes}
    {"cmd": "check", "path", "round"}   -> {"held": [digests whose bytes hash to them]}

In a round the host makes a fresh random blob, stores it, publishes a signed UPDATE
announcement, and fetches every other member's blob as its announcement arrives; it answers
once it holds all of them. A failed fetch is reported as ``{"error": ...}``. The process
exits when its stdin closes.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import logging
import os
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import Any

import trio
from cryptography.hazmat.primitives.ciphers import Cipher
from cryptography.hazmat.primitives.ciphers.algorithms import ChaCha20
from eth_account import Account

from gossip.blobs import BlobStore, blob_hash
from gossip.errors import GossipError
from gossip.messages import Announcement, AnnouncementKind
from gossip.service import GossipConfig, GossipService
from gossip.validation import AnnouncementPolicy

HOST = "127.0.0.1"
FEDERATION = "bench"
PATHS = ("stock", "bulk")
SLOWEST_MB_S = 1.0  # timeouts assume no fetch is slower than this, even on a busy machine
PEER_TIMEOUT = 60.0  # dialling every member and seeing it on the topic


def fetch_timeout(size_bytes: int, nodes: int) -> float:
    """Seconds one fetch may take: ``nodes`` transfers may share the machine at once."""
    return 10.0 + nodes * size_bytes / (SLOWEST_MB_S * 1e6)


def member_key(index: int) -> str:
    """The Ethereum key that signs node ``index``'s announcements (fixed, bench only)."""
    return "0x" + hashlib.sha256(f"medswarm gossip bench member {index}".encode()).hexdigest()


def random_blob(size_bytes: int) -> bytes:
    """Fresh random bytes: the ChaCha20 keystream under a new random key.

    As unpredictable as ``os.urandom`` (the kernel's generator is ChaCha20 too) at a quarter
    of its CPU time for 4 MiB here (5 ms against 20; most of the 5 is page faults on the new
    bytes), which keeps the bench's own work small.
    """
    key, nonce = os.urandom(32), os.urandom(16)
    return Cipher(ChaCha20(key, nonce), mode=None).encryptor().update(_zeros(size_bytes))


@functools.cache
def _zeros(size_bytes: int) -> bytes:
    return bytes(size_bytes)


@dataclass
class Member:
    """One host of this process, on one path, and what it holds per round."""

    path: str
    service: GossipService
    address: str
    key: str
    nodes: int
    round: int = 0
    members: dict[str, str] = field(default_factory=dict)  # eth address (lower) -> peer id
    held: defaultdict[int, set[str]] = field(default_factory=lambda: defaultdict(set))
    changed: trio.Event = field(default_factory=trio.Event)

    def hold(self, round_number: int, digest: str) -> None:
        self.held[round_number].add(digest)
        self.changed.set()
        self.changed = trio.Event()

    async def wait_complete(self, round_number: int) -> None:
        while len(self.held[round_number]) < self.nodes:
            await self.changed.wait()


def _service(member_peers: dict[str, str], config: GossipConfig, round_of: Any) -> GossipService:
    policy = AnnouncementPolicy(
        federation=FEDERATION,
        member_peer_id=lambda address: member_peers.get(address.lower()),
        current_round=round_of,
        max_blob_bytes=config.max_blob_bytes,
        is_member_peer=lambda peer: peer in member_peers.values(),
    )
    return GossipService(config, policy, BlobStore(max_blob_bytes=config.max_blob_bytes))


def _members(index: int, nodes: int, size_bytes: int, concurrency: int | None) -> dict[str, Member]:
    config = GossipConfig(
        listen_host=HOST,
        max_blob_bytes=size_bytes,
        fetch_timeout=fetch_timeout(size_bytes, nodes),
        connect_timeout=PEER_TIMEOUT,
    )
    if concurrency is not None:
        config = replace(config, max_concurrent_fetches=concurrency)
    key = member_key(index)
    members: dict[str, Member] = {}
    for path in PATHS:
        peers: dict[str, str] = {}
        path_config = replace(config, bulk_channel=path == "bulk")

        def round_of(path: str = path) -> int:
            return members[path].round

        service = _service(peers, path_config, round_of)
        member = Member(path, service, Account.from_key(key).address, key, nodes)
        member.members = peers
        members[path] = member
    return members


def _emit(message: dict[str, Any]) -> None:
    print(json.dumps(message), flush=True)


async def _lines(stream: trio.abc.ReceiveStream) -> Any:
    buffered = b""
    while True:
        while b"\n" in buffered:
            line, buffered = buffered.split(b"\n", 1)
            yield json.loads(line)
        chunk = await stream.receive_some()
        if not chunk:
            return
        buffered += chunk


async def _connect(member: Member, peers: list[dict[str, Any]], index: int) -> None:
    for ready in peers:
        member.members[ready["member"].lower()] = ready["ready"][member.path]["peer_id"]
    for other, ready in enumerate(peers):
        if other > index:  # one dial per pair
            await member.service.connect(ready["ready"][member.path]["address"])
    others = [p["ready"][member.path]["peer_id"] for i, p in enumerate(peers) if i != index]
    await member.service.wait_for_topic_peers(others, PEER_TIMEOUT)


async def _fetch_on_announcement(member: Member) -> None:
    async with trio.open_nursery() as nursery:
        async for announcement in member.service.announcements:
            if announcement.kind is AnnouncementKind.UPDATE:
                nursery.start_soon(_fetch, member, announcement)


async def _fetch(member: Member, announcement: Announcement) -> None:
    try:
        await member.service.fetch(announcement.blob_hash, [announcement.peer_id])
    except GossipError as exc:
        _emit({"error": f"{member.path} fetch of round {announcement.round} failed: {exc}"})
        return
    member.hold(announcement.round, announcement.blob_hash)


async def _round(member: Member, round_number: int, size_bytes: int) -> str:
    member.round = round_number
    data = random_blob(size_bytes)
    digest = member.service.store.put(data)
    member.hold(round_number, digest)
    announcement = Announcement(
        kind=AnnouncementKind.UPDATE,
        federation=FEDERATION,
        round=round_number,
        cluster=0,
        blob_hash=digest,
        size=size_bytes,
        codec="raw",
        samples=1,
        sender=member.address,
        peer_id=member.service.peer_id,
    ).signed(member.key)
    await member.service.publish(announcement)
    with trio.fail_after(member.service.config.fetch_timeout * member.nodes):
        await member.wait_complete(round_number)
    return digest


def _check(member: Member, round_number: int) -> list[str]:
    """The round's blobs whose stored bytes hash to their name; then forget the round."""
    digests = member.held.pop(round_number, set())
    store = member.service.store
    verified = [d for d in sorted(digests) if (data := store.get(d)) and blob_hash(data) == d]
    store.discard(digests)
    return verified


async def run_node(index: int, nodes: int, size_bytes: int, concurrency: int | None) -> None:
    """Serve the parent's commands until stdin closes."""
    members = _members(index, nodes, size_bytes, concurrency)
    stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    async with trio.open_nursery() as nursery:
        for member in members.values():
            await nursery.start(member.service.run)
            nursery.start_soon(_fetch_on_announcement, member)
        ready = {
            path: {"peer_id": m.service.peer_id, "address": m.service.listen_addrs[0]}
            for path, m in members.items()
        }
        _emit({"ready": ready, "member": members["bulk"].address})
        async for command in _lines(stdin):
            kind = command["cmd"]
            if kind == "peers":
                for member in members.values():
                    await _connect(member, command["peers"], index)
                _emit({"connected": True})
            elif kind == "cpu":
                _emit({"cpu": time.process_time()})
            elif kind == "round":
                member = members[command["path"]]
                traffic = member.service.traffic
                before = traffic["received"], traffic["bulk_received"]
                own = await _round(member, command["round"], size_bytes)
                received = traffic["received"] - before[0], traffic["bulk_received"] - before[1]
                _emit(
                    {
                        "done": command["round"],
                        "path": member.path,
                        "own": own,
                        "received": received[0],
                        "bulk_received": received[1],
                    }
                )
            elif kind == "check":
                _emit({"held": _check(members[command["path"]], command["round"])})
        nursery.cancel_scope.cancel()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="one node process of the dissemination bench")
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--nodes", type=int, required=True)
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--max-concurrent-fetches", type=int, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="gossip bench %(name)s: %(message)s")
    logging.getLogger("libp2p").setLevel(logging.CRITICAL)  # redials as the others stop
    trio.run(run_node, args.index, args.nodes, args.size, args.max_concurrent_fetches)
    return 0


if __name__ == "__main__":
    sys.exit(main())
