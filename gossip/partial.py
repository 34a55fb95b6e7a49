"""A blob being fetched in segments, and what a restarted node needs to go on with it.

Segments are received straight into one preallocated buffer. When the blob store is on disk,
each segment is also written, once received, to ``<hash>.part`` in the store's directory, and
a sidecar ``<hash>.part.json`` lists the segments done so far:

    {"version": 1, "length": <blob bytes>, "segment_bytes": <bytes>, "done": [0, 1, 4]}

A node restarted mid-fetch reads the done segments back and fetches only the others. Neither
file is ever a blob: the store lists and serves only names that are a bare hash, and the
partial file takes the blob's name (one rename) only after the whole buffer hashed right.
Nothing is synced to the disk (as for whole blobs): after a power cut a segment listed as done
may hold stale bytes, which the hash check at the end catches.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from medswarm import untrusted_json

log = logging.getLogger(__name__)

SIDECAR_VERSION = 1
MAX_RESUMED_SEGMENTS = 2**16
"""Most segments a fetch is resumed with (a 4 GiB blob at the smallest segment size, 64 KiB);
a sidecar that plans more is discarded, so that a corrupt one cannot plan millions."""
PART_SUFFIX = ".part"
SIDECAR_SUFFIX = ".part.json"


@dataclass(frozen=True)
class Segment:
    """One piece of a blob that is requested as a byte range."""

    index: int
    offset: int
    size: int


def plan_segments(length: int, segment_bytes: int) -> list[Segment]:
    """The segments of a blob of ``length`` bytes: ``segment_bytes`` each, the last one less."""
    if segment_bytes < 1:
        raise ValueError(f"segment size must be positive, not {segment_bytes}")
    return [
        Segment(index, offset, min(segment_bytes, length - offset))
        for index, offset in enumerate(range(0, length, segment_bytes))
    ]


class PartialBlob:
    """The buffer of one segmented fetch and, on disk, its partial file and sidecar.

    Use :meth:`create` or :meth:`resume` for one on disk; the plain constructor gives one that
    lives in memory only. Exactly one of :meth:`finish`, :meth:`discard` or :meth:`close` ends
    it; after :meth:`close` the files stay for the next attempt.
    """

    def __init__(
        self,
        digest: str,
        length: int,
        segment_bytes: int,
        *,
        directory: Path | None = None,
        done: Iterable[int] = (),
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self.digest = digest
        self.length = length
        self.segment_bytes = segment_bytes
        self.segments = plan_segments(length, segment_bytes)
        self.done: set[int] = set(done)
        self.buffer = bytearray(length)
        self._directory = directory
        self._fd: int | None = None
        self._on_close = on_close

    @classmethod
    def create(
        cls,
        directory: Path,
        digest: str,
        length: int,
        segment_bytes: int,
        on_close: Callable[[], None] | None = None,
    ) -> PartialBlob:
        """A fresh partial fetch on disk; replaces any earlier partial files of ``digest``."""
        remove_partial_files(directory, digest)
        partial = cls(digest, length, segment_bytes, directory=directory, on_close=on_close)
        try:
            partial._fd = os.open(part_path(directory, digest), os.O_RDWR | os.O_CREAT, 0o644)
            os.ftruncate(partial._fd, length)
            partial._write_sidecar()
        except BaseException:
            partial.discard()
            raise
        return partial

    @classmethod
    def resume(
        cls,
        directory: Path,
        digest: str,
        max_bytes: int,
        on_close: Callable[[], None] | None = None,
    ) -> PartialBlob | None:
        """The partial fetch of ``digest`` a previous run left, or ``None`` if there is none.

        Files that do not describe a usable partial fetch (unreadable sidecar, a length above
        ``max_bytes``, a partial file of the wrong size) are deleted.
        """
        sidecar = sidecar_path(directory, digest)
        if not sidecar.is_file():
            return None
        try:
            record = untrusted_json.loads(sidecar.read_text())
            length, segment_bytes, done = _checked_record(record, max_bytes)
            fd = os.open(part_path(directory, digest), os.O_RDWR)
        except (OSError, ValueError) as exc:
            log.warning("discarding the partial fetch of %s: %s", digest, exc)
            remove_partial_files(directory, digest)
            return None
        partial = cls(
            digest, length, segment_bytes, directory=directory, done=done, on_close=on_close
        )
        partial._fd = fd
        try:
            if os.fstat(fd).st_size != length:
                raise ValueError(f"partial file is not {length} bytes long")
            if not done <= {segment.index for segment in partial.segments}:
                raise ValueError("sidecar lists segments the blob does not have")
            with os.fdopen(os.dup(fd), "rb") as handle:
                handle.readinto(partial.buffer)
        except (OSError, ValueError) as exc:
            log.warning("discarding the partial fetch of %s: %s", digest, exc)
            partial.discard()
            return None
        return partial

    @property
    def on_disk(self) -> bool:
        return self._fd is not None

    def view(self, segment: Segment) -> memoryview:
        """The part of the buffer that ``segment`` fills."""
        return memoryview(self.buffer)[segment.offset : segment.offset + segment.size]

    def missing(self) -> list[Segment]:
        return [segment for segment in self.segments if segment.index not in self.done]

    async def save(self, segment: Segment) -> None:
        """Record ``segment`` as received (on disk: its bytes, then the sidecar)."""
        if self._fd is not None:
            await trio.to_thread.run_sync(_write_at, self._fd, self.view(segment), segment.offset)
        self.done.add(segment.index)
        if self._fd is not None:
            self._write_sidecar()

    def finish(self) -> None:
        """The buffer hashed right: on disk, the partial file becomes the blob's file."""
        fd, self._fd = self._fd, None
        if fd is not None and self._directory is not None:
            os.close(fd)
            with contextlib.suppress(FileNotFoundError):  # pruned meanwhile: the caller stores it
                os.replace(part_path(self._directory, self.digest), self._directory / self.digest)
            sidecar_path(self._directory, self.digest).unlink(missing_ok=True)
        self.close()

    def discard(self) -> None:
        """Delete the partial files (a hash mismatch, or the blob came another way)."""
        self.close()
        if self._directory is not None:
            remove_partial_files(self._directory, self.digest)

    def close(self) -> None:
        """Stop using this partial fetch; its files stay for the next attempt."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
        on_close, self._on_close = self._on_close, None
        if on_close is not None:
            on_close()

    def _write_sidecar(self) -> None:
        assert self._directory is not None
        record = {
            "version": SIDECAR_VERSION,
            "length": self.length,
            "segment_bytes": self.segment_bytes,
            "done": sorted(self.done),
        }
        target = sidecar_path(self._directory, self.digest)
        temporary = target.with_name(target.name + ".tmp")
        temporary.write_text(json.dumps(record))
        os.replace(temporary, target)


def part_path(directory: Path, digest: str) -> Path:
    return directory / (digest + PART_SUFFIX)


def sidecar_path(directory: Path, digest: str) -> Path:
    return directory / (digest + SIDECAR_SUFFIX)


def remove_partial_files(directory: Path, digest: str) -> None:
    for path in (part_path(directory, digest), sidecar_path(directory, digest)):
        path.unlink(missing_ok=True)
        path.with_name(path.name + ".tmp").unlink(missing_ok=True)


def partial_files(directory: Path) -> dict[str, float]:
    """Digest -> latest modification time, for every partial fetch in ``directory``."""
    latest: dict[str, float] = {}
    for path in directory.iterdir():
        name = path.name.removesuffix(".tmp")
        for suffix in (SIDECAR_SUFFIX, PART_SUFFIX):
            if name.endswith(suffix):
                digest = name.removesuffix(suffix)
                with contextlib.suppress(FileNotFoundError):
                    mtime = path.stat().st_mtime
                    latest[digest] = max(mtime, latest.get(digest, mtime))
                break
    return latest


def _checked_record(record: Any, max_bytes: int) -> tuple[int, int, set[int]]:
    if not isinstance(record, dict) or record.get("version") != SIDECAR_VERSION:
        raise ValueError("sidecar is not a version-1 record")
    length, segment_bytes, done = (record.get(k) for k in ("length", "segment_bytes", "done"))
    if not isinstance(length, int) or not 0 < length <= max_bytes:
        raise ValueError(f"sidecar length {length!r} is not in 1..{max_bytes}")
    if not isinstance(segment_bytes, int) or segment_bytes < 1:
        raise ValueError(f"sidecar segment size {segment_bytes!r} is not positive")
    if -(-length // segment_bytes) > MAX_RESUMED_SEGMENTS:
        raise ValueError(
            f"sidecar plans {length} bytes in segments of {segment_bytes}, more than "
            f"{MAX_RESUMED_SEGMENTS} segments"
        )
    if not isinstance(done, list) or not all(isinstance(i, int) for i in done):
        raise ValueError("sidecar 'done' is not a list of segment numbers")
    return length, segment_bytes, set(done)


def _write_at(fd: int, data: memoryview, offset: int) -> None:
    while data:
        written = os.pwrite(fd, data, offset)
        data, offset = data[written:], offset + written
