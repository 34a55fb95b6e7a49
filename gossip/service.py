"""One node's presence on the network: a libp2p host, the federation topic, the blob protocol.

:class:`GossipService` runs a real py-libp2p host (TCP + Noise + Yamux, Ed25519 identity),
GossipSub on one topic per federation, and ``/medswarm/blob/1.0.0`` for model blobs. It hands
validated announcements to its owner through :attr:`GossipService.announcements` and knows
nothing about training or the chain: membership comes in as a lookup function.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import multiaddr
import trio
from libp2p import new_host
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.keys import KeyPair
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.pubsub.gossipsub import PROTOCOL_ID, PROTOCOL_ID_V11, GossipSub
from libp2p.pubsub.pubsub import Pubsub
from libp2p.tools.anyio_service import background_trio_service

from gossip.blobs import BLOB_PROTOCOL, BlobStore, ByteStream, fetch_from_providers, serve_blob
from gossip.errors import GossipError
from gossip.messages import Announcement
from gossip.muxer import honour_muxer_options, muxer_options
from gossip.validation import AnnouncementPolicy, Verdict, validate_announcement

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GossipConfig:
    """Network settings of one node (the ``[network]`` table of the node config)."""

    listen_host: str = "127.0.0.1"
    listen_port: int = 0
    bootstrap: tuple[str, ...] = ()  # multiaddrs with /p2p/<peer id> to dial at start
    heartbeat_interval: float = 0.5
    fetch_timeout: float = 10.0
    connect_timeout: float = 10.0
    max_blob_bytes: int = 64 * 2**20
    max_offences: int = 3


def topic_for(federation: str) -> str:
    """The GossipSub topic a federation's announcements travel on."""
    return f"/medswarm/{federation}/announce/1"


def new_identity(seed: bytes | None = None) -> KeyPair:
    """A fresh Ed25519 libp2p identity (deterministic when ``seed`` is 32 bytes)."""
    return create_new_key_pair(seed)


class GossipService:
    """A libp2p host speaking the medswarm protocols for one federation."""

    def __init__(
        self,
        config: GossipConfig,
        policy: AnnouncementPolicy,
        store: BlobStore,
        identity: KeyPair | None = None,
    ) -> None:
        self.config = config
        self.policy = policy
        self.store = store
        self.topic = topic_for(policy.federation)
        self._host = new_host(key_pair=identity or new_identity(), muxer_opt=muxer_options())
        honour_muxer_options(self._host)
        self._gossipsub = GossipSub(
            protocols=[PROTOCOL_ID_V11, PROTOCOL_ID],
            degree=6,
            degree_low=4,
            degree_high=12,
            heartbeat_interval=config.heartbeat_interval,
        )
        self._pubsub = Pubsub(self._host, self._gossipsub)
        self._pubsub.set_topic_validator(self.topic, self._validate, False)
        self._host.set_stream_handler(TProtocol(BLOB_PROTOCOL), self._serve_blob)
        send, receive = trio.open_memory_channel[Announcement](256)
        self._send = send
        self.announcements: trio.MemoryReceiveChannel[Announcement] = receive
        # What the blob protocol answers from; the testnet swaps it to inject a lying provider.
        self.serve_lookup: Callable[[str], bytes | None] = store.get
        self.offences: Counter[str] = Counter()
        # Bytes this node put on / took off the wire for announcements and blobs.
        self.traffic: Counter[str] = Counter()
        self.decisions: Counter[Verdict] = Counter()

    @property
    def peer_id(self) -> str:
        return str(self._host.get_id().to_base58())

    @property
    def listen_addrs(self) -> list[str]:
        """Dialable multiaddrs including ``/p2p/<peer id>`` (valid once running)."""
        return [str(addr) for addr in self._host.get_addrs()]

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Run until cancelled; signals ``started`` once the topic is joined."""
        listen = multiaddr.Multiaddr(
            f"/ip4/{self.config.listen_host}/tcp/{self.config.listen_port}"
        )
        async with (
            self._host.run([listen]),
            background_trio_service(self._pubsub),
            background_trio_service(self._gossipsub),
        ):
            await self._pubsub.wait_until_ready()
            subscription = await self._pubsub.subscribe(self.topic)
            log.info("peer %s listening on %s", self.peer_id, ", ".join(self.listen_addrs))
            task_status.started()
            try:
                while True:
                    message = await subscription.get()
                    await self._deliver(message.data)
            finally:
                self._send.close()

    def is_connected(self, peer_id: str) -> bool:
        """Whether this host has an open connection to ``peer_id``."""
        connections = self._host.get_network().connections
        return bool(connections.get(ID.from_base58(peer_id)))

    async def connect(self, address: str) -> str:
        """Dial a peer by multiaddr (with ``/p2p/``); retries until ``connect_timeout``."""
        info = info_from_p2p_addr(multiaddr.Multiaddr(address))
        delay = 0.05
        with trio.move_on_after(self.config.connect_timeout):
            while True:
                try:
                    await self._host.connect(info)
                    return str(info.peer_id.to_base58())
                except Exception as exc:
                    log.debug("dial %s failed (%r); retrying in %.2fs", address, exc, delay)
                await trio.sleep(delay)
                delay = min(delay * 2, 1.0)
        raise GossipError(
            f"could not connect to {address} within {self.config.connect_timeout}s: is that "
            "node running and is the address (including /p2p/<peer id>) right?"
        )

    async def wait_for_topic_peers(self, peer_ids: Sequence[str], timeout: float) -> None:
        """Wait until every given peer has joined the federation topic."""
        deadline = trio.current_time() + timeout
        missing = []
        for peer in peer_ids:
            remaining = max(deadline - trio.current_time(), 0.001)
            try:
                await self._pubsub.wait_for_subscription(
                    ID.from_base58(peer), self.topic, remaining
                )
            except trio.TooSlowError:
                missing.append(peer)
        if missing:
            raise GossipError(
                f"peers {', '.join(missing)} did not join {self.topic} within {timeout:.0f}s: "
                "are they running, and do their registered addresses reach them?"
            )

    async def publish(self, announcement: Announcement) -> None:
        """Publish a signed announcement on the federation topic."""
        encoded = announcement.encode()
        self.traffic["sent"] += len(encoded)
        await self._pubsub.publish(self.topic, encoded)

    async def fetch(self, digest: str, providers: Sequence[str]) -> bytes:
        """Get blob ``digest`` from the local store or the first good provider; store it."""
        local = self.store.get(digest)
        if local is not None:
            return local
        others = [peer for peer in dict.fromkeys(providers) if peer != self.peer_id]
        data = await fetch_from_providers(
            digest,
            others,
            self._open_blob_stream,
            max_bytes=self.config.max_blob_bytes,
            timeout=self.config.fetch_timeout,
            on_forged=self._record_offence,
        )
        self.traffic["received"] += len(data)
        self.store.put(data)
        return data

    def _validate(self, forwarder: ID, message: Any) -> bool:
        origin = ID(message.from_id).to_base58()
        decision, _ = validate_announcement(message.data, origin, self.policy)
        self.decisions[decision.verdict] += 1
        if decision.verdict is Verdict.REJECT:
            log.warning("rejected announcement from %s: %s", origin, decision.reason)
            self._record_offence(str(origin))
        elif decision.verdict is Verdict.IGNORE:
            log.debug("ignored announcement from %s: %s", origin, decision.reason)
        return decision.accepted

    async def _deliver(self, data: bytes) -> None:
        self.traffic["received"] += len(data)
        try:
            announcement = Announcement.decode(data)
        except GossipError:  # validated already; only a bug could get here
            log.exception("validated announcement failed to decode")
            return
        await self._send.send(announcement)

    def _record_offence(self, peer: str) -> None:
        self.offences[peer] += 1
        if self.offences[peer] >= self.config.max_offences:
            log.warning("blacklisting peer %s after %d offences", peer, self.offences[peer])
            self._pubsub.add_to_blacklist(ID.from_base58(peer))

    async def _open_blob_stream(self, peer: str) -> ByteStream:
        stream: ByteStream = await self._host.new_stream(
            ID.from_base58(peer), [TProtocol(BLOB_PROTOCOL)]
        )
        return stream

    async def _serve_blob(self, stream: Any) -> None:
        def counted(digest: str) -> bytes | None:
            data = self.serve_lookup(digest)
            if data is not None:
                self.traffic["sent"] += len(data)
            return data

        await serve_blob(stream, counted)
