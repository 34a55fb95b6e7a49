"""Byte ranges of blobs: the /medswarm/blob/1.1.0 stream protocol, the store's range reads."""

import os
from pathlib import Path

import pytest
import trio

from gossip.blobs import BlobStore, blob_hash
from gossip.errors import BlobLengthMismatch, BlobNotFound
from gossip.ranges import (
    RangeClient,
    RangeLookup,
    ranges_of,
    request_blob_length,
    request_range,
    serve_blob_range,
)
from tests.unit.gossip.test_blobs import End, Pipe

DATA = bytes(range(256)) * 1000  # 256 000 bytes: several 64 KiB chunks
DIGEST = blob_hash(DATA)


async def ask(lookup: RangeLookup, length: int, offset: int, count: int) -> bytes:
    """Run one range request against ``serve_blob_range``; the bytes that came."""
    client, server = Pipe().ends()
    out = bytearray(count)
    failure: list[Exception] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_blob_range, server, lookup)
        try:
            with trio.fail_after(5):
                await request_range(client, DIGEST, length, offset, memoryview(out))
        except Exception as exc:
            failure.append(exc)
        nursery.cancel_scope.cancel()
    if failure:
        raise failure[0]
    return bytes(out)


async def test_a_range_from_the_middle_and_one_ending_at_the_end() -> None:
    served = ranges_of({DIGEST: DATA}.get)
    assert await ask(served, len(DATA), 70_000, 100_000) == DATA[70_000:170_000]
    assert await ask(served, len(DATA), len(DATA) - 5, 5) == DATA[-5:]


async def test_the_length_alone_is_asked_with_an_empty_range() -> None:
    client, server = Pipe().ends()
    sent: list[int] = []

    def lookup(digest: str, offset: int, count: int) -> tuple[int, bytes] | None:
        sent.append(count)
        return ranges_of({DIGEST: DATA}.get)(digest, offset, count)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_blob_range, server, lookup)
        assert await request_blob_length(client, DIGEST) == len(DATA)
    assert sent == [0]


async def test_a_provider_that_gives_another_length_is_caught_before_the_bytes() -> None:
    served = ranges_of({DIGEST: DATA[:-1]}.get)  # one byte short of the blob asked for
    with pytest.raises(BlobLengthMismatch, match="255999 bytes, not 256000") as caught:
        await ask(served, len(DATA), 0, 1000)
    assert caught.value.claimed == len(DATA) - 1
    with pytest.raises(BlobLengthMismatch, match="ends at byte 255999") as past:
        await ask(served, len(DATA), len(DATA), 0)
    assert past.value.claimed == len(DATA) - 1


async def test_a_blob_the_provider_lacks_is_not_found() -> None:
    with pytest.raises(BlobNotFound):
        await ask(ranges_of({}.get), len(DATA), 0, 10)


async def test_a_lookup_that_answers_the_wrong_size_resets_the_stream() -> None:
    def broken(digest: str, offset: int, count: int) -> tuple[int, bytes]:
        return len(DATA), b"short"

    with pytest.raises(Exception, match="stream closed"):
        await ask(broken, len(DATA), 0, 1000)


def test_the_store_reads_ranges_of_verified_files_only(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    digest = store.put(DATA)
    assert store.read_range(digest, 1000, 24) == (len(DATA), DATA[1000:1024])
    assert store.read_range(digest, len(DATA) - 3, 10) == (len(DATA), DATA[-3:])
    assert store.read_range(digest, len(DATA) + 1, 10) == (len(DATA), b"")
    assert store.read_range("0" * 64, 0, 10) is None
    assert BlobStore().read_range(BlobStore().put(b"abc"), 1, 5) is None  # another store
    memory = BlobStore()
    assert memory.read_range(memory.put(b"abcdef"), 2, 3) == (6, b"cde")

    # The same size, another content and another modification time: checked again, refused.
    path = tmp_path / digest
    path.write_bytes(bytes(len(DATA)))
    os.utime(path, ns=(10**18, 10**18))
    assert store.read_range(digest, 0, 10) is None
    assert not path.exists()  # deleted as corrupt, as a whole read would


def test_a_fresh_store_checks_a_file_before_its_first_range(tmp_path: Path) -> None:
    digest = BlobStore(tmp_path).put(DATA)
    (tmp_path / digest).write_bytes(b"x" * len(DATA))
    assert BlobStore(tmp_path).read_range(digest, 0, 10) is None


class Streams:
    """Opens in-memory streams to a range server; counts them."""

    def __init__(self, nursery: trio.Nursery, lookup: RangeLookup) -> None:
        self.nursery, self.lookup, self.opened = nursery, lookup, 0

    async def open(self, provider: str) -> End:
        self.opened += 1
        client, server = Pipe().ends()
        self.nursery.start_soon(serve_blob_range, server, self.lookup)
        return client


async def test_the_client_uses_the_fast_path_when_it_can_and_a_stream_otherwise() -> None:
    offered: list[tuple[str, int]] = []

    async def fast(provider: str, digest: str, length: int, offset: int, out: memoryview) -> bool:
        offered.append((provider, offset))
        if provider != "bulk":
            return False
        out[:] = DATA[offset : offset + len(out)]
        return True

    async with trio.open_nursery() as nursery:
        streams = Streams(nursery, ranges_of({DIGEST: DATA}.get))
        client = RangeClient(streams.open, fast)
        for provider in ("bulk", "stream"):
            out = bytearray(50)
            await client.read_range(provider, DIGEST, len(DATA), 300, memoryview(out))
            assert out == DATA[300:350]
        assert await client.blob_length("stream", DIGEST) == len(DATA)
    assert offered == [("bulk", 300), ("stream", 300)]
    assert streams.opened == 2  # the stream range and the length
