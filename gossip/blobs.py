"""Content-addressed blobs and the direct-stream protocols that move them.

A blob is identified by the lowercase hex SHA-256 of its bytes. Wire protocol
``/medswarm/blob/1.0.0``, one request per stream, moves a whole blob:

    request:  32 bytes   the SHA-256 digest wanted
    response: 1 byte     status (0 found, 1 not found, 2 refused)
              8 bytes    big-endian length          (status 0 only)
              N bytes    the blob, in chunks        (status 0 only)

Providers answer only from blobs they hold and have verified against their hash. The fetcher
enforces its own size limit before reading, hashes while reading and rejects bytes that do not
match; a provider that fails or times out is skipped for the next one. Byte ranges of a blob
travel on ``/medswarm/blob/1.1.0`` (:mod:`gossip.ranges`).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import mmap
import os
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import trio

from gossip.errors import (
    BlobHashMismatch,
    BlobNotFound,
    BlobTooLarge,
    FetchFailed,
)
from gossip.partial import PartialBlob, partial_files, remove_partial_files

if TYPE_CHECKING:
    from gossip.segments import SegmentedFetch

log = logging.getLogger(__name__)

# digest -> the blob's bytes (or a view of them, see BlobStore.view), None if not held
BlobLookup = Callable[[str], bytes | memoryview | None]

BLOB_PROTOCOL = "/medswarm/blob/1.0.0"
STATUS_FOUND = 0
STATUS_NOT_FOUND = 1
STATUS_REFUSED = 2
CHUNK_BYTES = 64 * 1024


def blob_hash(data: bytes) -> str:
    """The identity of a blob: lowercase hex SHA-256 of its bytes."""
    return hashlib.sha256(data).hexdigest()


class BlobStore:
    """Blobs by hash: on disk when ``directory`` is given, otherwise in memory.

    On disk each blob is ``<directory>/<hash>``, written to a temporary file and renamed, so
    a crash never leaves a partial blob under a valid name; a disk-backed store keeps no copy
    on the heap (a node holds models of tens of MB each, several per round), and a file is
    checked against its hash when first read whole, and again whenever its inode, size or
    modification time changes (files this store wrote from hashed bytes count as checked;
    range reads rely on that check). Partial fetches of large blobs
    (:class:`~gossip.partial.PartialBlob`) live beside the blobs under other names and never
    count as blobs. Old blobs go with
    :meth:`discard` and :meth:`prune`. Thread-safe.
    """

    def __init__(self, directory: Path | None = None, max_blob_bytes: int = 256 * 2**20) -> None:
        self._directory = directory
        self._max_blob_bytes = max_blob_bytes
        self._memory: dict[str, bytes] = {}  # the whole store when there is no directory
        self._stored_at: dict[str, float] = {}  # put times of the in-memory store
        self._verified: dict[str, _FileIdentity] = {}  # files whose content hashed right
        self._fetching: set[str] = set()  # digests with a partial fetch open in this process
        self._lock = threading.Lock()
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
            for partial in directory.glob(".partial-*"):  # left by a crash mid-write
                partial.unlink(missing_ok=True)

    @property
    def max_blob_bytes(self) -> int:
        return self._max_blob_bytes

    @property
    def on_disk(self) -> bool:
        """Whether blobs live in files (else in memory)."""
        return self._directory is not None

    def put(self, data: bytes) -> str:
        """Store ``data`` and return its hash."""
        return self.put_verified(blob_hash(data), data)

    def put_verified(self, digest: str, data: bytes | memoryview) -> str:
        """Store ``data`` that the caller has just hashed to ``digest`` (a fetch hashes as it
        reads, and hashing 64 MiB again costs as much as decrypting it)."""
        if len(data) > self._max_blob_bytes:
            raise BlobTooLarge(
                f"blob of {len(data)} bytes exceeds the {self._max_blob_bytes}-byte limit "
                "(raise network.max_blob_bytes in the config if this model is expected)"
            )
        if self._directory is not None:
            return self._write_parts([data], digest)
        with self._lock:
            self._memory.setdefault(digest, bytes(data))
            self._stored_at[digest] = time.time()
        return digest

    def get(self, digest: str) -> bytes | None:
        """The blob with this hash, or ``None``."""
        if self._directory is None:
            with self._lock:
                return self._memory.get(digest)
        found = self._open_checked(digest, read=True)
        return None if found is None else found[1]

    def read_range(self, digest: str, offset: int, count: int) -> tuple[int, bytes] | None:
        """The blob's length and ``count`` of its bytes from ``offset`` (fewer at the end,
        none past it), or ``None`` if it is not held.

        On disk only the range is read, once the file has been checked against its hash
        (see :meth:`checked_path`).
        """
        if self._directory is None:
            data = self.get(digest)
            return None if data is None else (len(data), data[offset : offset + count])
        if not _is_digest(digest):
            return None
        path = self.checked_path(digest)
        if path is None:
            return None
        try:
            with path.open("rb") as handle:
                handle.seek(offset)
                return os.fstat(handle.fileno()).st_size, handle.read(count)
        except (FileNotFoundError, IsADirectoryError):
            return None

    def put_parts(self, parts: Iterable[bytes | memoryview]) -> str:
        """Store the concatenation of ``parts`` and return its hash, without joining them
        in memory when the store is on disk."""
        if self._directory is None:
            return self.put(b"".join(parts))
        return self._write_parts(parts, None)

    def view(self, digest: str) -> bytes | memoryview | None:
        """The blob with this hash without reading it: on disk, a read-only map of its checked
        file (pages come in as they are used, and the map outlives a prune of the file).
        ``None`` if absent."""
        if self._directory is None:
            return self.get(digest)
        path = self.checked_path(digest)
        if path is None:
            return None
        try:
            with path.open("rb") as handle:
                status = os.fstat(handle.fileno())
                with self._lock:
                    checked = self._verified.get(digest) == _identity_of(status)
                if not checked:  # replaced since the check: read it the careful way
                    return self.get(digest)
                if status.st_size == 0:
                    return b""
                return memoryview(mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ))
        except (FileNotFoundError, IsADirectoryError):
            return None

    def checked_path(self, digest: str) -> Path | None:
        """The file holding blob ``digest``, checked against its hash; ``None`` if there is
        no such blob or the store keeps blobs in memory. A corrupt file is deleted."""
        if self._directory is None or not _is_digest(digest):
            return None
        found = self._open_checked(digest, read=False)
        return None if found is None else found[0]

    def _open_checked(self, digest: str, read: bool) -> tuple[Path, bytes | None] | None:
        """Blob ``digest``'s file (and its bytes if ``read``), hashed unless checked before
        and unchanged since; ``None`` if absent. A corrupt file is deleted."""
        assert self._directory is not None
        path = self._directory / digest
        try:
            with path.open("rb") as handle:
                identity = _identity_of(os.fstat(handle.fileno()))
                data = handle.read() if read else None
                with self._lock:
                    if self._verified.get(digest) == identity:
                        return path, data
                if data is not None:
                    actual = blob_hash(data)
                else:
                    actual = hashlib.file_digest(handle, "sha256").hexdigest()
        except (FileNotFoundError, IsADirectoryError):
            return None
        if actual != digest:
            log.warning("blob file %s is corrupt; deleting it", path)
            path.unlink(missing_ok=True)
            return None
        with self._lock:
            self._verified[digest] = identity
        return path, data

    def has(self, digest: str) -> bool:
        if self._directory is None:
            with self._lock:
                return digest in self._memory
        return (self._directory / digest).is_file()

    def discard(self, digests: Iterable[str]) -> int:
        """Delete these blobs (those present); return how many were deleted."""
        deleted = 0
        for digest in digests:
            if self._directory is None:
                with self._lock:
                    self._stored_at.pop(digest, None)
                    deleted += self._memory.pop(digest, None) is not None
            elif _is_digest(digest):
                path = self._directory / digest
                with self._lock:
                    self._verified.pop(digest, None)
                if path.is_file():
                    path.unlink(missing_ok=True)
                    deleted += 1
        return deleted

    def prune(self, stored_before: float, keep: Iterable[str] = ()) -> int:
        """Delete blobs last stored before ``stored_before`` (a ``time.time()``), except ``keep``.

        Storing a blob again counts as storing it, so a blob in use is never old. Partial
        fetches not written to since then go too (unless under way); they are not counted.
        """
        kept = set(keep)
        if self._directory is None:
            with self._lock:
                old = [d for d, at in self._stored_at.items() if at < stored_before]
        else:
            old = []
            for path in self._directory.iterdir():
                with contextlib.suppress(FileNotFoundError):
                    if _is_digest(path.name) and path.stat().st_mtime < stored_before:
                        old.append(path.name)
            for digest, changed_at in partial_files(self._directory).items():
                with self._lock:
                    busy = digest in self._fetching
                old_partial = _is_digest(digest) and changed_at < stored_before
                if old_partial and digest not in kept and not busy:
                    remove_partial_files(self._directory, digest)
        return self.discard(d for d in old if d not in kept)

    def open_partial(self, digest: str, length: int, segment_bytes: int) -> PartialBlob:
        """A fresh partial fetch of ``digest``: on disk, so that it can be resumed, when the
        store is and no other fetch of ``digest`` is under way in this process."""
        if self._directory is None or not _is_digest(digest) or not self._claim(digest):
            return PartialBlob(digest, length, segment_bytes)
        try:
            return PartialBlob.create(
                self._directory, digest, length, segment_bytes, lambda: self._release(digest)
            )
        except BaseException:
            self._release(digest)
            raise

    def resume_partial(self, digest: str, max_bytes: int) -> PartialBlob | None:
        """The partial fetch of ``digest`` an earlier run left on disk, if any."""
        if self._directory is None or not _is_digest(digest) or not self._claim(digest):
            return None
        try:
            found = PartialBlob.resume(
                self._directory, digest, max_bytes, lambda: self._release(digest)
            )
        except BaseException:
            self._release(digest)
            raise
        if found is None:
            self._release(digest)
        return found

    def _claim(self, digest: str) -> bool:
        with self._lock:
            if digest in self._fetching:
                return False
            self._fetching.add(digest)
            return True

    def _release(self, digest: str) -> None:
        with self._lock:
            self._fetching.discard(digest)

    def digests(self) -> set[str]:
        """Every blob held now."""
        if self._directory is None:
            with self._lock:
                return set(self._memory)
        return {p.name for p in self._directory.iterdir() if _is_digest(p.name)}

    def _write_parts(self, parts: Iterable[bytes | memoryview], digest: str | None) -> str:
        """Write a blob to a temporary file and rename it to its hash; return the hash.

        ``digest`` is the hash the caller computed, or ``None`` to hash while writing. A
        blob already held is only marked as stored again (see :meth:`prune`).
        """
        assert self._directory is not None
        if digest is not None and (self._directory / digest).exists():
            self._touch(digest)
            return digest
        hasher = hashlib.sha256() if digest is None else None
        size = 0
        fd, tmp = tempfile.mkstemp(dir=self._directory, prefix=".partial-")
        try:
            with os.fdopen(fd, "wb") as handle:
                for part in parts:
                    size += memoryview(part).nbytes
                    if size > self._max_blob_bytes:
                        raise BlobTooLarge(
                            f"blob of more than {self._max_blob_bytes} bytes exceeds the limit "
                            "(raise network.max_blob_bytes in the config if this model is "
                            "expected)"
                        )
                    if hasher is not None:
                        hasher.update(part)
                    handle.write(part)
            name = hasher.hexdigest() if hasher is not None else str(digest)
            target = self._directory / name
            if target.exists():
                Path(tmp).unlink(missing_ok=True)
                self._touch(name)
                return name
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        with contextlib.suppress(FileNotFoundError), self._lock:
            self._verified[name] = _identity(target)
        return name

    def _touch(self, digest: str) -> None:
        """Mark blob ``digest`` as stored now, keeping it checked if it was."""
        assert self._directory is not None
        target = self._directory / digest
        with contextlib.suppress(FileNotFoundError):
            before = _identity(target)
            os.utime(target)
            with self._lock:
                if self._verified.get(digest) == before:  # still the bytes checked before
                    self._verified[digest] = _identity(target)


def _is_digest(name: str) -> bool:
    return len(name) == 64 and all(c in "0123456789abcdef" for c in name)


_FileIdentity = tuple[int, int, int]  # inode, size, modification time (ns)


def _identity(path: Path) -> _FileIdentity:
    return _identity_of(path.stat())


def _identity_of(status: os.stat_result) -> _FileIdentity:
    return status.st_ino, status.st_size, status.st_mtime_ns


class ByteStream(Protocol):
    """The part of a libp2p stream the blob protocol uses."""

    async def read(self, n: int | None = None) -> bytes: ...
    async def write(self, data: bytes) -> None: ...
    async def close(self) -> None: ...
    async def reset(self) -> None: ...


async def serve_blob(stream: ByteStream, lookup: BlobLookup) -> None:
    """Answer one blob request on ``stream`` from ``lookup``. Never raises."""
    try:
        request = await read_exactly(stream, 32)
        data = lookup(request.hex())
        if data is None:
            await stream.write(bytes([STATUS_NOT_FOUND]))
        else:
            await stream.write(bytes([STATUS_FOUND]) + len(data).to_bytes(8, "big"))
            await write_in_chunks(stream, data)
        await stream.close()
    except Exception as exc:  # an escaping exception would take the whole host down
        log.debug("blob request failed: %r", exc)
        await reset_quietly(stream)


async def write_in_chunks(stream: ByteStream, data: bytes | memoryview) -> None:
    """Write ``data`` to ``stream`` in pieces of :data:`CHUNK_BYTES`."""
    view = memoryview(data)
    for start in range(0, len(view), CHUNK_BYTES):
        await stream.write(bytes(view[start : start + CHUNK_BYTES]))


async def request_blob(stream: ByteStream, digest: str, max_bytes: int) -> bytes:
    """Ask for blob ``digest`` on an open stream; return its verified bytes."""
    await stream.write(bytes.fromhex(digest))
    status = (await read_exactly(stream, 1))[0]
    if status == STATUS_NOT_FOUND:
        raise BlobNotFound(f"provider does not have blob {digest}")
    if status != STATUS_FOUND:
        raise BlobNotFound(f"provider refused blob {digest} (status {status})")
    length = int.from_bytes(await read_exactly(stream, 8), "big")
    if length > max_bytes:
        raise BlobTooLarge(f"provider offers {length} bytes for {digest}, limit is {max_bytes}")
    hasher = hashlib.sha256()
    parts: list[bytes] = []
    received = 0
    while received < length:
        chunk = await stream.read(min(CHUNK_BYTES, length - received))
        if not chunk:
            raise FetchFailed(f"stream ended after {received} of {length} bytes of {digest}")
        hasher.update(chunk)
        parts.append(chunk)
        received += len(chunk)
    if hasher.hexdigest() != digest:
        raise BlobHashMismatch(
            f"bytes received for blob {digest} hash to {hasher.hexdigest()}: the provider "
            "sent corrupt or forged data"
        )
    return b"".join(parts)


async def read_exactly(stream: ByteStream, n: int) -> bytes:
    """Read exactly ``n`` bytes or raise :class:`FetchFailed` on a short stream."""
    parts: list[bytes] = []
    remaining = n
    while remaining:
        try:
            chunk = await stream.read(remaining)
        except Exception as exc:  # libp2p signals end of stream with an exception
            raise FetchFailed(f"stream closed with {remaining} of {n} bytes unread") from exc
        if not chunk:
            raise FetchFailed(f"stream closed with {remaining} of {n} bytes unread")
        parts.append(chunk)
        remaining -= len(chunk)
    return b"".join(parts)


OpenStream = Callable[[str], Awaitable[ByteStream]]
# (provider, digest, max_bytes) -> verified bytes, or None to use a stream instead
FastPath = Callable[[str, str, int], Awaitable[bytes | None]]


async def fetch_from_providers(
    digest: str,
    providers: Sequence[str],
    open_stream: OpenStream,
    max_bytes: int,
    timeout: float,
    on_forged: Callable[[str], None] | None = None,
    fast_path: FastPath | None = None,
    segmented: SegmentedFetch | None = None,
) -> bytes:
    """Fetch ``digest`` from the first provider that delivers verified bytes.

    Each provider gets ``timeout`` seconds. Hash mismatches, missing blobs, dead streams
    and timeouts move on to the next provider; if all fail, :class:`FetchFailed` lists why.
    ``fast_path``, when given, is tried first at each provider (the bulk channel); it
    returns verified bytes, raises like :func:`request_blob`, or returns ``None`` to use a
    stream from ``open_stream`` instead. With ``segmented``, a large blob that several
    providers hold (or whose fetch an earlier run left unfinished) is fetched in segments
    from all of them at once (:mod:`gossip.segments`); one provider at a time remains the
    fallback. ``on_forged`` hears of each provider proven to have sent wrong bytes.
    """

    async def whole(candidates: Sequence[str], forged: Callable[[str], None] | None) -> bytes:
        return await _fetch_whole(
            digest, candidates, open_stream, max_bytes, timeout, forged, fast_path
        )

    if segmented is None:
        return await whole(providers, on_forged)
    return await segmented.fetch(digest, providers, max_bytes, whole, on_forged)


async def _fetch_whole(
    digest: str,
    providers: Sequence[str],
    open_stream: OpenStream,
    max_bytes: int,
    timeout: float,
    on_forged: Callable[[str], None] | None,
    fast_path: FastPath | None,
) -> bytes:
    """The whole blob from one provider at a time (see :func:`fetch_from_providers`)."""
    failures: list[str] = []
    for provider in providers:
        stream: ByteStream | None = None
        try:
            with trio.fail_after(timeout):
                data = await fast_path(provider, digest, max_bytes) if fast_path else None
                if data is None:
                    stream = await open_stream(provider)
                    data = await request_blob(stream, digest, max_bytes)
            if stream is not None:
                await close_quietly(stream)
            return data
        except trio.TooSlowError:
            failures.append(f"{provider}: no answer within {timeout:.1f}s")
        except BlobHashMismatch as exc:
            log.warning("provider %s sent a forged blob: %s", provider, exc)
            failures.append(f"{provider}: hash mismatch")
            if on_forged is not None:
                on_forged(provider)
        except Exception as exc:
            failures.append(f"{provider}: {exc}")
        if stream is not None:
            await reset_quietly(stream)
    raise FetchFailed(f"could not fetch blob {digest}: " + "; ".join(failures or ["no providers"]))


async def close_quietly(stream: ByteStream) -> None:
    """Close ``stream``, ignoring a peer that is already gone."""
    with contextlib.suppress(Exception):
        await stream.close()


async def reset_quietly(stream: ByteStream) -> None:
    """Reset ``stream``, ignoring a peer that is already gone."""
    with contextlib.suppress(Exception):
        await stream.reset()
