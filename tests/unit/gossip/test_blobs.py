import hashlib
import os
from pathlib import Path

import pytest
import trio

from gossip.blobs import BlobStore, blob_hash, fetch_from_providers, request_blob, serve_blob
from gossip.errors import BlobHashMismatch, BlobTooLarge, FetchFailed


class Pipe:
    """An in-memory duplex stream pair standing in for a libp2p stream (unit tests only)."""

    def __init__(self) -> None:
        self.a_to_b_send, self.a_to_b_recv = trio.open_memory_channel[bytes](1000)
        self.b_to_a_send, self.b_to_a_recv = trio.open_memory_channel[bytes](1000)

    def ends(self) -> tuple["End", "End"]:
        return End(self.a_to_b_send, self.b_to_a_recv), End(self.b_to_a_send, self.a_to_b_recv)


class End:
    def __init__(self, send: trio.MemorySendChannel[bytes], recv: trio.MemoryReceiveChannel[bytes]):
        self.send, self.recv, self.buffer = send, recv, b""

    async def read(self, n: int | None = None) -> bytes:
        if not self.buffer:
            try:
                self.buffer = await self.recv.receive()
            except trio.EndOfChannel:
                return b""
        size = len(self.buffer) if n is None else n
        out, self.buffer = self.buffer[:size], self.buffer[size:]
        return out

    async def write(self, data: bytes) -> None:
        await self.send.send(data)

    async def close(self) -> None:
        self.send.close()

    async def reset(self) -> None:
        self.send.close()


def test_hash_is_sha256_hex() -> None:
    assert blob_hash(b"abc") == hashlib.sha256(b"abc").hexdigest()


def test_store_round_trip_on_disk(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    digest = store.put(b"weights")
    assert (tmp_path / digest).read_bytes() == b"weights"
    assert BlobStore(tmp_path).get(digest) == b"weights"
    assert store.has(digest)
    assert not list(tmp_path.glob(".partial-*"))


def test_store_ignores_corrupt_file(tmp_path: Path) -> None:
    digest = BlobStore(tmp_path).put(b"weights")
    (tmp_path / digest).write_bytes(b"rotten")
    assert BlobStore(tmp_path).get(digest) is None


def test_store_checks_a_file_again_once_it_changed(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    digest = store.put(b"weights")
    assert store.get(digest) == b"weights"  # written from hashed bytes: no second hash
    (tmp_path / digest).write_bytes(b"weights?")  # changed in place (same file)
    assert store.get(digest) is None
    assert not store.has(digest)  # the corrupt file was deleted


def test_a_disk_store_keeps_no_copy_on_the_heap(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    digest = store.put(b"weights")
    (tmp_path / digest).unlink()  # only the file held it
    assert store.get(digest) is None and not store.has(digest)


@pytest.mark.parametrize("on_disk", [True, False])
def test_discard_and_prune_old_blobs(tmp_path: Path, on_disk: bool) -> None:
    store = BlobStore(tmp_path if on_disk else None)
    old, kept, again = store.put(b"old"), store.put(b"kept"), store.put(b"again")
    if on_disk:
        for digest in (old, kept, again):
            os.utime(tmp_path / digest, (1000.0, 1000.0))
    else:
        store._stored_at.update({old: 1000.0, kept: 1000.0, again: 1000.0})
    cutoff = 2000.0
    store.put(b"again")  # stored again: in use, so not old
    new = store.put(b"new")
    assert store.prune(cutoff, keep=[kept]) == 1
    assert store.digests() == {kept, again, new}
    assert store.discard([kept, "0" * 64]) == 1
    assert store.digests() == {again, new}


def test_a_crash_mid_write_leaves_nothing_behind(tmp_path: Path) -> None:
    (tmp_path / ".partial-abc").write_bytes(b"half a model")
    store = BlobStore(tmp_path)
    assert not list(tmp_path.glob(".partial-*")) and store.digests() == set()


def test_store_limits_size() -> None:
    with pytest.raises(BlobTooLarge, match="max_blob_bytes"):
        BlobStore(max_blob_bytes=4).put(b"12345")


async def exchange(served: dict[str, bytes], digest: str, max_bytes: int = 10**6) -> bytes:
    client, server = Pipe().ends()
    outcome: list[bytes | Exception] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_blob, server, served.get)
        try:
            outcome.append(await request_blob(client, digest, max_bytes))
        except Exception as exc:
            outcome.append(exc)
        nursery.cancel_scope.cancel()
    if isinstance(outcome[0], Exception):
        raise outcome[0]
    return outcome[0]


async def test_request_gets_multi_chunk_blob() -> None:
    data = bytes(range(256)) * 1000  # 256 000 bytes: four 64 KiB chunks
    assert await exchange({blob_hash(data): data}, blob_hash(data)) == data


async def test_forged_bytes_are_detected() -> None:
    wanted = blob_hash(b"real")
    with pytest.raises(BlobHashMismatch, match="forged"):
        await exchange({wanted: b"fake"}, wanted)


async def test_oversize_offer_is_refused_before_reading() -> None:
    data = b"x" * 100
    with pytest.raises(BlobTooLarge):
        await exchange({blob_hash(data): data}, blob_hash(data), max_bytes=99)


async def test_fetch_moves_on_from_a_forger_to_an_honest_provider() -> None:
    real = b"the real update"
    digest = blob_hash(real)
    contents = {"forger": {digest: b"a forged update"}, "honest": {digest: real}}
    forged: list[str] = []

    async def open_stream(provider: str) -> End:
        client, server = Pipe().ends()
        nursery.start_soon(serve_blob, server, contents[provider].get)
        return client

    async with trio.open_nursery() as nursery:
        data = await fetch_from_providers(
            digest, ["forger", "honest"], open_stream, 10**6, 1.0, on_forged=forged.append
        )
    assert data == real
    assert forged == ["forger"]


async def test_fetch_reports_every_failure() -> None:
    async def open_stream(provider: str) -> End:
        raise ConnectionError(f"{provider} is down")

    with pytest.raises(FetchFailed, match=r"a is down.*b is down"):
        await fetch_from_providers("00" * 32, ["a", "b"], open_stream, 10, 1.0)


@pytest.mark.parametrize("on_disk", [True, False])
def test_put_parts_stores_the_joined_bytes(tmp_path: Path, on_disk: bool) -> None:
    store = BlobStore(tmp_path if on_disk else None, max_blob_bytes=10)
    digest = store.put_parts([b"wei", memoryview(b"ghts")])
    assert digest == blob_hash(b"weights") and store.get(digest) == b"weights"
    assert store.put_parts([b"weights"]) == digest  # stored again: same blob
    with pytest.raises(BlobTooLarge):
        store.put_parts([b"weights", b"!!!!"])
    if on_disk:
        assert {p.name for p in tmp_path.iterdir()} == {digest}  # no temporary file left


def test_checked_path_hashes_a_changed_file_and_deletes_it_if_corrupt(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    digest = store.put(b"weights")
    assert store.checked_path(digest) == tmp_path / digest
    assert BlobStore(tmp_path).checked_path(digest) == tmp_path / digest  # hashed from disk
    (tmp_path / digest).write_bytes(b"weights?")
    assert store.checked_path(digest) is None and not store.has(digest)
    assert BlobStore(None).checked_path(digest) is None  # memory stores have no files


def test_a_view_of_a_disk_blob_is_its_checked_bytes_and_outlives_a_prune(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    data = b"model bytes" * 1000
    digest = store.put(data)
    view = store.view(digest)
    assert view is not None and bytes(view) == data
    store.discard([digest])
    assert bytes(view) == data  # still mapped after the file is gone
    assert store.view(digest) is None
    # A file changed behind the store's back is checked again, and a corrupt one is deleted.
    digest = store.put(data)
    (tmp_path / digest).write_bytes(b"tampered" + data[8:])
    assert store.view(digest) is None
    assert not (tmp_path / digest).exists()
    assert BlobStore().view(digest) is None
    empty = store.put(b"")
    assert store.view(empty) == b""
