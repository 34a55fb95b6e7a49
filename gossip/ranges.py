"""Byte ranges of blobs: the ``/medswarm/blob/1.1.0`` stream protocol and the client that
the segment scheduler (:mod:`gossip.segments`) asks for ranges.

Wire protocol ``/medswarm/blob/1.1.0``, one request per stream (``/medswarm/blob/1.0.0``, the
whole blob, is in :mod:`gossip.blobs`):

    request:  32 bytes   the SHA-256 digest wanted
               8 bytes   offset of the first byte wanted (big-endian)
               8 bytes   how many bytes are wanted (0: only the blob's length)
    response:  1 byte    status (0 found, 1 not found, 2 refused, 3 offset past the end)
               8 bytes   the whole blob's length   (status 0 and 3)
               n bytes   the range, in chunks      (status 0; n = min(wanted, length - offset))

A provider answers only from blobs it holds and has verified against their hash
(:meth:`gossip.blobs.BlobStore.read_range`). A range cannot be checked on its own: the fetcher
checks the whole blob's hash once every range is in. The range travels inside the
Noise-encrypted libp2p connection, so what arrives is what that provider sent.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import trio

from gossip.blobs import (
    CHUNK_BYTES,
    STATUS_FOUND,
    STATUS_NOT_FOUND,
    ByteStream,
    OpenStream,
    close_quietly,
    read_exactly,
    reset_quietly,
    write_in_chunks,
)
from gossip.errors import BlobLengthMismatch, BlobNotFound, FetchFailed

log = logging.getLogger(__name__)

BLOB_RANGE_PROTOCOL = "/medswarm/blob/1.1.0"
STATUS_OUTSIDE = 3  # a range that starts past the end of the blob
RANGE_REQUEST_BYTES = 32 + 8 + 8
RESET_SECONDS = 1.0  # how long resetting an abandoned stream may take

# (digest, offset, count) -> (the blob's length, its bytes offset..offset+count clamped to the
# blob, empty when offset is past the end), or None when the blob is not held
RangeLookup = Callable[[str, int, int], tuple[int, bytes] | None]
# (provider, digest, blob length, offset, out) -> True once ``out`` holds the range, False to
# use a stream instead
FastRange = Callable[[str, str, int, int, memoryview], Awaitable[bool]]


def ranges_of(lookup: Callable[[str], bytes | None]) -> RangeLookup:
    """A range lookup that slices what a whole-blob lookup returns."""

    def read_range(digest: str, offset: int, count: int) -> tuple[int, bytes] | None:
        data = lookup(digest)
        return None if data is None else (len(data), data[offset : offset + count])

    return read_range


async def serve_blob_range(stream: ByteStream, lookup: RangeLookup) -> None:
    """Answer one range request (``/medswarm/blob/1.1.0``) on ``stream``. Never raises."""
    try:
        request = await read_exactly(stream, RANGE_REQUEST_BYTES)
        offset = int.from_bytes(request[32:40], "big")
        count = int.from_bytes(request[40:], "big")
        found = lookup(request[:32].hex(), offset, count)
        if found is None:
            await stream.write(bytes([STATUS_NOT_FOUND]))
        elif offset > found[0]:
            await stream.write(bytes([STATUS_OUTSIDE]) + found[0].to_bytes(8, "big"))
        else:
            length, data = found
            if len(data) != min(count, length - offset):
                raise ValueError(f"range lookup gave {len(data)} bytes for {count} at {offset}")
            await stream.write(bytes([STATUS_FOUND]) + length.to_bytes(8, "big"))
            await write_in_chunks(stream, data)
        await stream.close()
    except Exception as exc:  # an escaping exception would take the whole host down
        log.debug("blob range request failed: %r", exc)
        await reset_quietly(stream)


async def request_blob_length(stream: ByteStream, digest: str) -> int:
    """Ask for the length of blob ``digest`` on an open ``/medswarm/blob/1.1.0`` stream."""
    return await _ask_for_range(stream, digest, 0, 0)


async def request_range(
    stream: ByteStream, digest: str, length: int, offset: int, out: memoryview
) -> None:
    """Read bytes ``offset`` to ``offset + len(out)`` of blob ``digest``, which is ``length``
    bytes long, into ``out``, on an open ``/medswarm/blob/1.1.0`` stream.

    A provider that gives the blob another length raises :class:`BlobLengthMismatch`. The
    bytes are not verified here: only the whole blob has a known hash.
    """
    claimed = await _ask_for_range(stream, digest, offset, len(out))
    if claimed != length:
        raise BlobLengthMismatch(
            f"provider says blob {digest} has {claimed} bytes, not {length}", claimed
        )
    await read_exactly_into(stream, out)


async def _ask_for_range(stream: ByteStream, digest: str, offset: int, count: int) -> int:
    """Send a range request; return the blob's length once the provider has it."""
    await stream.write(bytes.fromhex(digest) + offset.to_bytes(8, "big") + count.to_bytes(8, "big"))
    status = (await read_exactly(stream, 1))[0]
    if status == STATUS_NOT_FOUND:
        raise BlobNotFound(f"provider does not have blob {digest}")
    if status == STATUS_OUTSIDE:
        claimed = int.from_bytes(await read_exactly(stream, 8), "big")
        raise BlobLengthMismatch(
            f"provider says blob {digest} ends at byte {claimed}, before offset {offset}", claimed
        )
    if status != STATUS_FOUND:
        raise BlobNotFound(f"provider refused blob {digest} (status {status})")
    return int.from_bytes(await read_exactly(stream, 8), "big")


async def read_exactly_into(stream: ByteStream, out: memoryview) -> None:
    """Fill ``out`` from ``stream`` or raise :class:`FetchFailed` on a short stream."""
    received = 0
    while received < len(out):
        try:
            chunk = await stream.read(min(CHUNK_BYTES, len(out) - received))
        except Exception as exc:  # libp2p signals end of stream with an exception
            raise FetchFailed(f"stream closed after {received} of {len(out)} bytes") from exc
        if not chunk:
            raise FetchFailed(f"stream closed after {received} of {len(out)} bytes")
        out[received : received + len(chunk)] = chunk
        received += len(chunk)


class RangeClient:
    """Asks providers for byte ranges of blobs (the :class:`~gossip.segments.RangeSource` of a
    node): over ``fast_path`` (the bulk channel) when it can, otherwise on a
    ``/medswarm/blob/1.1.0`` stream from ``open_stream``. Callers bound the time."""

    def __init__(self, open_stream: OpenStream, fast_path: FastRange | None = None) -> None:
        self._open_stream = open_stream
        self._fast_path = fast_path

    async def blob_length(self, provider: str, digest: str) -> int:
        async with _stream_to(self._open_stream, provider) as stream:
            return await request_blob_length(stream, digest)

    async def read_range(
        self, provider: str, digest: str, length: int, offset: int, out: memoryview
    ) -> None:
        if self._fast_path is not None and await self._fast_path(
            provider, digest, length, offset, out
        ):
            return
        async with _stream_to(self._open_stream, provider) as stream:
            await request_range(stream, digest, length, offset, out)


@contextlib.asynccontextmanager
async def _stream_to(open_stream: OpenStream, provider: str) -> AsyncIterator[ByteStream]:
    """A stream to ``provider``: closed after use, reset (briefly, even when cancelled) after
    a failure."""
    stream = await open_stream(provider)
    try:
        yield stream
    except BaseException:
        with trio.CancelScope(shield=True), trio.move_on_after(RESET_SECONDS):
            await reset_quietly(stream)
        raise
    await close_quietly(stream)
