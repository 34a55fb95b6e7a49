"""The bulk channel: blobs over encrypted TCP links beside libp2p, keyed over libp2p.

py-libp2p's Yamux streams move 70-80 MB/s, CPU-bound in Python, and every small message on
them (stream negotiation, window updates) costs a Noise record and several Python calls. A
plain TCP connection carrying ChaCha20-Poly1305 frames, sealed and opened in worker threads
while the event loop moves the neighbouring frames, is limited by the cipher instead.

A fetcher agrees a *link* with a provider once (a handshake on a ``/medswarm/bulk/2.0.0``
libp2p stream, then a TCP connection that proves the agreed keys) and then sends its blob
requests over that link, one after another; it keeps a few idle links per provider for the
next fetch. A request names a whole blob or a byte range of one (a segment of a fetch from
several providers, :mod:`gossip.segments`). :class:`BulkServer` is the provider side (the
handshake handler, a TCP listener and the request loop of each link), :class:`BulkFetcher`
the fetcher side. Wire formats and keys are in :mod:`gossip.bulk_codec`, the frame
pipelines in :mod:`gossip.bulk_transfer`.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import trio

from gossip.blobs import BlobLookup, ByteStream, read_exactly
from gossip.bulk_codec import (
    ANSWER_BYTES,
    BULK_PROTOCOL,
    EVERYTHING,
    HELLO_BYTES,
    LINK_REQUEST_BYTES,
    REQUEST_BYTES,
    SESSION_ID_BYTES,
    BlobRequest,
    BulkStatus,
    ByteRange,
    Ephemeral,
    LinkAnswer,
    LinkRequest,
    Sealer,
    SessionKeys,
    Transcript,
    derive_session_keys,
    hello_is_valid,
    open_answer,
    open_request,
    seal_answer,
    seal_hello,
    seal_request,
)
from gossip.bulk_transfer import (
    BufferPool,
    Socket,
    hash_and_copy,
    receive_blob,
    recv_exactly_into,
    send_all,
    send_blob,
)
from gossip.errors import (
    BlobHashMismatch,
    BlobLengthMismatch,
    BlobNotFound,
    BlobTooLarge,
    BulkChannelError,
    FetchFailed,
    FrameRejected,
    GossipError,
    MalformedMessage,
    SessionRefused,
)
from gossip.ranges import RangeLookup

log = logging.getLogger(__name__)

_T = TypeVar("_T")

FRAME_BYTES = 2 * 2**20  # plaintext per frame a provider sends (2 MiB measured best of 0.5-4)
MAX_PENDING_SESSIONS = 16  # handshakes whose link connection has not arrived yet
MAX_CONNECTIONS = 64  # links a provider serves at once
MAX_LINKS_PER_PEER = 8  # links one fetcher may hold open to a provider
LINK_IDLE_SECONDS = 30.0  # a provider closes a link that has carried no request this long
MAX_IDLE_LINKS = 2  # idle links a fetcher keeps per provider
FRAME_POOL_BYTES = 24 * 2**20  # frame buffers each side keeps for the next frames
BLOB_POOL_BYTES = 32 * 2**20  # receive buffers a fetcher keeps (always at least one)


@dataclass(frozen=True)
class PendingSession:
    """A link a provider agreed to: its keys, with whom, until when it must be connected."""

    keys: SessionKeys
    fetcher: str
    expires: float


class SessionTable:
    """Links agreed in a handshake and not connected yet; each can be claimed once, briefly."""

    def __init__(
        self,
        ttl: float,
        capacity: int = MAX_PENDING_SESSIONS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl
        self._capacity = capacity
        self._clock = clock
        self._pending: dict[bytes, PendingSession] = {}

    def open(self, keys: SessionKeys, fetcher: str) -> bool:
        """Remember a new session; ``False`` when too many are already waiting."""
        now = self._clock()
        self._pending = {key: s for key, s in self._pending.items() if s.expires > now}
        if len(self._pending) >= self._capacity:
            return False
        self._pending[keys.session_id] = PendingSession(keys, fetcher, now + self._ttl)
        return True

    def claim(self, hello: bytes) -> PendingSession:
        """Take the session a hello names out of the table, or raise :class:`SessionRefused`."""
        session = self._pending.pop(hello[:SESSION_ID_BYTES], None)
        if session is None:
            raise SessionRefused("unknown or already used session")
        if self._clock() > session.expires:
            raise SessionRefused(f"session of {session.fetcher} expired")
        if not hello_is_valid(session.keys, hello):
            raise SessionRefused(f"wrong token for the session of {session.fetcher}")
        return session


class BulkServer:
    """The provider side: agrees links in handshakes, then answers the requests on each link.

    ``lookup`` and ``lookup_range`` decide what is served (as for the stream protocols; without
    ``lookup_range`` range requests find nothing) and ``may_serve`` whether a peer may still
    have blobs (asked again for every request, so a peer cut off since its
    handshake gets nothing more); ``timeout`` bounds the handshake, connecting a link and
    each answer; a link idle for ``idle_timeout`` is closed; ``on_sent`` is told the size of
    every blob or range delivered.
    """

    def __init__(
        self,
        local_peer: str,
        lookup: BlobLookup,
        timeout: float,
        on_sent: Callable[[int], None],
        frame_bytes: int = FRAME_BYTES,
        may_serve: Callable[[str], bool] = lambda peer: True,
        idle_timeout: float = LINK_IDLE_SECONDS,
        lookup_range: RangeLookup | None = None,
    ) -> None:
        self._local_peer = local_peer
        self._lookup = lookup
        self._lookup_range = lookup_range
        self._timeout = timeout
        self._on_sent = on_sent
        self._frame_bytes = frame_bytes
        self._may_serve = may_serve
        self._idle_timeout = idle_timeout
        self._sessions = SessionTable(ttl=timeout)
        self._frames = BufferPool(FRAME_POOL_BYTES)
        self._connections = 0
        self._links: Counter[str] = Counter()  # open links by fetcher
        self.port: int | None = None

    async def serve(
        self, host: str, port: int = 0, *, task_status: Any = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Accept bulk connections on ``host:port`` until cancelled; ``started`` gets the port."""
        listener = trio.socket.socket(_family(host), trio.socket.SOCK_STREAM)
        with listener:
            listener.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_REUSEADDR, 1)
            try:
                await listener.bind((host, port))
            except OSError as exc:
                raise GossipError(
                    f"cannot listen for bulk connections on {host}:{port} ({exc}): set "
                    "network.bulk_port to a free port, or 0 for any"
                ) from exc
            listener.listen()
            self.port = int(listener.getsockname()[1])
            log.info("bulk channel listening on %s:%d", host, self.port)
            task_status.started(self.port)
            try:
                async with trio.open_nursery() as nursery:
                    while True:
                        await self._accept(listener, nursery)
            finally:
                self.port = None

    async def _accept(self, listener: Socket, nursery: trio.Nursery) -> None:
        try:
            sock, address = await listener.accept()
        except OSError as exc:  # out of descriptors, aborted connection, ...
            log.warning("bulk listener could not accept: %r", exc)
            await trio.sleep(0.1)
            return
        if self._connections >= MAX_CONNECTIONS:
            log.warning("bulk connection from %s refused: too many at once", address)
            sock.close()
            return
        self._connections += 1
        nursery.start_soon(self._serve_connection, sock, address)

    def open_links(self, fetcher: str) -> int:
        """How many links ``fetcher`` holds open to this provider now."""
        return self._links[fetcher]

    async def answer(self, stream: Any) -> None:
        """Answer one link handshake on a ``/medswarm/bulk/2.0.0`` stream. Never raises."""
        fetcher = "unknown peer"
        try:
            fetcher = stream.muxed_conn.peer_id.to_base58()
            with trio.fail_after(self._timeout):
                request = LinkRequest.decode(await read_exactly(stream, LINK_REQUEST_BYTES))
                await stream.write(self._open_session(fetcher, request).encode())
                await stream.close()
        except Exception as exc:  # an escaping exception would take the whole host down
            log.warning("bulk handshake with %s failed: %r", fetcher, exc)
            with contextlib.suppress(Exception):
                await stream.reset()

    def _open_session(self, fetcher: str, request: LinkRequest) -> LinkAnswer:
        mine = Ephemeral()
        transcript = Transcript(
            fetcher_peer=fetcher,
            provider_peer=self._local_peer,
            fetcher_public_key=request.public_key,
            fetcher_nonce=request.nonce,
            provider_public_key=mine.public_key,
            provider_nonce=mine.nonce,
        )
        keys = derive_session_keys(mine.shared_secret(request.public_key), transcript)
        if self._links[fetcher] >= MAX_LINKS_PER_PEER:
            log.warning("bulk link refused to %s: it holds %d already", fetcher, MAX_LINKS_PER_PEER)
            return LinkAnswer(accepted=False)
        if self.port is None or not self._sessions.open(keys, fetcher):
            return LinkAnswer(accepted=False)
        return LinkAnswer(True, mine.public_key, mine.nonce, self.port)

    async def _serve_connection(self, sock: Socket, address: Any) -> None:
        """Answer the requests of one link until it closes or idles. Never raises."""
        fetcher = None
        try:
            with sock:
                sock.setsockopt(trio.socket.IPPROTO_TCP, trio.socket.TCP_NODELAY, 1)
                with trio.fail_after(self._timeout):
                    hello = bytearray(HELLO_BYTES)
                    await recv_exactly_into(sock, memoryview(hello))
                    session = self._sessions.claim(bytes(hello))
                fetcher = session.fetcher
                self._links[fetcher] += 1
                receive = Sealer(session.keys.fetcher_to_provider, next_index=1)  # 0: hello
                send = Sealer(session.keys.provider_to_fetcher)
                while (sealed := await self._next_request(sock)) is not None:
                    request = open_request(receive, sealed)
                    with trio.fail_after(self._timeout):
                        await self._answer_request(sock, send, session.fetcher, request)
        except Exception as exc:
            log.warning("bulk link from %s closed: %r", address, exc)
        finally:
            self._connections -= 1
            if fetcher is not None:
                self._links[fetcher] -= 1

    async def _next_request(self, sock: Socket) -> bytes | None:
        """The next sealed request, or ``None`` when the fetcher closed the link or idled."""
        request = bytearray(REQUEST_BYTES)
        with trio.move_on_after(self._idle_timeout):
            first = await sock.recv_into(request)
            if first == 0:
                return None
            await recv_exactly_into(sock, memoryview(request)[first:])
            return bytes(request)
        log.debug("closing a bulk link idle for %.0fs", self._idle_timeout)
        return None

    async def _answer_request(
        self, sock: Socket, send: Sealer, fetcher: str, request: BlobRequest
    ) -> None:
        digest = request.digest
        if not self._may_serve(fetcher):
            await send_all(sock, memoryview(seal_answer(send, digest, BulkStatus.REFUSED, 0)))
            raise SessionRefused(f"{fetcher} may no longer have blobs from this node")
        length, data = self._find(request)
        if data is None:
            status = BulkStatus.NOT_FOUND
        elif length > request.max_bytes:
            status = BulkStatus.TOO_LARGE
        elif request.span.offset > length:
            status = BulkStatus.OUTSIDE
        else:
            status = BulkStatus.FOUND
        await send_all(sock, memoryview(seal_answer(send, digest, status, length)))
        if status is not BulkStatus.FOUND:
            return
        assert data is not None
        frames = await send_blob(sock, send.frame_cipher(), data, self._frame_bytes, self._frames)
        send.used(frames)
        self._on_sent(len(data))
        log.debug("sent %d bytes to %s over the bulk channel", len(data), fetcher)

    def _find(self, request: BlobRequest) -> tuple[int, bytes | memoryview | None]:
        """The blob's length and the bytes the request asks for (``None``: not held)."""
        if request.span == EVERYTHING:
            data = self._lookup(request.digest.hex())
            return (0, None) if data is None else (len(data), data)
        span = request.span
        found = None
        if self._lookup_range is not None:
            found = self._lookup_range(request.digest.hex(), span.offset, span.count)
        if found is None:
            return 0, None
        length, data = found
        served = span.served(length)
        if len(data) != served.count:
            raise ValueError(f"range lookup gave {len(data)} bytes, not {served.count}")
        return length, data


OpenStream = Callable[[str], Awaitable[ByteStream]]


class _StaleLink(Exception):
    """A kept link was closed by the provider before it answered; a new one may work."""


@dataclass
class _Link:
    """The fetcher's end of a link to one provider."""

    sock: Socket
    send: Sealer
    receive: Sealer
    idle_since: float = 0.0


class BulkFetcher:
    """The fetcher side: asks providers for blobs over links it keeps for the next fetch.

    ``open_stream`` opens a ``/medswarm/bulk/2.0.0`` stream to a peer for a handshake; a bulk
    port that does not accept within ``connect_timeout`` counts as unavailable. Links idle
    for ``idle_timeout`` (less than the provider's) are not used again. The fetcher keeps
    receive buffers (up to :data:`BLOB_POOL_BYTES`, at least one) for the next fetches:
    fresh memory costs the kernel about as much to hand out as the cipher takes to fill it.
    """

    def __init__(
        self,
        local_peer: str,
        open_stream: OpenStream,
        connect_timeout: float,
        idle_timeout: float = LINK_IDLE_SECONDS / 2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._local_peer = local_peer
        self._open_stream = open_stream
        self._connect_timeout = connect_timeout
        self._idle_timeout = idle_timeout
        self._clock = clock
        self._idle: dict[str, list[_Link]] = {}
        self._frames = BufferPool(FRAME_POOL_BYTES)
        self._blobs = BufferPool(BLOB_POOL_BYTES)

    async def fetch(self, provider: str, digest: str, max_bytes: int) -> bytes | None:
        """Blob ``digest`` from ``provider``, verified; ``None`` if the channel is unavailable.

        Raises what the stream protocol raises for a missing, oversized or forged blob. A peer
        without the protocol, an unreachable bulk port or a broken link is logged and gives
        ``None``, so the caller can use the libp2p stream instead.
        """
        request = BlobRequest(bytes.fromhex(digest), max_bytes)

        async def receive(link: _Link, length: int) -> bytes:
            async with self._received(link, length) as out:
                received, data = await trio.to_thread.run_sync(hash_and_copy, out)
            _check_digest(received, digest)
            return data

        return await self._on_a_link(provider, request, receive)

    async def fetch_into(
        self, provider: str, digest: str, max_bytes: int, keep: Callable[[memoryview], object]
    ) -> int | None:
        """As :meth:`fetch`, but the verified bytes go to ``keep`` (called in a worker thread,
        e.g. to write them to the store) straight from the receive buffer, without a copy in
        memory; their count, or ``None`` if the channel is unavailable."""
        request = BlobRequest(bytes.fromhex(digest), max_bytes)

        async def receive(link: _Link, length: int) -> int:
            async with self._received(link, length) as out:
                await self._check_hash(out, digest)
                await trio.to_thread.run_sync(keep, out)
            return length

        return await self._on_a_link(provider, request, receive)

    async def fetch_range(
        self, provider: str, digest: str, length: int, offset: int, out: memoryview, max_bytes: int
    ) -> bool:
        """Bytes ``offset`` .. ``offset + len(out)`` of blob ``digest`` (``length`` bytes long)
        from ``provider``, into ``out``; ``False`` if the channel is unavailable.

        Raises what the range stream protocol raises for a missing blob or another length; the
        bytes are authenticated as the provider's but not verified (only the whole blob can be).
        """
        request = BlobRequest(bytes.fromhex(digest), max_bytes, ByteRange(offset, len(out)))

        async def receive(link: _Link, claimed: int) -> bool:
            if claimed != length:
                raise BlobLengthMismatch(
                    f"provider says blob {digest} has {claimed} bytes, not {length}", claimed
                )
            link.receive.used(
                await receive_blob(link.sock, link.receive.frame_cipher(), out, self._frames)
            )
            return True

        return await self._on_a_link(provider, request, receive) is True

    async def _on_a_link(
        self,
        provider: str,
        request: BlobRequest,
        receive: Callable[[_Link, int], Awaitable[_T]],
    ) -> _T | None:
        """Send ``request`` on a kept link to ``provider`` or a new one; ``receive`` takes the
        found bytes off the link. ``None`` when the channel is unavailable."""
        kept = self._kept_link(provider)
        if kept is not None:
            try:
                return await self._request(provider, kept, request, receive, reused=True)
            except _StaleLink as exc:
                log.debug("kept bulk link to %s was closed (%r); opening another", provider, exc)
            except (BulkChannelError, FetchFailed, MalformedMessage, OSError) as exc:
                log.warning("bulk link to %s failed (%r); using a libp2p stream", provider, exc)
                return None
        try:
            stream = await self._open_stream(provider)
        except Exception as exc:
            log.debug("%s does not speak %s (%r)", provider, BULK_PROTOCOL, exc)
            return None
        try:
            link = await self._open_link(stream, provider)
            return await self._request(provider, link, request, receive, reused=False)
        except (_StaleLink, BulkChannelError, FetchFailed, MalformedMessage, OSError) as exc:
            log.warning("bulk channel to %s failed (%r); using a libp2p stream", provider, exc)
            return None

    def close(self) -> None:
        """Close every kept link."""
        for links in self._idle.values():
            for link in links:
                link.sock.close()
        self._idle.clear()

    def _kept_link(self, provider: str) -> _Link | None:
        links = self._idle.get(provider, [])
        while links:
            link = links.pop()
            if self._clock() - link.idle_since < self._idle_timeout:
                return link
            link.sock.close()
        return None

    def _keep(self, provider: str, link: _Link) -> None:
        links = self._idle.setdefault(provider, [])
        if len(links) >= MAX_IDLE_LINKS:
            link.sock.close()
            return
        link.idle_since = self._clock()
        links.append(link)

    async def _open_link(self, stream: Any, provider: str) -> _Link:
        try:
            mine = Ephemeral()
            try:
                await stream.write(LinkRequest(mine.public_key, mine.nonce).encode())
            except Exception as exc:  # libp2p signals a reset or closed stream with its own
                raise FetchFailed(f"could not ask for a bulk link: {exc!r}") from exc
            status = (await read_exactly(stream, 1))[0]
            answer = LinkAnswer.decode(
                status, await read_exactly(stream, LinkAnswer.body_bytes(status))
            )
            address = stream.get_remote_address()
        finally:
            with contextlib.suppress(Exception):
                await stream.close()
        if not answer.accepted:
            raise BulkChannelError("provider refused a bulk link (busy or not listening)")
        if not address:
            raise BulkChannelError("the libp2p connection has no remote IP address")
        transcript = Transcript(
            fetcher_peer=self._local_peer,
            provider_peer=provider,
            fetcher_public_key=mine.public_key,
            fetcher_nonce=mine.nonce,
            provider_public_key=answer.public_key,
            provider_nonce=answer.nonce,
        )
        keys = derive_session_keys(mine.shared_secret(answer.public_key), transcript)
        sock = await _connect(address[0], answer.port, self._connect_timeout)
        try:
            await send_all(sock, memoryview(seal_hello(keys)))
        except OSError:
            sock.close()
            raise
        return _Link(
            sock, Sealer(keys.fetcher_to_provider, next_index=1), Sealer(keys.provider_to_fetcher)
        )

    async def _request(
        self,
        provider: str,
        link: _Link,
        request: BlobRequest,
        receive: Callable[[_Link, int], Awaitable[_T]],
        reused: bool,
    ) -> _T:
        """Send one request on ``link``; keep the link for later if it is still in step."""
        digest = request.digest.hex()
        in_step = False
        try:
            sealed_answer = bytearray(ANSWER_BYTES)
            try:
                await send_all(link.sock, memoryview(seal_request(link.send, request)))
                await recv_exactly_into(link.sock, memoryview(sealed_answer))
            except (OSError, FrameRejected) as exc:
                if reused:
                    raise _StaleLink(repr(exc)) from exc
                raise
            status, length = open_answer(link.receive, request.digest, bytes(sealed_answer))
            if status is BulkStatus.NOT_FOUND:
                in_step = True
                raise BlobNotFound(f"provider does not have blob {digest}")
            if status is BulkStatus.OUTSIDE:
                in_step = True
                raise BlobLengthMismatch(
                    f"provider says blob {digest} ends at byte {length}, before the range "
                    f"asked for (from {request.span.offset})",
                    length,
                )
            if status is BulkStatus.TOO_LARGE or length > request.max_bytes:
                in_step = status is BulkStatus.TOO_LARGE
                raise BlobTooLarge(
                    f"provider offers {length} bytes for {digest}, limit is {request.max_bytes}"
                )
            if status is BulkStatus.REFUSED:
                raise BulkChannelError("provider refused the blob (no longer a member to it?)")
            received = await receive(link, length)
            in_step = True
            return received
        finally:
            if in_step:
                self._keep(provider, link)
            else:
                link.sock.close()

    @contextlib.asynccontextmanager
    async def _received(self, link: _Link, length: int) -> AsyncIterator[memoryview]:
        """A blob of ``length`` bytes received from ``link`` into a kept buffer, lent for the
        ``with`` block."""
        buffer = self._blobs.take(length)
        try:
            out = memoryview(buffer)[:length]
            frames = await receive_blob(link.sock, link.receive.frame_cipher(), out, self._frames)
            link.receive.used(frames)
            yield out
        finally:
            self._blobs.give_back(buffer)

    @staticmethod
    async def _check_hash(data: memoryview, digest: str) -> None:
        received = await trio.to_thread.run_sync(lambda: hashlib.sha256(data).hexdigest())
        _check_digest(received, digest)


def _check_digest(received: str, digest: str) -> None:
    if received != digest:
        raise BlobHashMismatch(
            f"bytes received for blob {digest} hash to {received}: the provider sent corrupt "
            "or forged data"
        )


async def _connect(host: str, port: int, timeout: float) -> Socket:
    sock = trio.socket.socket(_family(host), trio.socket.SOCK_STREAM)
    try:
        sock.setsockopt(trio.socket.IPPROTO_TCP, trio.socket.TCP_NODELAY, 1)
        with trio.fail_after(timeout):
            await sock.connect((host, port))
    except (OSError, trio.TooSlowError) as exc:
        sock.close()
        raise BulkChannelError(f"could not connect to bulk port {host}:{port}: {exc!r}") from exc
    return sock


def _family(host: str) -> int:
    return trio.socket.AF_INET6 if ":" in host else trio.socket.AF_INET
