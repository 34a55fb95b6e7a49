"""One node's presence on the network: a libp2p host, the federation topic, the blob protocol.

:class:`GossipService` runs a real py-libp2p host (TCP + Noise + Yamux, Ed25519 identity),
GossipSub on one topic per federation, and two ways to move model blobs: the encrypted bulk
channel beside libp2p (``/medswarm/bulk/2.0.0``, see :mod:`gossip.bulk`) and, as the fallback,
``/medswarm/blob/1.0.0`` streams. Both carry byte ranges too (``/medswarm/blob/1.1.0`` on
streams), with which large blobs are fetched in segments from several providers at once
(:mod:`gossip.segments`). It hands validated announcements to its owner through
:attr:`GossipService.announcements` and knows nothing about training or the chain:
membership comes in as a lookup function.
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
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

from gossip.blobs import (
    BLOB_PROTOCOL,
    BlobLookup,
    BlobStore,
    ByteStream,
    OpenStream,
    fetch_from_providers,
    serve_blob,
)
from gossip.bulk import MAX_LINKS_PER_PEER, BulkFetcher, BulkServer
from gossip.bulk_codec import BULK_PROTOCOL
from gossip.errors import BlobHashMismatch, FetchFailed, GossipConfigError, GossipError
from gossip.messages import Announcement, AnnouncementKind
from gossip.muxer import honour_muxer_options, muxer_options
from gossip.ranges import BLOB_RANGE_PROTOCOL, RangeClient, RangeLookup, serve_blob_range
from gossip.segments import SegmentedFetch, SegmentPolicy, segment_timeout
from gossip.validation import (
    AnnouncementPolicy,
    SenderQuota,
    Verdict,
    judge_replay,
    validate_announcement,
)

log = logging.getLogger(__name__)

MIN_SEGMENT_BYTES = 64 * 2**10
ANNOUNCED_SIZES_KEPT = 4096  # blob sizes remembered from announcements, to plan fetches
MIN_ANNOUNCEMENTS_PER_ROUND = 5  # what one honest member may announce in a round
# GossipSub drops, without a word above debug level, messages a peer forwards (or this node
# publishes) beyond a rate per topic and second: 10 by default. A round's announcements come
# in bursts (a secure round has every member announce keys and shares at once, and each peer
# relays them all), and the SenderQuota bounds every sender per round already, so the rate
# only guards against a peer relaying a flood before validation.
MESSAGES_PER_PEER_PER_SECOND = 1000.0


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
    retain_rounds: int = 3  # blobs stored during the last this-many rounds are kept; 0: all
    bulk_channel: bool = True  # move blobs over encrypted TCP beside libp2p when peers can
    bulk_port: int = 0  # TCP port of the bulk listener on listen_host (0: any free port)
    # Blobs of more than two segments that several peers hold are fetched in segments of this
    # size, this many at once, from all of them (gossip.segments).
    segment_bytes: int = 8 * 2**20
    fetch_concurrency: int = 4
    # Blob fetches this node runs at once (more wait their turn); each gets its own
    # fetch_timeout once it runs.
    max_concurrent_fetches: int = 4
    # Announcements accepted from one sender for one round; more are rejected as flooding
    # (gossip.validation.SenderQuota).
    max_announcements_per_round: int = 16

    def __post_init__(self) -> None:
        if self.segment_bytes < MIN_SEGMENT_BYTES:
            raise GossipConfigError(
                f"network.segment_bytes = {self.segment_bytes} is too small: give at least "
                f"{MIN_SEGMENT_BYTES} (64 KiB); the default is {8 * 2**20} (8 MiB)"
            )
        if not 1 <= self.fetch_concurrency <= MAX_LINKS_PER_PEER:
            raise GossipConfigError(
                f"network.fetch_concurrency = {self.fetch_concurrency}: give 1 to "
                f"{MAX_LINKS_PER_PEER} segments in flight at once (a provider gives one fetcher "
                f"at most {MAX_LINKS_PER_PEER} bulk links); the default is 4"
            )
        if self.max_concurrent_fetches < 1:
            raise GossipConfigError(
                f"network.max_concurrent_fetches = {self.max_concurrent_fetches}: give at "
                "least 1 blob fetch at once; the default is 4"
            )
        if self.max_announcements_per_round < MIN_ANNOUNCEMENTS_PER_ROUND:
            raise GossipConfigError(
                f"network.max_announcements_per_round = {self.max_announcements_per_round} is "
                f"too small: give at least {MIN_ANNOUNCEMENTS_PER_ROUND} (an honest member "
                "announces its update, perhaps an aggregate, an attestation, an evaluation and "
                "a validation each round); the default is 16"
            )

    @property
    def segment_policy(self) -> SegmentPolicy:
        """How segmented fetches run (the segment timeout derives from ``fetch_timeout``)."""
        timeout = segment_timeout(self.fetch_timeout, self.segment_bytes, self.max_blob_bytes)
        return SegmentPolicy(self.segment_bytes, self.fetch_concurrency, timeout)


def topic_for(federation: str) -> str:
    """The GossipSub topic a federation's announcements travel on."""
    return f"/medswarm/{federation}/announce/1"


def new_identity(seed: bytes | None = None) -> KeyPair:
    """A fresh Ed25519 libp2p identity (deterministic when ``seed`` is 32 bytes)."""
    return create_new_key_pair(seed)


@dataclass
class _SharedFetch:
    """One fetch of a blob that concurrent :meth:`GossipService.obtain` calls wait for."""

    providers: frozenset[str]
    done: trio.Event = field(default_factory=trio.Event)
    failure: GossipError | None = None


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
            max_messages_per_topic_per_second=MESSAGES_PER_PEER_PER_SECOND,
        )
        self._pubsub = Pubsub(self._host, self._gossipsub)
        self._pubsub.set_topic_validator(self.topic, self._validate, False)
        self._host.set_stream_handler(TProtocol(BLOB_PROTOCOL), self._serve_blob)
        self._host.set_stream_handler(TProtocol(BLOB_RANGE_PROTOCOL), self._serve_blob_range)
        send, receive = trio.open_memory_channel[Announcement](256)
        self._send = send
        self.announcements: trio.MemoryReceiveChannel[Announcement] = receive
        # What the blob protocol answers from; the testnet swaps it to inject a lying provider.
        # What this node serves (swapped by tests and attack scenarios); blobs are served from
        # a map of their checked file, not read into memory per request.
        self.serve_lookup: BlobLookup = store.view
        self.serve_range: RangeLookup = store.read_range  # the same for byte ranges
        self.offences: Counter[str] = Counter()
        # Bytes this node put on / took off the wire for announcements and blobs ("sent",
        # "received"), and how much of that went over the bulk channel ("bulk_sent", ...).
        self.traffic: Counter[str] = Counter()
        self.decisions: Counter[Verdict] = Counter()
        # Announcements rejected and ignored, by the decision's kind ("bad-signature", ...).
        self.rejected: Counter[str] = Counter()
        self.ignored: Counter[str] = Counter()
        self._quota = SenderQuota(config.max_announcements_per_round)
        self.refused: Counter[str] = Counter()  # blob requests turned away, by reason
        # Told of each announcement a member is accountable for that was rejected (see
        # gossip.validation.Decision), and of each peer blacklisted, with the last reason.
        self.on_refused: Callable[[Announcement, str], None] | None = None
        self.on_blacklisted: Callable[[str, str], None] | None = None
        self._announced_sizes: dict[str, int] = {}  # blob hash -> size, latest announcements
        # signatures of the update announcements delivered (to tell a replay), and of those
        # passed on only as evidence of what a member signed (not delivered again)
        self._delivered_updates: dict[str, None] = {}
        self._evidence: dict[str, None] = {}
        self._nursery: trio.Nursery | None = None
        self._obtaining: dict[str, _SharedFetch] = {}  # blobs being fetched by obtain()
        self._forgers: dict[str, set[str]] = {}  # digest -> peers that sent forged bytes for it
        self._fetch_slots = trio.CapacityLimiter(config.max_concurrent_fetches)
        self._bulk: BulkServer | None = None
        self._bulk_fetcher: BulkFetcher | None = None
        if config.bulk_channel:
            self._bulk = BulkServer(
                self.peer_id,
                self._serve_lookup,
                config.fetch_timeout,
                self._count_bulk_sent,
                may_serve=self._may_serve_peer,
                lookup_range=self._serve_range_lookup,
            )
            self._host.set_stream_handler(TProtocol(BULK_PROTOCOL), self._answer_bulk)
            # A bulk port that does not accept within a quarter of the fetch budget leaves the
            # rest of it to the libp2p stream.
            self._bulk_fetcher = BulkFetcher(
                self.peer_id,
                self._opener(BULK_PROTOCOL),
                config.fetch_timeout / 4,
            )

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
            trio.open_nursery() as nursery,
        ):
            if not self._host.get_addrs():  # py-libp2p logs a failed listen and carries on
                raise GossipError(
                    f"could not listen on {listen}: the port is taken by another process or "
                    "the address is not this machine's; choose another network.listen_port "
                    "(0 picks a free one) or listen_host"
                )
            self._nursery = nursery
            if self._bulk is not None:
                host, port = self.config.listen_host, self.config.bulk_port
                await nursery.start(self._bulk.serve, host, port)
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
                if self._bulk_fetcher is not None:
                    self._bulk_fetcher.close()

    def connected_peers(self) -> list[str]:
        """The peer ids this host has open connections to."""
        connections = self._host.get_network().connections
        return sorted(str(peer.to_base58()) for peer, open_ in connections.items() if open_)

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
        """Get blob ``digest`` from the local store or the providers; store it.

        A large blob comes in segments from several providers at once, a small one whole from
        the first good provider (:func:`gossip.blobs.fetch_from_providers`). At most
        ``max_concurrent_fetches`` fetches run at once; the others wait for a slot.
        """
        local = self.store.get(digest)
        if local is not None:
            return local
        others = self._providers_to_ask(digest, providers)
        async with self._fetch_slots:
            data = await fetch_from_providers(
                digest,
                others,
                self._opener(BLOB_PROTOCOL),
                max_bytes=self.config.max_blob_bytes,
                timeout=self.config.fetch_timeout,
                on_forged=lambda peer: self._record_forgery(peer, digest),
                fast_path=self._fetch_bulk if self._bulk_fetcher is not None else None,
                segmented=SegmentedFetch(
                    self._ranges, self.store, self.config.segment_policy, self._announced_sizes.get
                ),
            )
        self.traffic["received"] += len(data)
        self.store.put_verified(digest, data)  # fetch_from_providers checked the hash
        return data

    async def obtain(self, digest: str, providers: Sequence[str]) -> None:
        """Make sure the store holds blob ``digest``, fetching it if needed (without reading
        a blob the store already has). Concurrent calls for one blob share one fetch. If it
        fails, a caller that waited on it fails the same way when it has no provider that
        fetch did not ask (a stalled provider costs them all one timeout, not one each);
        otherwise it tries its own providers, those first."""
        while not self.store.has(digest):
            pending = self._obtaining.get(digest)
            if pending is None:
                shared = _SharedFetch(frozenset(providers))
                self._obtaining[digest] = shared
                try:
                    if not await self._obtain_over_bulk(digest, providers):
                        await self.fetch(digest, providers)
                except GossipError as exc:
                    shared.failure = exc
                    raise
                finally:
                    del self._obtaining[digest]
                    shared.done.set()
                return
            await pending.done.wait()
            if pending.failure is not None:
                if set(providers) <= pending.providers:
                    raise FetchFailed(f"{pending.failure} (a fetch this one waited for)")
                # Those the failed fetch did not ask come first.
                providers = sorted(providers, key=lambda p: p in pending.providers)

    async def _obtain_over_bulk(self, digest: str, providers: Sequence[str]) -> bool:
        """Store blob ``digest`` from the one provider given over the bulk channel, written
        from the receive buffer without a copy of the blob in memory. ``False`` leaves the
        fetch to :meth:`fetch` (several providers, no channel, or it failed for a reason that
        another way of fetching might not meet)."""
        others = [p for p in dict.fromkeys(providers) if p != self.peer_id]
        if self._bulk_fetcher is None or not self.store.on_disk or len(others) != 1:
            return False
        provider = others[0]
        if provider in self._forgers.get(digest, ()):
            return False  # fetch() says why
        if self.is_blacklisted(provider) or not self.is_connected(provider):
            return False

        def keep(data: memoryview) -> None:
            self.store.put_verified(digest, data)

        async with self._fetch_slots:
            try:
                with trio.fail_after(self.config.fetch_timeout):
                    size = await self._bulk_fetcher.fetch_into(
                        provider, digest, self.config.max_blob_bytes, keep
                    )
            except BlobHashMismatch as exc:
                log.warning("provider %s sent a forged blob: %s", provider, exc)
                self._record_forgery(provider, digest)
                raise FetchFailed(
                    f"could not fetch blob {digest}: {provider}: hash mismatch"
                ) from exc
            except trio.TooSlowError as exc:
                # A stopped or stuck provider: asking it again over a libp2p stream would
                # spend the fetch budget a second time.
                raise FetchFailed(
                    f"could not fetch blob {digest}: {provider}: no answer within "
                    f"{self.config.fetch_timeout:.1f}s"
                ) from exc
            except GossipError as exc:
                log.info(
                    "bulk fetch of %s from %s failed (%r); trying again", digest, provider, exc
                )
                return False
        if size is None:
            return False
        self.traffic["received"] += size
        self.traffic["bulk_received"] += size
        return True

    def _validate(self, forwarder: ID, message: Any) -> bool:
        origin = ID(message.from_id).to_base58()
        decision, announcement = validate_announcement(message.data, origin, self.policy)
        if announcement is not None:
            seen = announcement.signature in self._delivered_updates
            decision = judge_replay(announcement, decision, origin, self.policy, seen)
        if announcement is not None and (decision.accepted or decision.accountable):
            counted = self._quota.admit(announcement, self.policy.current_round())
            if not counted.accepted:
                decision = counted
        self.decisions[decision.verdict] += 1
        if decision.verdict is Verdict.REJECT:
            self.rejected[decision.kind or "other"] += 1
            log.warning("rejected announcement from %s: %s", origin, decision.reason)
            if decision.accountable and announcement is not None:
                # The member answers for it on chain, through its cluster's aggregator; its
                # peer is cut off once the consortium excludes it (or if it floods). Passed
                # on as evidence, so that every member holds what the member signed.
                if self.on_refused is not None:
                    self.on_refused(announcement, decision.reason)
                _remember(self._evidence, announcement.signature)
                return True
            self._record_offence(str(origin), decision.reason)
        elif decision.verdict is Verdict.IGNORE:
            self.ignored[decision.kind or "other"] += 1
            log.debug("ignored announcement from %s: %s", origin, decision.reason)
        return decision.accepted

    async def _deliver(self, data: bytes) -> None:
        self.traffic["received"] += len(data)
        try:
            announcement = Announcement.decode(data)
        except GossipError:  # validated already; only a bug could get here
            log.exception("validated announcement failed to decode")
            return
        if announcement.signature in self._evidence:
            return  # handed over through on_refused when it was validated
        if announcement.kind is AnnouncementKind.UPDATE:
            _remember(self._delivered_updates, announcement.signature)
        if announcement.size:  # an attestation names a hash, not a blob's size
            if len(self._announced_sizes) >= ANNOUNCED_SIZES_KEPT:
                del self._announced_sizes[next(iter(self._announced_sizes))]  # the oldest
            self._announced_sizes[announcement.blob_hash] = announcement.size
        await self._send.send(announcement)

    def _providers_to_ask(self, digest: str, providers: Sequence[str]) -> list[str]:
        """``providers`` without this node, blacklisted peers and peers that have sent forged
        bytes for ``digest`` before; raises :class:`FetchFailed` if only such forgers remain
        (a forger is asked for a blob once, and its one offence for it is counted once)."""
        candidates = [p for p in dict.fromkeys(providers) if p != self.peer_id]
        forgers = self._forgers.get(digest, set())
        others = [p for p in candidates if p not in forgers and not self.is_blacklisted(p)]
        if not others and any(p in forgers for p in candidates):
            named = "; ".join(f"{p}: hash mismatch (earlier)" for p in candidates if p in forgers)
            raise FetchFailed(f"could not fetch blob {digest}: {named}")
        return others

    def served_forged(self, digest: str, peer: str) -> bool:
        """Whether ``peer`` has sent this node bytes for ``digest`` that hash to something
        else."""
        return peer in self._forgers.get(digest, set())

    def _record_forgery(self, peer: str, digest: str) -> None:
        """``peer`` sent bytes for ``digest`` that hash to something else: an offence."""
        if len(self._forgers) >= ANNOUNCED_SIZES_KEPT:
            del self._forgers[next(iter(self._forgers))]  # the oldest
        self._forgers.setdefault(digest, set()).add(peer)
        self._record_offence(peer, f"sent bytes for blob {digest} that hash to something else")

    def _record_offence(self, peer: str, reason: str) -> None:
        self.offences[peer] += 1
        if self.offences[peer] == self.config.max_offences and self.on_blacklisted:
            self.on_blacklisted(peer, reason)
        if self.offences[peer] >= self.config.max_offences:
            log.warning(
                "blacklisting and disconnecting peer %s after %d offences (the last: %s)",
                peer,
                self.offences[peer],
                reason,
            )
            # Pubsub.add_to_blacklist also starts a teardown that deletes the peer's entry
            # after awaiting a stream reset, by which time the dead-peer handler may have
            # deleted it: a KeyError that takes the whole host down (py-libp2p 0.8.1). The
            # blacklist set alone drops the peer's messages and refuses it; disconnecting
            # it (below) lets the dead-peer handler clean up once.
            self._pubsub.blacklisted_peers.add(ID.from_base58(peer))
            if self._nursery is not None:
                self._nursery.start_soon(self._disconnect, peer)

    def is_blacklisted(self, peer: str) -> bool:
        """Whether ``peer`` committed ``max_offences`` offences (it is then cut off)."""
        return self.offences[peer] >= self.config.max_offences

    async def _disconnect(self, peer: str) -> None:
        try:
            await self._host.disconnect(ID.from_base58(peer))
        except Exception as exc:  # already gone, or closing: nothing left to cut
            log.debug("disconnecting %s: %r", peer, exc)

    def _may_serve(self, stream: Any) -> bool:
        """Whether the peer at the other end of ``stream`` may have blobs from this node."""
        try:
            peer = str(stream.muxed_conn.peer_id.to_base58())
        except AttributeError:
            return False
        return self._may_serve_peer(peer)

    def _may_serve_peer(self, peer: str) -> bool:
        """Whether ``peer`` may have blobs from this node (asked again for each blob)."""
        if self.is_blacklisted(peer):
            return False
        if self.policy.is_member_peer is None or self.policy.is_member_peer(peer):
            return True
        log.warning("refusing blobs to %s: not a registered member", peer)
        self.refused["non-member"] += 1
        if self.policy.on_unknown_sender is not None:
            self.policy.on_unknown_sender(peer)  # it may have registered since the last read
        return False

    async def _answer_bulk(self, stream: Any) -> None:
        assert self._bulk is not None
        if self._may_serve(stream):
            await self._bulk.answer(stream)
        else:
            with contextlib.suppress(Exception):
                await stream.reset()

    def _opener(self, protocol: str) -> OpenStream:
        """A function opening a stream of ``protocol`` to a peer given by its id."""

        async def open_stream(peer: str) -> ByteStream:
            stream: ByteStream = await self._host.new_stream(
                ID.from_base58(peer), [TProtocol(protocol)]
            )
            return stream

        return open_stream

    @property
    def _ranges(self) -> RangeClient:
        fast = self._fetch_bulk_range if self._bulk_fetcher is not None else None
        return RangeClient(self._opener(BLOB_RANGE_PROTOCOL), fast)

    async def _fetch_bulk_range(
        self, peer: str, digest: str, length: int, offset: int, out: memoryview
    ) -> bool:
        assert self._bulk_fetcher is not None
        if not self.is_connected(peer):
            return False  # let the stream path dial, once, and report what fails
        max_bytes = self.config.max_blob_bytes
        if not await self._bulk_fetcher.fetch_range(peer, digest, length, offset, out, max_bytes):
            return False
        self.traffic["bulk_received"] += len(out)
        return True

    async def _fetch_bulk(self, peer: str, digest: str, max_bytes: int) -> bytes | None:
        assert self._bulk_fetcher is not None
        if not self.is_connected(peer):
            return None  # let the stream path dial, once, and report what fails
        data = await self._bulk_fetcher.fetch(peer, digest, max_bytes)
        if data is not None:
            self.traffic["bulk_received"] += len(data)
        return data

    def _serve_lookup(self, digest: str) -> bytes | memoryview | None:
        return self.serve_lookup(digest)  # late-bound: serve_lookup may be swapped

    def _serve_range_lookup(self, digest: str, offset: int, count: int) -> tuple[int, bytes] | None:
        return self.serve_range(digest, offset, count)  # late-bound, as serve_lookup

    def _count_bulk_sent(self, size: int) -> None:
        self.traffic["sent"] += size
        self.traffic["bulk_sent"] += size

    async def _serve_blob(self, stream: Any) -> None:
        if not self._may_serve(stream):
            with contextlib.suppress(Exception):
                await stream.reset()
            return

        def counted(digest: str) -> bytes | memoryview | None:
            data = self.serve_lookup(digest)
            if data is not None:
                self.traffic["sent"] += len(data)
            return data

        await serve_blob(stream, counted)

    async def _serve_blob_range(self, stream: Any) -> None:
        if not self._may_serve(stream):
            with contextlib.suppress(Exception):
                await stream.reset()
            return

        def counted(digest: str, offset: int, count: int) -> tuple[int, bytes] | None:
            found = self.serve_range(digest, offset, count)
            if found is not None:
                self.traffic["sent"] += len(found[1])
            return found

        await serve_blob_range(stream, counted)


def _remember(kept: dict[str, None], key: str) -> None:
    """Add ``key`` to a bounded, insertion-ordered set, forgetting the oldest beyond
    :data:`ANNOUNCED_SIZES_KEPT`."""
    kept[key] = None
    while len(kept) > ANNOUNCED_SIZES_KEPT:
        del kept[next(iter(kept))]
