"""The bulk channel: blobs over encrypted TCP beside libp2p, with keys agreed over libp2p.

py-libp2p's Yamux streams move 70-80 MB/s, CPU-bound in Python. A plain TCP socket carrying
ChaCha20-Poly1305 frames, sealed and opened in worker threads while the event loop moves the
neighbouring frames, is limited by the cipher instead. :class:`BulkServer` is the provider
side (the ``/medswarm/bulk/1.0.0`` handshake handler for whole blobs, ``/medswarm/bulk/1.1.0``
for byte ranges, and a TCP listener), :class:`BulkFetcher` the fetcher side. Wire formats and
keys are in :mod:`gossip.bulk_codec`, the frame pipelines in :mod:`gossip.bulk_transfer`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import trio

from gossip.blobs import ByteStream, read_exactly
from gossip.bulk_codec import (
    BULK_PROTOCOL,
    HELLO_BYTES,
    RANGE_REQUEST_BYTES,
    REQUEST_BYTES,
    SESSION_ID_BYTES,
    BulkAnswer,
    BulkRequest,
    BulkStatus,
    ByteRange,
    Ephemeral,
    FrameCipher,
    SessionKeys,
    Transcript,
    derive_session_keys,
    hello_is_valid,
    seal_hello,
    served_range,
)
from gossip.bulk_transfer import (
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
    GossipError,
    MalformedMessage,
    SessionRefused,
)
from gossip.ranges import RangeLookup

log = logging.getLogger(__name__)

FRAME_BYTES = 2 * 2**20  # plaintext per frame a provider sends (2 MiB measured best of 0.5-4)
MAX_PENDING_SESSIONS = 16  # handshakes whose bulk connection has not arrived yet
MAX_CONNECTIONS = 32  # bulk connections a provider serves at once


@dataclass(frozen=True)
class PendingSession:
    """A session a provider agreed to: what it will send, to whom, until when."""

    keys: SessionKeys
    digest: bytes
    data: bytes
    fetcher: str
    expires: float


class SessionTable:
    """Sessions agreed in a handshake and not used yet; each can be claimed once, briefly."""

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

    def open(self, keys: SessionKeys, digest: bytes, data: bytes, fetcher: str) -> bool:
        """Remember a new session; ``False`` when too many are already waiting."""
        now = self._clock()
        self._pending = {key: s for key, s in self._pending.items() if s.expires > now}
        if len(self._pending) >= self._capacity:
            return False
        expires = now + self._ttl
        self._pending[keys.session_id] = PendingSession(keys, digest, data, fetcher, expires)
        return True

    def claim(self, hello: bytes) -> PendingSession:
        """Take the session a hello names out of the table, or raise :class:`SessionRefused`."""
        session = self._pending.pop(hello[:SESSION_ID_BYTES], None)
        if session is None:
            raise SessionRefused("unknown or already used session")
        if self._clock() > session.expires:
            raise SessionRefused(f"session of {session.fetcher} expired")
        if not hello_is_valid(session.keys, session.digest, hello):
            raise SessionRefused(f"wrong token for the session of {session.fetcher}")
        return session


class BulkServer:
    """The provider side: answers handshakes, then streams each blob to whoever proves its session.

    ``lookup`` and ``lookup_range`` decide what is served (as for the stream protocols; without
    ``lookup_range`` range requests find nothing); ``timeout`` bounds a session's life and each
    connection; ``on_sent`` is told the size of every blob or range delivered.
    """

    def __init__(
        self,
        local_peer: str,
        lookup: Callable[[str], bytes | None],
        timeout: float,
        on_sent: Callable[[int], None],
        frame_bytes: int = FRAME_BYTES,
        lookup_range: RangeLookup | None = None,
    ) -> None:
        self._local_peer = local_peer
        self._lookup = lookup
        self._lookup_range = lookup_range
        self._timeout = timeout
        self._on_sent = on_sent
        self._frame_bytes = frame_bytes
        self._sessions = SessionTable(ttl=timeout)
        self._connections = 0
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

    async def answer(self, stream: Any, ranged: bool = False) -> None:
        """Answer one handshake on a ``/medswarm/bulk/1.0.0`` stream (``ranged``: 1.1.0).
        Never raises."""
        fetcher = "unknown peer"
        size = RANGE_REQUEST_BYTES if ranged else REQUEST_BYTES
        try:
            fetcher = stream.muxed_conn.peer_id.to_base58()
            with trio.fail_after(self._timeout):
                request = BulkRequest.decode(await read_exactly(stream, size))
                await stream.write(self._open_session(fetcher, request).encode())
                await stream.close()
        except Exception as exc:  # an escaping exception would take the whole host down
            log.warning("bulk handshake with %s failed: %r", fetcher, exc)
            with contextlib.suppress(Exception):
                await stream.reset()

    def _open_session(self, fetcher: str, request: BulkRequest) -> BulkAnswer:
        span: ByteRange | None = None
        if request.span is None:
            data = self._lookup(request.digest.hex())
            length = 0 if data is None else len(data)
        else:
            wanted = request.span
            found = self._lookup_range and self._lookup_range(
                request.digest.hex(), wanted.offset, wanted.count
            )
            length, data = found or (0, None)
            if data is not None and wanted.offset > length:
                return BulkAnswer(BulkStatus.OUTSIDE, length=length)
            span = served_range(wanted, length)
            if data is not None and len(data) != span.count:
                raise ValueError(f"range lookup gave {len(data)} bytes, not {span.count}")
        if data is None:
            return BulkAnswer(BulkStatus.NOT_FOUND)
        if length > request.max_bytes:
            return BulkAnswer(BulkStatus.TOO_LARGE, length=length)
        mine = Ephemeral()
        transcript = Transcript(
            fetcher_peer=fetcher,
            provider_peer=self._local_peer,
            digest=request.digest,
            fetcher_public_key=request.public_key,
            fetcher_nonce=request.nonce,
            provider_public_key=mine.public_key,
            provider_nonce=mine.nonce,
            length=length,
            span=span,
        )
        keys = derive_session_keys(mine.shared_secret(request.public_key), transcript)
        if self.port is None or not self._sessions.open(keys, request.digest, data, fetcher):
            return BulkAnswer(BulkStatus.REFUSED)
        return BulkAnswer(BulkStatus.FOUND, length, mine.public_key, mine.nonce, self.port)

    async def _serve_connection(self, sock: Socket, address: Any) -> None:
        """Stream one session's blob to a connection that proves it. Never raises."""
        try:
            with sock, trio.fail_after(self._timeout):
                sock.setsockopt(trio.socket.IPPROTO_TCP, trio.socket.TCP_NODELAY, 1)
                hello = bytearray(HELLO_BYTES)
                await recv_exactly_into(sock, memoryview(hello))
                session = self._sessions.claim(bytes(hello))
                cipher = FrameCipher(session.keys.provider_to_fetcher)
                await send_blob(sock, cipher, session.data, self._frame_bytes)
            self._on_sent(len(session.data))
            log.debug("sent %d bytes to %s over the bulk channel", len(session.data), address)
        except Exception as exc:
            log.warning("bulk connection from %s closed: %r", address, exc)
        finally:
            self._connections -= 1


OpenStream = Callable[[str], Awaitable[ByteStream]]


class BulkFetcher:
    """The fetcher side: asks a provider for a blob over the bulk channel.

    ``open_stream`` opens a ``/medswarm/bulk/1.0.0`` stream to a peer, ``open_range_stream``
    (without it, no ranges) a ``/medswarm/bulk/1.1.0`` one; a bulk port that does not accept
    within ``connect_timeout`` counts as unavailable. The fetcher keeps its last receive buffer
    of a whole blob (at most one blob's size) for the next fetch: fresh memory costs the kernel
    about as much to hand out as the cipher takes to fill it.
    """

    def __init__(
        self,
        local_peer: str,
        open_stream: OpenStream,
        connect_timeout: float,
        open_range_stream: OpenStream | None = None,
    ) -> None:
        self._local_peer = local_peer
        self._open_stream = open_stream
        self._open_range_stream = open_range_stream
        self._connect_timeout = connect_timeout
        self._spare = bytearray()

    async def fetch(self, provider: str, digest: str, max_bytes: int) -> bytes | None:
        """Blob ``digest`` from ``provider``, verified; ``None`` if the channel is unavailable.

        Raises what the stream protocol raises for a missing, oversized or forged blob. A peer
        without the protocol, an unreachable bulk port or a broken session is logged and gives
        ``None``, so the caller can use the libp2p stream instead.
        """
        try:
            stream = await self._open_stream(provider)
        except Exception as exc:
            log.debug("%s does not speak %s (%r)", provider, BULK_PROTOCOL, exc)
            return None
        try:
            return await self._fetch(stream, provider, digest, max_bytes)
        except (BulkChannelError, FetchFailed, MalformedMessage, OSError) as exc:
            log.warning("bulk channel to %s failed (%r); using a libp2p stream", provider, exc)
            return None
        finally:
            with contextlib.suppress(Exception):
                await stream.close()

    async def fetch_range(
        self,
        provider: str,
        digest: str,
        length: int,
        offset: int,
        out: memoryview,
        max_bytes: int,
    ) -> bool:
        """Bytes ``offset`` .. ``offset + len(out)`` of blob ``digest`` (``length`` bytes long)
        from ``provider``, into ``out``; ``False`` if the channel is unavailable.

        Raises what the range stream protocol raises for a missing blob or another length; the
        bytes are authenticated as the provider's but not verified (only the whole blob can be).
        """
        if self._open_range_stream is None:
            return False
        try:
            stream: Any = await self._open_range_stream(provider)
        except Exception as exc:
            log.debug("%s does not speak bulk ranges (%r)", provider, exc)
            return False
        try:
            wanted = bytes.fromhex(digest)
            span = ByteRange(offset, len(out))
            keys, answer = await self._handshake(stream, provider, wanted, max_bytes, span)
            if answer.length != length:
                raise BlobLengthMismatch(
                    f"provider says blob {digest} has {answer.length} bytes, not {length}",
                    answer.length,
                )
            address = stream.get_remote_address()
            if not address:
                raise BulkChannelError("the libp2p connection has no remote IP address")
            with await _connect(address[0], answer.port, self._connect_timeout) as sock:
                await send_all(sock, memoryview(seal_hello(keys, wanted)))
                await receive_blob(sock, FrameCipher(keys.provider_to_fetcher), out)
            return True
        except (BulkChannelError, FetchFailed, MalformedMessage, OSError) as exc:
            log.warning("bulk range from %s failed (%r); using a libp2p stream", provider, exc)
            return False
        finally:
            with contextlib.suppress(Exception):
                await stream.close()

    async def _fetch(self, stream: Any, provider: str, digest: str, max_bytes: int) -> bytes:
        keys, answer = await self._handshake(stream, provider, bytes.fromhex(digest), max_bytes)
        address = stream.get_remote_address()
        if not address:
            raise BulkChannelError("the libp2p connection has no remote IP address")
        return await self._receive(address[0], answer, keys, digest)

    async def _handshake(
        self,
        stream: Any,
        provider: str,
        wanted: bytes,
        max_bytes: int,
        span: ByteRange | None = None,
    ) -> tuple[SessionKeys, BulkAnswer]:
        mine = Ephemeral()
        request = BulkRequest(wanted, mine.public_key, mine.nonce, max_bytes, span)
        await stream.write(request.encode())
        status = (await read_exactly(stream, 1))[0]
        body = await read_exactly(stream, BulkAnswer.body_bytes(status))
        answer = BulkAnswer.decode(status, body)
        if answer.status is BulkStatus.NOT_FOUND:
            raise BlobNotFound(f"provider does not have blob {wanted.hex()}")
        if answer.status is BulkStatus.OUTSIDE or (span and answer.length < span.offset):
            raise BlobLengthMismatch(
                f"provider says blob {wanted.hex()} ends at byte {answer.length}, before the "
                "range asked for",
                answer.length,
            )
        if answer.status is BulkStatus.TOO_LARGE or answer.length > max_bytes:
            raise BlobTooLarge(
                f"provider offers {answer.length} bytes for {wanted.hex()}, limit is {max_bytes}"
            )
        if answer.status is BulkStatus.REFUSED:
            raise BulkChannelError("provider refused a bulk session (busy or not listening)")
        transcript = Transcript(
            fetcher_peer=self._local_peer,
            provider_peer=provider,
            digest=wanted,
            fetcher_public_key=mine.public_key,
            fetcher_nonce=mine.nonce,
            provider_public_key=answer.public_key,
            provider_nonce=answer.nonce,
            length=answer.length,
            span=None if span is None else served_range(span, answer.length),
        )
        return derive_session_keys(mine.shared_secret(answer.public_key), transcript), answer

    async def _receive(
        self, host: str, answer: BulkAnswer, keys: SessionKeys, digest: str
    ) -> bytes:
        buffer, self._spare = self._spare, bytearray()
        if len(buffer) < answer.length:
            buffer = bytearray(answer.length)
        out = memoryview(buffer)[: answer.length]
        try:
            with await _connect(host, answer.port, self._connect_timeout) as sock:
                await send_all(sock, memoryview(seal_hello(keys, bytes.fromhex(digest))))
                await receive_blob(sock, FrameCipher(keys.provider_to_fetcher), out)
            received, data = await trio.to_thread.run_sync(hash_and_copy, out)
            if received != digest:
                raise BlobHashMismatch(
                    f"bytes received for blob {digest} hash to {received}: the provider sent "
                    "corrupt or forged data"
                )
            return data
        finally:
            if len(buffer) > len(self._spare):
                self._spare = buffer


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
