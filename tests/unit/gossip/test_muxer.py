"""ReaderSafeYamux over an in-memory connection whose writes can be held back."""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.id import ID
from libp2p.stream_muxer.yamux.yamux import (
    FLAG_ACK,
    FLAG_SYN,
    TYPE_DATA,
    TYPE_PING,
    TYPE_WINDOW_UPDATE,
    YAMUX_HEADER_FORMAT,
    Yamux,
)

from gossip.muxer import WINDOW_UPDATE_BATCH, ReaderSafeYamux
from tests.helpers import wait_for

HEADER = struct.Struct(YAMUX_HEADER_FORMAT)


def frame(kind: int, flags: int, stream_id: int, length: int, body: bytes = b"") -> bytes:
    return HEADER.pack(0, kind, flags, stream_id, length) + body


def frames(wire: bytes) -> list[tuple[int, int, int, int, bytes]]:
    """(type, flags, stream id, length, body) of each frame in ``wire``."""
    parsed = []
    while wire:
        _, kind, flags, stream_id, length = HEADER.unpack(wire[: HEADER.size])
        size = length if kind == TYPE_DATA else 0
        parsed.append((kind, flags, stream_id, length, wire[HEADER.size : HEADER.size + size]))
        wire = wire[HEADER.size + size :]
    return parsed


class HeldConnection:
    """A secured connection whose writes wait until ``writable`` is set, like a full socket."""

    is_initiator = True

    def __init__(self) -> None:
        self.writable = trio.Event()
        self.sent = bytearray()
        self._send, self._receive = trio.open_memory_channel[bytes](100)
        self._unread = b""

    def arrive(self, data: bytes) -> None:
        self._send.send_nowait(data)

    async def read(self, n: int | None = None) -> bytes:
        if not self._unread:
            self._unread = await self._receive.receive()
        size = len(self._unread) if n is None else n
        data, self._unread = self._unread[:size], self._unread[size:]
        return data

    async def write(self, data: bytes) -> None:
        await self.writable.wait()
        self.sent += data

    async def close(self) -> None:
        self._send.close()


@asynccontextmanager
async def running(muxer_class: type[Yamux]) -> AsyncIterator[tuple[Yamux, HeldConnection]]:
    connection = HeldConnection()
    peer = ID.from_pubkey(create_new_key_pair().public_key)
    muxer = muxer_class(connection, peer)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(muxer.start)
        with trio.fail_after(5):
            await muxer.event_started.wait()
        yield muxer, connection
        nursery.cancel_scope.cancel()


async def open_stream_on_full_socket(muxer: Yamux, nursery: trio.Nursery) -> None:
    """Open a stream whose SYN cannot be written: the task keeps holding the write lock."""
    nursery.start_soon(muxer.open_stream)
    await wait_for(muxer._write_lock.locked, timeout=5)


async def test_new_stream_and_ping_are_handled_while_the_socket_is_full() -> None:
    async with running(ReaderSafeYamux) as (muxer, connection), trio.open_nursery() as nursery:
        await open_stream_on_full_socket(muxer, nursery)
        connection.arrive(frame(TYPE_WINDOW_UPDATE, FLAG_SYN, 2, 0))
        connection.arrive(frame(TYPE_PING, FLAG_SYN, 0, 7))

        with trio.fail_after(5):
            accepted = await muxer.accept_stream()
        assert accepted.stream_id == 2
        assert connection.sent == b""

        connection.writable.set()
        with trio.fail_after(5):
            await accepted.write(b"hello")
        sent = [f for f in frames(bytes(connection.sent)) if f[:2] != (TYPE_PING, FLAG_SYN)]
        assert sent == [
            (TYPE_WINDOW_UPDATE, FLAG_SYN, 1, 0, b""),  # the frame that held the lock
            (TYPE_WINDOW_UPDATE, FLAG_ACK, 2, 0, b""),  # the reader's replies, in order,
            (TYPE_PING, FLAG_ACK, 0, 7, b""),
            (TYPE_DATA, 0, 2, 5, b"hello"),  # and before the new stream's first data
        ]


async def test_replies_are_written_without_any_other_write() -> None:
    async with running(ReaderSafeYamux) as (_, connection):
        connection.writable.set()
        connection.arrive(frame(TYPE_PING, FLAG_SYN, 0, 42))
        pong = (TYPE_PING, FLAG_ACK, 0, 42, b"")
        await wait_for(lambda: pong in frames(bytes(connection.sent)), timeout=5)


async def test_stock_yamux_reader_still_waits_for_the_write_lock() -> None:
    """When this fails, py-libp2p no longer needs gossip.muxer (check before dropping it)."""
    async with running(Yamux) as (muxer, connection), trio.open_nursery() as nursery:
        await open_stream_on_full_socket(muxer, nursery)
        connection.arrive(frame(TYPE_WINDOW_UPDATE, FLAG_SYN, 2, 0))
        with trio.move_on_after(0.5) as waiting:
            await muxer.accept_stream()
        assert waiting.cancelled_caught
        nursery.cancel_scope.cancel()


async def test_a_closed_connection_ends_the_muxer_and_its_reply_writer() -> None:
    async with running(ReaderSafeYamux) as (muxer, connection):
        await connection.close()
        with trio.fail_after(5):
            await muxer.event_closed.wait()


async def test_close_returns_when_the_socket_does_not_drain() -> None:
    async with running(ReaderSafeYamux) as (muxer, connection):
        with trio.fail_after(5):
            await muxer.close()
        assert muxer.is_closed
        assert connection.sent == b""  # the GO_AWAY was given up


async def read_small_frames(muxer_class: type[Yamux], count: int, size: int) -> list[int]:
    """Window granted by plain updates while a stream's ``count`` frames of ``size`` are read."""
    async with running(muxer_class) as (muxer, connection):
        connection.writable.set()
        connection.arrive(frame(TYPE_WINDOW_UPDATE, FLAG_SYN, 2, 0))
        with trio.fail_after(5):
            stream = await muxer.accept_stream()
            for _ in range(count):
                connection.arrive(frame(TYPE_DATA, 0, 2, size, bytes(size)))
                assert len(await stream.read(size)) == size
            await trio.sleep(0.05)  # anything the reads still had to send
    return [n for kind, flags, _, n, _ in frames(bytes(connection.sent)) if (kind, flags) == (1, 0)]


async def test_window_updates_wait_until_half_the_initial_window_is_owed() -> None:
    count, size = 250, 1000  # 250 000 bytes, inside the initial 256 KiB window
    granted = await read_small_frames(ReaderSafeYamux, count, size)
    # A few updates (py-libp2p also doubles the window as it auto-tunes), each a full batch.
    assert 1 <= len(granted) < 10
    assert all(n >= WINDOW_UPDATE_BATCH for n in granted)
    # What the peer has not been told stays under one batch, so it never runs dry.
    assert count * size - sum(granted) < WINDOW_UPDATE_BATCH
    # Stock py-libp2p 0.8.1 says so for nearly every read.
    assert len(await read_small_frames(Yamux, count, size)) > count / 2
