"""Yamux whose connection reader never waits to write, so bulk streams cannot deadlock it.

In py-libp2p 0.8.1 the task that reads a Yamux connection also answers some frames itself
(the ACK or RST for a new stream, the ACK for a ping) through ``Yamux._write_frame``, which
waits for the connection's write lock. When both ends send bulk data, each write lock can be
held by a task blocked on a full socket while each reader waits for that lock: neither end
reads again. :class:`ReaderSafeYamux` lets the reader queue those replies instead; the queue
is written ahead of any later frame. docs/architecture.md ("Yamux stall") has the details.

The protocol id stays ``/yamux/1.0.0``, so these connections interoperate with stock peers.
"""

from __future__ import annotations

import contextlib
import logging
import struct
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import trio
from libp2p import create_yamux_muxer_option
from libp2p.abc import IHost, IMuxedConn, ISecureConn
from libp2p.custom_types import TMuxerOptions, TProtocol
from libp2p.peer.id import ID
from libp2p.stream_muxer.muxer_multistream import MuxerMultistream
from libp2p.stream_muxer.yamux.yamux import (
    FLAG_RST,
    HEADER_SIZE,
    PROTOCOL_ID,
    TYPE_GO_AWAY,
    TYPE_WINDOW_UPDATE,
    YAMUX_HEADER_FORMAT,
    Yamux,
)

log = logging.getLogger(__name__)

# Replies the reader may owe a peer that does not read them before it waits as stock Yamux
# does (a peer would have to open this many streams, or ping this often, without reading).
MAX_QUEUED_REPLIES = 1024
# Yamux.close sends GO_AWAY while holding streams_lock, which the reader needs for nearly
# every frame; the connection is closed right after, so that frame is sent on a best-effort
# basis only.
GO_AWAY_SECONDS = 1.0
# Window a stream's reader owes its peer before it says so: half the initial 256 KiB window,
# as go-yamux does. py-libp2p 0.8.1 sends a WINDOW_UPDATE frame for nearly every read, so a
# gossip message (read as a varint, then its body) cost up to three extra frames.
WINDOW_UPDATE_BATCH = 128 * 1024
# Streams whose owed window is remembered before the entries of closed streams are dropped.
MAX_OWED_STREAMS = 64


class ReaderSafeYamux(Yamux):  # type: ignore[misc]  # libp2p is untyped to mypy here
    """Yamux whose reader queues its replies for a writer task instead of awaiting the socket.

    Whichever task next holds the write lock writes the queued replies before its own frame,
    so a stream's ACK still precedes its first data frame and replies keep their order.

    It also batches plain window updates per stream until they add up to
    :data:`WINDOW_UPDATE_BATCH`. A sender then waits for window only while this end holds more
    than half the initial window unread, so batching cannot stall a stream whose data is read.
    """

    def __init__(
        self,
        secured_conn: ISecureConn,
        peer_id: ID,
        is_initiator: bool | None = None,
        on_close: Callable[[], Awaitable[Any]] | None = None,
    ) -> None:
        super().__init__(secured_conn, peer_id, is_initiator, on_close)
        self._reader: trio.lowlevel.Task | None = None
        self._replies: deque[bytes] = deque()
        self._replies_queued = trio.Event()
        self._owed_window: dict[int, int] = {}  # stream id -> window granted but not sent

    async def handle_incoming(self) -> None:
        self._reader = trio.lowlevel.current_task()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._write_replies)
            await super().handle_incoming()
            nursery.cancel_scope.cancel()

    async def _write_frame(self, data: bytes) -> None:
        batched = self._batch_window_update(data)
        if batched is None:
            return
        data = batched
        if trio.lowlevel.current_task() is self._reader and len(self._replies) < MAX_QUEUED_REPLIES:
            self._replies.append(data)
            self._replies_queued.set()
            return
        if data[1] == TYPE_GO_AWAY:
            with trio.move_on_after(GO_AWAY_SECONDS):
                async with self._write_lock:
                    await self._write_locked(data)
            return
        async with self._write_lock:
            await self._write_locked(data)
        await trio.lowlevel.checkpoint()

    def _batch_window_update(self, frame: bytes) -> bytes | None:
        """The frame to write now, or ``None`` while a stream's window update is held back."""
        if len(frame) != HEADER_SIZE or frame[1] != TYPE_WINDOW_UPDATE:
            return frame
        version, kind, flags, stream_id, delta = struct.unpack(YAMUX_HEADER_FORMAT, frame)
        if flags & FLAG_RST:
            self._owed_window.pop(stream_id, None)
            return frame
        if flags or stream_id == 0:
            return frame  # opening, accepting or closing a stream: never held back
        owed = self._owed_window.pop(stream_id, 0) + delta
        if owed < WINDOW_UPDATE_BATCH:
            if len(self._owed_window) >= MAX_OWED_STREAMS:
                self._owed_window = {
                    sid: n for sid, n in self._owed_window.items() if sid in self.streams
                }
            self._owed_window[stream_id] = owed
            return None
        return struct.pack(YAMUX_HEADER_FORMAT, version, kind, 0, stream_id, owed)

    async def _write_locked(self, frame: bytes = b"") -> None:
        """Write the queued replies, then ``frame``; the caller holds ``_write_lock``."""
        if self._replies:
            frame = b"".join(self._replies) + frame
            self._replies.clear()
        if frame:
            await self.secured_conn.write(frame)

    async def _write_replies(self) -> None:
        try:
            while True:
                await self._replies_queued.wait()
                self._replies_queued = trio.Event()
                async with self._write_lock:
                    await self._write_locked()
        except Exception as exc:
            # The connection cannot be written to; closing it makes the reader's next read
            # fail, and the reader then tears the connection down as usual.
            log.debug("yamux to %s: writing replies failed: %r", self.peer_id, exc)
            with contextlib.suppress(Exception):
                await self.secured_conn.close()


class _OptionsMuxerMultistream(MuxerMultistream):  # type: ignore[misc]
    """Builds the muxer class the options name for every protocol.

    py-libp2p 0.8.1's ``MuxerMultistream.new_conn`` builds a stock ``Yamux`` for
    ``/yamux/1.0.0`` whatever class the options give.
    """

    async def new_conn(self, conn: ISecureConn, peer_id: ID) -> IMuxedConn:
        protocol, muxer_class = await self._selector.select(
            conn, conn.is_initiator, self.negotiate_timeout
        )
        muxed: IMuxedConn = muxer_class(conn, peer_id)
        return self._annotate_connection(muxed, conn, protocol)


def muxer_options() -> TMuxerOptions:
    """py-libp2p's default muxers (Yamux first, Mplex second) with :class:`ReaderSafeYamux`."""
    return {**create_yamux_muxer_option(), TProtocol(PROTOCOL_ID): ReaderSafeYamux}


def honour_muxer_options(host: IHost) -> None:
    """Make ``host`` build the muxer classes it was given in ``new_host(muxer_opt=...)``."""
    upgrader = host.get_network().upgrader
    given = upgrader.muxer_multistream
    upgrader.muxer_multistream = _OptionsMuxerMultistream(given.transports, given.negotiate_timeout)
