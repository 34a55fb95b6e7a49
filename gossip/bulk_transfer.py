"""Moving a blob as sealed frames over a trio socket, with the cipher overlapped with the I/O.

ChaCha20-Poly1305 (``cryptography``) and hashlib release the GIL on large buffers, so each
frame is sealed or opened in a worker thread while the event loop sends or reads its
neighbours. At most :data:`PIPELINE_DEPTH` frame buffers are in flight per connection.

The receiver hashes the blob after the last frame, beside the copy that turns it into
``bytes``. That copy has to hold the GIL and is mostly page faults, but hashlib does not need
the GIL, so the two overlap (64 MiB on two cores: about 50 ms side by side, 90 ms one after
the other), whereas hashing each frame beside the cipher made the cipher's thread the slowest
stage of the transfer.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Iterator

import trio

from gossip.bulk_codec import HEADER_BYTES, Frame, FrameCipher, FrameReader, plan_frames
from gossip.errors import FrameRejected
from medswarm.errors import leaf_errors

PIPELINE_DEPTH = 3  # one frame in the cipher, the others on the wire

Socket = trio.socket.SocketType


class BufferPool:
    """Buffers kept for the next transfers of one side of the channel.

    Fresh memory costs the kernel page faults about as dear as the cipher's work on it, so
    frame and blob buffers are reused across frames, blobs and links. At most ``max_bytes``
    wait here unused, or one buffer if that alone is larger. Used from the event loop only.
    """

    def __init__(self, max_bytes: int) -> None:
        self._free: list[bytearray] = []
        self._max_bytes = max_bytes

    def take(self, size: int) -> bytearray:
        """The smallest kept buffer of at least ``size`` bytes, or a new one of ``size``."""
        fitting = [buffer for buffer in self._free if len(buffer) >= size]
        if not fitting:
            return bytearray(size)
        smallest = min(fitting, key=len)
        self._free.remove(smallest)
        return smallest

    def give_back(self, buffer: bytearray) -> None:
        kept: list[bytearray] = []
        total = 0
        for spare in sorted([buffer, *self._free], key=len, reverse=True):
            if not kept or total + len(spare) <= self._max_bytes:
                kept.append(spare)
                total += len(spare)
        self._free = kept


async def send_blob(
    sock: Socket,
    cipher: FrameCipher,
    data: bytes | memoryview,
    frame_bytes: int,
    pool: BufferPool | None = None,
) -> int:
    """Send ``data`` as sealed frames of ``frame_bytes``; return how many frames."""
    source = memoryview(data)
    frames = plan_frames(len(data), frame_bytes)
    spares = _InFlight(PIPELINE_DEPTH, pool or BufferPool(0))
    sealed_send, sealed_receive = trio.open_memory_channel[tuple[bytearray, int]](PIPELINE_DEPTH)

    async def seal_frames() -> None:
        async with sealed_send:
            for frame in frames:
                buffer = await spares.take(HEADER_BYTES + frame.sealed_size)
                plaintext = source[frame.offset : frame.offset + frame.size]
                size = await trio.to_thread.run_sync(
                    cipher.seal_into, frame, plaintext, memoryview(buffer)
                )
                await sealed_send.send((buffer, size))

    with _lone_errors_unwrapped():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(seal_frames)
            async for buffer, size in sealed_receive:
                await send_all(sock, memoryview(buffer)[:size])
                spares.give_back(buffer)
    return len(frames)


async def receive_blob(
    sock: Socket, cipher: FrameCipher, out: memoryview, pool: BufferPool | None = None
) -> int:
    """Receive a sealed blob of ``len(out)`` bytes into ``out``; return how many frames.

    Raises :class:`FrameRejected` for a frame that is altered, out of bounds or mis-flagged
    (checked before its body is read) and for a stream that ends before the final frame.
    """
    reader = FrameReader(len(out))
    spares = _InFlight(PIPELINE_DEPTH, pool or BufferPool(0))
    ready_send, ready_receive = trio.open_memory_channel[tuple[Frame, bytearray]](PIPELINE_DEPTH)

    async def read_frames() -> None:
        header = bytearray(HEADER_BYTES)
        await recv_exactly_into(sock, memoryview(header))
        async with ready_send:
            while not reader.finished:
                frame = reader.next_frame(bytes(header))
                # A frame's body and the next frame's header come in one read.
                wanted = frame.sealed_size + (0 if frame.final else HEADER_BYTES)
                buffer = await spares.take(wanted)
                await recv_exactly_into(sock, memoryview(buffer)[:wanted])
                header = buffer[frame.sealed_size : wanted]
                await ready_send.send((frame, buffer))

    def open_frame(frame: Frame, buffer: bytearray) -> None:
        plaintext = out[frame.offset : frame.offset + frame.size]
        cipher.open_into(frame, memoryview(buffer)[: frame.sealed_size], plaintext)

    with _lone_errors_unwrapped():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_frames)
            async for frame, buffer in ready_receive:
                await trio.to_thread.run_sync(open_frame, frame, buffer)
                spares.give_back(buffer)
    return reader.frames


def hash_and_copy(data: memoryview) -> tuple[str, bytes]:
    """The SHA-256 (hex) of ``data`` and an immutable copy of it, computed side by side.

    The copy holds the GIL throughout while hashlib lets go of it, so the hash runs in a thread
    of its own: ``Thread.start`` returns once that thread is running, and it is inside hashlib
    long before the interpreter would hand this thread the GIL back for the copy.
    """
    hasher = hashlib.sha256()
    hashing = threading.Thread(target=hasher.update, args=(data,), name="blob-sha256")
    hashing.start()
    copy = bytes(data)
    hashing.join()
    return hasher.hexdigest(), copy


async def send_all(sock: Socket, data: memoryview) -> None:
    while data:
        sent = await sock.send(data)
        data = data[sent:]


async def recv_exactly_into(sock: Socket, view: memoryview) -> None:
    """Fill ``view`` from ``sock``; a connection that ends first is :class:`FrameRejected`."""
    while view:
        received = await sock.recv_into(view)
        if not received:
            raise FrameRejected("bulk connection ended early (truncated stream)")
        view = view[received:]


class _InFlight:
    """Buffers from a pool, at most ``count`` out at once: the frames one transfer has in flight."""

    def __init__(self, count: int, pool: BufferPool) -> None:
        self._slots = trio.Semaphore(count)
        self._pool = pool

    async def take(self, size: int) -> bytearray:
        await self._slots.acquire()
        return self._pool.take(size)

    def give_back(self, buffer: bytearray) -> None:
        self._pool.give_back(buffer)
        self._slots.release()


@contextlib.contextmanager
def _lone_errors_unwrapped() -> Iterator[None]:
    """Re-raise a nursery's only failure as itself, so callers can catch it by type."""
    try:
        yield
    except BaseExceptionGroup as group:
        leaves = leaf_errors(group)
        if len(leaves) == 1:
            raise leaves[0] from None
        raise
