"""The bulk channel's sessions, frame pipelines and provider, on real loopback sockets.

The libp2p handshake stream is replaced by an in-memory pair; everything else is real.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import SimpleNamespace

import pytest
import trio
from libp2p.network.stream.exceptions import StreamReset

from gossip.blobs import blob_hash, read_exactly
from gossip.bulk import MAX_LINKS_PER_PEER, BulkFetcher, BulkServer, SessionTable
from gossip.bulk_codec import (
    ANSWER_BYTES,
    HEADER_BYTES,
    HELLO_BYTES,
    MAX_FRAME_BYTES,
    BlobRequest,
    BulkStatus,
    Ephemeral,
    FrameCipher,
    LinkAnswer,
    LinkRequest,
    Sealer,
    SessionKeys,
    Transcript,
    derive_session_keys,
    open_answer,
    plan_frames,
    seal_hello,
    seal_request,
)
from gossip.bulk_transfer import (
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
    FrameRejected,
    GossipError,
    SessionRefused,
)
from gossip.ranges import ranges_of
from tests.helpers import wait_for

FETCHER = "12D3KooWfetcher"
PROVIDER = "12D3KooWprovider"
KEY = b"k" * 32
FRAME = 64 * 1024


class HandshakeEnd:
    """One end of an in-memory stand-in for a libp2p stream between two named peers."""

    def __init__(
        self,
        send: trio.MemorySendChannel[bytes],
        receive: trio.MemoryReceiveChannel[bytes],
        remote_peer: str,
    ) -> None:
        self._send, self._receive, self._buffer = send, receive, b""
        self.muxed_conn = SimpleNamespace(peer_id=SimpleNamespace(to_base58=lambda: remote_peer))

    async def read(self, n: int | None = None) -> bytes:
        if not self._buffer:
            try:
                self._buffer = await self._receive.receive()
            except trio.EndOfChannel:
                return b""
        size = len(self._buffer) if n is None else n
        out, self._buffer = self._buffer[:size], self._buffer[size:]
        return out

    async def write(self, data: bytes) -> None:
        await self._send.send(data)

    async def close(self) -> None:
        self._send.close()

    async def reset(self) -> None:
        self._send.close()

    def get_remote_address(self) -> tuple[str, int]:
        return ("127.0.0.1", 4001)


@dataclass
class Provider:
    server: BulkServer
    sent: list[int]
    open_stream: Callable[[str], Awaitable[HandshakeEnd]]
    members: set[str]
    handshakes: list[str]


@asynccontextmanager
async def bulk_provider(
    blobs: dict[str, bytes], timeout: float = 5.0, idle_timeout: float = 30.0
) -> AsyncIterator[Provider]:
    sent: list[int] = []
    members, handshakes = {FETCHER}, []
    server = BulkServer(
        PROVIDER,
        blobs.get,
        timeout,
        sent.append,
        frame_bytes=FRAME,
        may_serve=members.__contains__,
        idle_timeout=idle_timeout,
        lookup_range=ranges_of(blobs.get),
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve, "127.0.0.1", 0)

        async def open_stream(peer: str) -> HandshakeEnd:
            handshakes.append(peer)
            to_provider_send, to_provider_receive = trio.open_memory_channel[bytes](10)
            to_fetcher_send, to_fetcher_receive = trio.open_memory_channel[bytes](10)
            nursery.start_soon(
                server.answer, HandshakeEnd(to_fetcher_send, to_provider_receive, FETCHER)
            )
            return HandshakeEnd(to_provider_send, to_fetcher_receive, peer)

        yield Provider(server, sent, open_stream, members, handshakes)
        nursery.cancel_scope.cancel()


async def fetch(provider: Provider, digest: str, max_bytes: int = 2**24) -> bytes | None:
    fetcher = BulkFetcher(FETCHER, provider.open_stream, connect_timeout=2)
    with trio.fail_after(5):
        return await fetcher.fetch(PROVIDER, digest, max_bytes)


async def ask_for_link(provider: Provider, mine: Ephemeral) -> LinkAnswer:
    stream = await provider.open_stream(PROVIDER)
    await stream.write(LinkRequest(mine.public_key, mine.nonce).encode())
    status = (await read_exactly(stream, 1))[0]
    return LinkAnswer.decode(status, await read_exactly(stream, LinkAnswer.body_bytes(status)))


async def handshake(provider: Provider) -> tuple[SessionKeys, LinkAnswer]:
    """The fetcher's side of the link handshake, written out with the codec alone."""
    mine = Ephemeral()
    answer = await ask_for_link(provider, mine)
    assert answer.accepted
    transcript = Transcript(
        FETCHER, PROVIDER, mine.public_key, mine.nonce, answer.public_key, answer.nonce
    )
    return derive_session_keys(mine.shared_secret(answer.public_key), transcript), answer


async def connect(port: int) -> trio.socket.SocketType:
    sock = trio.socket.socket()
    await sock.connect(("127.0.0.1", port))
    return sock


async def read_until_closed(sock: trio.socket.SocketType) -> int:
    """Bytes the peer sends before closing the connection."""
    total = 0
    with trio.fail_after(5):
        while chunk := await sock.recv(2**20):
            total += len(chunk)
    return total


# ------------------------------------------------------------------------------ sessions


def keys(tag: bytes) -> SessionKeys:
    return SessionKeys(tag * 16, b"f" * 32, b"p" * 32)


def test_a_session_is_claimed_once_with_the_right_token() -> None:
    table = SessionTable(ttl=10)
    assert table.open(keys(b"a"), FETCHER)
    with pytest.raises(SessionRefused, match="wrong token"):
        table.claim(keys(b"a").session_id + bytes(HELLO_BYTES - 16))
    assert table.open(keys(b"b"), FETCHER)
    hello = seal_hello(keys(b"b"))
    assert table.claim(hello).fetcher == FETCHER
    with pytest.raises(SessionRefused, match="already used"):
        table.claim(hello)


def test_sessions_expire_and_are_bounded() -> None:
    now = [100.0]
    table = SessionTable(ttl=10, capacity=2, clock=lambda: now[0])
    assert table.open(keys(b"a"), FETCHER)
    assert table.open(keys(b"b"), FETCHER)
    assert not table.open(keys(b"c"), FETCHER)
    now[0] = 110.5
    with pytest.raises(SessionRefused, match="expired"):
        table.claim(seal_hello(keys(b"a")))
    assert table.open(keys(b"c"), FETCHER)  # expired ones made room


# ------------------------------------------------------------------------ frame pipelines


async def test_blob_crosses_a_socket_in_frames() -> None:
    data = os.urandom(5 * FRAME + 123)
    left, right = trio.socket.socketpair()
    with left, right, trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(send_blob, left, FrameCipher(KEY), data, FRAME)
            blob = bytearray(len(data))
            await receive_blob(right, FrameCipher(KEY), memoryview(blob))
    assert blob == data


def test_hash_and_copy_gives_the_sha256_and_an_immutable_copy() -> None:
    data = bytearray(os.urandom(3 * FRAME))
    digest, copy = hash_and_copy(memoryview(data))
    data[0] ^= 1  # the copy does not follow its source
    assert digest == hashlib.sha256(copy).hexdigest()
    assert isinstance(copy, bytes)
    assert copy[1:] == data[1:]
    assert copy[0] != data[0]


async def sealed_stream(data: bytes) -> bytes:
    """Every byte ``send_blob`` puts on the wire for ``data``."""
    left, right = trio.socket.socketpair()
    with left, right, trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(send_blob, left, FrameCipher(KEY), data, FRAME)
            wire = bytearray(len(data) + len(plan_frames(len(data), FRAME)) * (HEADER_BYTES + 16))
            await recv_exactly_into(right, memoryview(wire))
    return bytes(wire)


async def receive_raw(wire: bytes, length: int, close: bool = True) -> None:
    left, right = trio.socket.socketpair()
    with left, right, trio.fail_after(2):
        await send_all(left, memoryview(wire))
        if close:
            left.close()
        await receive_blob(right, FrameCipher(KEY), memoryview(bytearray(length)))


async def test_truncated_stream_is_detected() -> None:
    data = os.urandom(3 * FRAME)
    wire = await sealed_stream(data)
    with pytest.raises(FrameRejected, match="truncated"):
        await receive_raw(wire[: HEADER_BYTES + FRAME + 16], len(data))
    with pytest.raises(FrameRejected, match="truncated"):
        await receive_raw(wire[:-1], len(data))


async def test_tampered_byte_on_the_wire_is_rejected() -> None:
    data = os.urandom(3 * FRAME)
    wire = bytearray(await sealed_stream(data))
    wire[2 * (HEADER_BYTES + FRAME + 16) + 1000] ^= 1
    with pytest.raises(FrameRejected, match="frame 2 failed authentication"):
        await receive_raw(bytes(wire), len(data))


async def test_oversized_frame_length_is_refused_before_reading_it() -> None:
    header = (MAX_FRAME_BYTES + 1).to_bytes(4, "big")
    # The connection stays open: reading the announced body would hit the test's timeout.
    with pytest.raises(FrameRejected, match="exceeds"):
        await receive_raw(header, 10 * MAX_FRAME_BYTES, close=False)


# ------------------------------------------------------------------- provider and fetcher


async def test_fetch_over_bulk_delivers_a_verified_blob() -> None:
    data = os.urandom(3 * FRAME + 7)
    async with bulk_provider({blob_hash(data): data}) as provider:
        assert await fetch(provider, blob_hash(data)) == data
        assert await fetch(provider, blob_hash(data)) == data
    assert provider.sent == [len(data), len(data)]


async def test_one_fetcher_asks_for_every_blob_on_one_link_and_reuses_its_buffer() -> None:
    big, small, other = os.urandom(3 * FRAME), b"small", os.urandom(2 * FRAME + 1)
    blobs = {blob_hash(data): data for data in (big, small, other)}
    async with bulk_provider(blobs) as provider:
        fetcher = BulkFetcher(FETCHER, provider.open_stream, connect_timeout=2)
        with trio.fail_after(5):
            for data in (big, small, other, big):
                assert await fetcher.fetch(PROVIDER, blob_hash(data), 2**24) == data
            with pytest.raises(BlobNotFound):  # an answer that leaves the link in step
                await fetcher.fetch(PROVIDER, "00" * 32, 2**24)
            assert await fetcher.fetch(PROVIDER, blob_hash(small), 2**24) == small
        fetcher.close()
    assert provider.handshakes == [PROVIDER]


async def test_fetches_at_once_from_one_provider_use_links_of_their_own() -> None:
    blobs = {blob_hash(data): data for data in (os.urandom(2 * FRAME) for _ in range(3))}
    received: dict[str, bytes | None] = {}
    async with bulk_provider(blobs) as provider:
        fetcher = BulkFetcher(FETCHER, provider.open_stream, connect_timeout=2)

        async def get(digest: str) -> None:
            received[digest] = await fetcher.fetch(PROVIDER, digest, 2**24)

        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                for digest in blobs:
                    nursery.start_soon(get, digest)
        fetcher.close()
    assert received == blobs
    assert len(provider.handshakes) == 3


async def test_a_link_the_provider_closed_for_idling_is_replaced() -> None:
    data = os.urandom(FRAME)
    async with bulk_provider({blob_hash(data): data}, idle_timeout=0.05) as provider:
        fetcher = BulkFetcher(FETCHER, provider.open_stream, connect_timeout=2, idle_timeout=60)
        with trio.fail_after(5):
            assert await fetcher.fetch(PROVIDER, blob_hash(data), 2**24) == data
            await trio.sleep(0.3)  # longer than the provider keeps an idle link
            assert await fetcher.fetch(PROVIDER, blob_hash(data), 2**24) == data
        fetcher.close()
    assert len(provider.handshakes) == 2


async def test_a_peer_cut_off_after_its_handshake_gets_nothing_more() -> None:
    data = os.urandom(FRAME)
    async with bulk_provider({blob_hash(data): data}) as provider:
        fetcher = BulkFetcher(FETCHER, provider.open_stream, connect_timeout=2)
        with trio.fail_after(5):
            assert await fetcher.fetch(PROVIDER, blob_hash(data), 2**24) == data
            provider.members.clear()
            assert await fetcher.fetch(PROVIDER, blob_hash(data), 2**24) is None
        fetcher.close()
    assert provider.sent == [len(data)]


async def test_one_fetcher_cannot_hold_more_than_its_share_of_links() -> None:
    data = os.urandom(FRAME)
    async with bulk_provider({blob_hash(data): data}) as provider:
        hoarded = []
        with trio.fail_after(5):
            for _ in range(MAX_LINKS_PER_PEER):
                session, answer = await handshake(provider)
                sock = await connect(answer.port)
                await send_all(sock, memoryview(seal_hello(session)))
                hoarded.append(sock)
            await wait_for(lambda: provider.server.open_links(FETCHER) == MAX_LINKS_PER_PEER, 5)
            refused = await ask_for_link(provider, Ephemeral())
            for sock in hoarded:
                sock.close()
            await wait_for(lambda: provider.server.open_links(FETCHER) == 0, 5)
            accepted = await ask_for_link(provider, Ephemeral())
    assert not refused.accepted
    assert accepted.accepted


async def test_missing_oversized_and_forged_blobs_raise_like_the_stream_protocol() -> None:
    data = b"real update" * 100
    forged = {blob_hash(data): b"forged update" * 100}
    async with bulk_provider({blob_hash(data): data}) as provider:
        with pytest.raises(BlobNotFound):
            await fetch(provider, "00" * 32)
        with pytest.raises(BlobTooLarge):
            await fetch(provider, blob_hash(data), max_bytes=len(data) - 1)
    async with bulk_provider(forged) as provider:
        with pytest.raises(BlobHashMismatch, match="forged"):
            await fetch(provider, blob_hash(data))


async def fetch_range(
    fetcher: BulkFetcher, digest: str, length: int, offset: int, count: int
) -> bytes | None:
    out = bytearray(count)
    with trio.fail_after(5):
        done = await fetcher.fetch_range(PROVIDER, digest, length, offset, memoryview(out), 2**24)
    return bytes(out) if done else None


async def test_fetch_into_hands_over_only_verified_bytes() -> None:
    data = os.urandom(3 * FRAME + 5)
    digest = blob_hash(data)
    kept: list[bytes] = []
    async with bulk_provider({digest: data, "ff" * 32: b"not what it says"}) as provider:
        fetcher = BulkFetcher(FETCHER, provider.open_stream, connect_timeout=2)
        with trio.fail_after(5):
            size = await fetcher.fetch_into(
                PROVIDER, digest, 2**24, lambda v: kept.append(bytes(v))
            )
            assert size == len(data)
            with pytest.raises(BlobHashMismatch):
                await fetcher.fetch_into(
                    PROVIDER, "ff" * 32, 2**24, lambda v: kept.append(bytes(v))
                )
        fetcher.close()
    assert kept == [data]


async def test_ranges_and_whole_blobs_share_one_link() -> None:
    data = os.urandom(5 * FRAME + 11)
    digest = blob_hash(data)
    async with bulk_provider({digest: data}) as provider:
        fetcher = BulkFetcher(FETCHER, provider.open_stream, connect_timeout=2)
        middle = await fetch_range(fetcher, digest, len(data), FRAME + 3, 2 * FRAME)
        tail = await fetch_range(fetcher, digest, len(data), len(data) - 11, 11)
        with trio.fail_after(5):
            whole = await fetcher.fetch(PROVIDER, digest, 2**24)
        fetcher.close()
    assert middle == data[FRAME + 3 : 3 * FRAME + 3]
    assert tail == data[-11:]
    assert whole == data
    assert provider.sent == [2 * FRAME, 11, len(data)]
    assert provider.handshakes == [PROVIDER]


async def test_a_range_of_another_length_or_a_missing_blob_raises() -> None:
    data = os.urandom(3 * FRAME)
    digest = blob_hash(data)
    async with bulk_provider({digest: data}) as provider:
        fetcher = BulkFetcher(FETCHER, provider.open_stream, connect_timeout=2)
        with pytest.raises(BlobLengthMismatch, match=f"{len(data)} bytes, not") as other:
            await fetch_range(fetcher, digest, len(data) + 1, 0, 10)
        assert other.value.claimed == len(data)
        with pytest.raises(BlobLengthMismatch, match="ends at byte"):
            await fetch_range(fetcher, digest, 4 * FRAME, 3 * FRAME + 1, 10)
        with pytest.raises(BlobNotFound):
            await fetch_range(fetcher, "00" * 32, 10, 0, 10)
        # After all that, the link still carries a good range.
        assert await fetch_range(fetcher, digest, len(data), 5, 5) == data[5:10]
        fetcher.close()
    # The provider sent the first range before the fetcher read its answer and hung up. That
    # link's send may be counted after the last range's, on its new link: order is not fixed.
    assert sorted(provider.sent) == [5, 10]


async def test_unavailable_channel_gives_none_for_the_fallback() -> None:
    async def no_protocol(peer: str) -> HandshakeEnd:
        raise ConnectionError("protocol not supported")

    data = b"update"
    async with bulk_provider({blob_hash(data): data}) as provider:
        provider.server.port = 1  # the handshake names a port where nothing listens
        refused = await fetch(provider, blob_hash(data))
        provider.open_stream = no_protocol
        unsupported = await fetch(provider, blob_hash(data))
    assert refused is None
    assert unsupported is None


async def test_a_stream_reset_while_asking_for_a_link_gives_none_for_the_fallback() -> None:
    class ResetOnWrite:
        async def write(self, data: bytes) -> None:
            raise StreamReset("the provider went away")

        async def close(self) -> None:
            pass

    async def resetting(peer: str) -> ResetOnWrite:
        return ResetOnWrite()

    data = b"update"
    async with bulk_provider({blob_hash(data): data}) as provider:
        provider.open_stream = resetting  # type: ignore[assignment]
        assert await fetch(provider, blob_hash(data)) is None


async def test_wrong_token_replayed_session_and_replayed_request_are_refused(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    data = os.urandom(2 * FRAME)
    digest = bytes.fromhex(blob_hash(data))
    async with bulk_provider({blob_hash(data): data}) as provider:
        session, answer = await handshake(provider)
        hello = seal_hello(session)
        with await connect(answer.port) as sock:  # the session id with a forged token
            await send_all(sock, memoryview(hello[:-1] + bytes([hello[-1] ^ 1])))
            assert await read_until_closed(sock) == 0

        session, answer = await handshake(provider)
        hello = seal_hello(session)
        with await connect(answer.port) as sock:
            await send_all(sock, memoryview(hello))
            sealer = Sealer(session.fetcher_to_provider, next_index=1)
            request = seal_request(sealer, BlobRequest(digest, 2**24))
            await send_all(sock, memoryview(request))
            sealed_answer = bytearray(ANSWER_BYTES)
            await recv_exactly_into(sock, memoryview(sealed_answer))
            status = open_answer(Sealer(session.provider_to_fetcher), digest, bytes(sealed_answer))
            assert status == (BulkStatus.FOUND, len(data))
            frames = bytearray(len(data) + 2 * (HEADER_BYTES + 16))
            await recv_exactly_into(sock, memoryview(frames))
            await send_all(sock, memoryview(request))  # the same request again
            assert await read_until_closed(sock) == 0
        with await connect(answer.port) as sock:  # the same hello again
            await send_all(sock, memoryview(hello))
            assert await read_until_closed(sock) == 0
    assert "wrong token" in caplog.text
    assert "request failed authentication" in caplog.text
    assert "already used" in caplog.text
    assert provider.sent == [len(data)]


async def test_garbage_on_the_bulk_port_closes_only_that_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    data = b"update" * 1000
    async with bulk_provider({blob_hash(data): data}, timeout=0.5) as provider:
        assert provider.server.port is not None
        with await connect(provider.server.port) as sock:
            await send_all(sock, memoryview(os.urandom(HELLO_BYTES)))
            assert await read_until_closed(sock) == 0
        with await connect(provider.server.port) as sock:  # says nothing at all
            assert await read_until_closed(sock) == 0
        assert await fetch(provider, blob_hash(data)) == data
    assert "unknown or already used session" in caplog.text
    assert "TooSlowError" in caplog.text


async def test_malformed_handshake_is_answered_by_a_reset() -> None:
    async with bulk_provider({}) as provider:
        stream = await provider.open_stream(PROVIDER)
        await stream.write(b"too short")
        await stream.close()
        with trio.fail_after(5):
            assert await stream.read(1) == b""


async def test_a_taken_bulk_port_is_a_clear_error() -> None:
    with trio.socket.socket() as taken:
        await taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = BulkServer(PROVIDER, {}.get, 1.0, lambda size: None)
        with pytest.raises(GossipError, match="bulk_port"):
            await server.serve("127.0.0.1", taken.getsockname()[1])
