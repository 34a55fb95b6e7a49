"""Fetching one large blob in segments from several providers at once.

A blob of more than two segments (``network.segment_bytes``, 8 MiB by default) that several
providers hold is fetched as byte ranges (:mod:`gossip.ranges`, and range requests on the
bulk channel's links, :mod:`gossip.bulk`):

1. The blob's length is the one an accepted announcement gave, if any (so that small blobs
   cost nothing more than before); otherwise the first provider that answers tells it (a
   range of 0 bytes). A blob of at most two segments, or one whose length no provider tells,
   is fetched whole from one provider at a time, in the order given, as before. An
   announced length that is wrong only makes every provider refuse the ranges (they give
   the true length), and the blob then comes whole.
2. At most ``network.fetch_concurrency`` segments are in flight at once, each assigned to the
   provider with the fewest segments in flight, straight into one preallocated buffer (and,
   when the store is on disk, its partial file, so that a restarted node goes on where it
   stopped: :mod:`gossip.partial`). A provider that fails a segment, or does not deliver it
   within the segment timeout (derived from ``network.fetch_timeout``, see
   :func:`segment_timeout`), gets no more segments of this blob, and the segment goes to
   another provider.
3. Once every segment is in, the whole buffer is hashed. On a match the partial file becomes
   the blob. On a mismatch the partial is deleted and the blob is fetched whole from one
   provider at a time (providers that failed a segment last); the verified bytes then show
   which segments were wrong, and only the providers that sent them, or that gave the blob
   another length, are reported as having sent wrong bytes. A provider that merely stalled
   or failed is never reported.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import trio

from gossip.bulk_transfer import hash_and_copy
from gossip.errors import BlobLengthMismatch, FetchFailed
from gossip.partial import PartialBlob, Segment

log = logging.getLogger(__name__)

SEGMENTED_ABOVE = 2  # blobs of more than this many segments are fetched in segments

# (providers in order, who to tell of a proven forger) -> the verified blob, one at a time
WholeFetch = Callable[[Sequence[str], Callable[[str], None] | None], Awaitable[bytes]]


class RangeSource(Protocol):
    """How a fetcher asks one provider about a blob (:class:`gossip.ranges.RangeClient`)."""

    async def blob_length(self, provider: str, digest: str) -> int: ...

    async def read_range(
        self, provider: str, digest: str, length: int, offset: int, out: memoryview
    ) -> None: ...


class PartialStore(Protocol):
    """Where segmented fetches keep their bytes (:class:`gossip.blobs.BlobStore`)."""

    def open_partial(self, digest: str, length: int, segment_bytes: int) -> PartialBlob: ...

    def resume_partial(self, digest: str, max_bytes: int) -> PartialBlob | None: ...


@dataclass(frozen=True)
class SegmentPolicy:
    """How large segments are, how many are in flight, how long one may take."""

    segment_bytes: int = 8 * 2**20
    concurrency: int = 4
    segment_timeout: float = 5.0


def segment_timeout(fetch_timeout: float, segment_bytes: int, max_blob_bytes: int) -> float:
    """The time one provider gets for one segment.

    ``fetch_timeout`` is what one provider gets for a whole blob, up to ``max_blob_bytes``; a
    segment gets four times its share of that (a margin for a busy machine), but at least a
    quarter of ``fetch_timeout`` and at most all of it. Defaults: 10 s, 8 MiB of 64 MiB: 5 s.
    """
    share = 4 * fetch_timeout * segment_bytes / max_blob_bytes
    return min(fetch_timeout, max(fetch_timeout / 4, share))


@dataclass(frozen=True)
class SegmentedFetch:
    """Fetches blobs in segments from several providers (see the module docstring)."""

    source: RangeSource
    partials: PartialStore
    policy: SegmentPolicy = field(default_factory=SegmentPolicy)
    announced_length: Callable[[str], int | None] = lambda digest: None

    async def fetch(
        self,
        digest: str,
        providers: Sequence[str],
        max_bytes: int,
        whole: WholeFetch,
        on_forged: Callable[[str], None] | None = None,
    ) -> bytes:
        """Blob ``digest``, verified; ``whole`` fetches it one provider at a time when
        segments do not fit or do not work. Raises :class:`FetchFailed` if nothing does."""
        partial = self.partials.resume_partial(digest, max_bytes)
        if partial is None and len(providers) < 2:
            return await whole(providers, on_forged)
        run = _Run(digest, providers, self.source, self.policy)
        try:
            if partial is None:
                length = self.announced_length(digest)
                if length is None:
                    length = await run.probe_length()
                limit = SEGMENTED_ABOVE * self.policy.segment_bytes
                if length is None or not limit < length <= max_bytes:
                    return await run.fetch_whole(whole, None, in_order=True)
                partial = self.partials.open_partial(digest, length, self.policy.segment_bytes)
            else:
                log.info(
                    "resuming the fetch of %s: %d of %d segments already here",
                    digest,
                    len(partial.done),
                    len(partial.segments),
                )
            data = await run.fetch_segments(partial)
            if data is None:
                return await run.fetch_whole(whole, partial)
            partial.finish()
            run.check_claims(data)
            return data
        finally:
            if partial is not None:
                partial.close()
            for provider in sorted(run.forgers):
                log.warning("provider %s sent wrong bytes for blob %s", provider, digest)
                if on_forged is not None:
                    on_forged(provider)


class _Run:
    """One segmented fetch: who is still asked, who sent what, what went wrong."""

    def __init__(
        self, digest: str, providers: Sequence[str], source: RangeSource, policy: SegmentPolicy
    ) -> None:
        self.digest = digest
        self.providers = list(providers)
        self.source = source
        self.policy = policy
        self.usable = list(providers)  # providers still given segments, in preference order
        self.failures: list[str] = []
        self.claimed_lengths: dict[str, int] = {}
        self.delivered: dict[int, str] = {}  # segment index -> provider, in this run
        self.sent: list[tuple[str, Segment, bytes]] = []  # SHA-256 of what came, on a mismatch
        self.forgers: set[str] = set()

    async def probe_length(self) -> int | None:
        """The blob's length, from the first provider that tells it."""
        for provider in self.providers:
            try:
                with trio.fail_after(self.policy.segment_timeout):
                    length = await self.source.blob_length(provider, self.digest)
            except trio.TooSlowError:
                self._drop(provider, f"no length within {self.policy.segment_timeout:.1f}s")
                continue
            except Exception as exc:
                self._drop(provider, f"no length: {exc}")
                continue
            self.claimed_lengths[provider] = length
            return length
        return None

    async def fetch_segments(self, partial: PartialBlob) -> bytes | None:
        """Every missing segment into ``partial``; the verified blob, or ``None`` if some
        segment could not be had or the whole did not hash right (then ``partial`` is gone)."""
        pending = deque(partial.missing())
        log.info(
            "fetching blob %s (%d bytes) as %d segments from %d providers",
            self.digest,
            partial.length,
            len(pending),
            len(self.usable),
        )
        busy: Counter[str] = Counter()
        unsaved: OSError | None = None
        results_send, results = trio.open_memory_channel[tuple[Segment, str, str | None]](math.inf)
        async with trio.open_nursery() as nursery:
            in_flight = 0
            while True:
                while pending and self.usable and in_flight < self.policy.concurrency:
                    provider = min(self.usable, key=lambda peer: busy[peer])
                    busy[provider] += 1
                    in_flight += 1
                    segment = pending.popleft()
                    nursery.start_soon(self._attempt, partial, segment, provider, results_send)
                if not in_flight:
                    break
                segment, provider, error = await results.receive()
                busy[provider] -= 1
                in_flight -= 1
                if error is None:
                    self.delivered[segment.index] = provider
                    try:
                        await partial.save(segment)
                    except OSError as exc:
                        unsaved = exc
                        nursery.cancel_scope.cancel()
                        break
                else:
                    self._drop(provider, f"segment {segment.index}: {error}")
                    pending.appendleft(segment)
        if unsaved is not None:
            raise FetchFailed(
                f"could not write a segment of blob {self.digest} to its partial file: "
                f"{unsaved} (is the state directory's disk full?)"
            ) from unsaved
        if pending:
            log.warning(
                "blob %s: %d segments could not be fetched (%s); fetching it whole",
                self.digest,
                len(pending),
                "; ".join(self.failures),
            )
            return None
        received, data = await trio.to_thread.run_sync(hash_and_copy, memoryview(partial.buffer))
        if received == self.digest:
            return data
        log.warning("segments of blob %s hash to %s; fetching it whole", self.digest, received)
        self.sent = [
            (self.delivered[segment.index], segment, hashlib.sha256(partial.view(segment)).digest())
            for segment in partial.segments
            if segment.index in self.delivered
        ]
        partial.discard()
        return None

    async def fetch_whole(
        self, whole: WholeFetch, partial: PartialBlob | None, in_order: bool = False
    ) -> bytes:
        """The blob from one provider at a time: in the order given when no segment was asked
        for, otherwise those that failed no segment first."""
        order = [p for p in self.providers if in_order or p in self.usable]
        order += [p for p in self.providers if p not in order]
        try:
            data = await whole(order, self.forgers.add)
        except FetchFailed as exc:
            if not self.failures:
                raise
            raise FetchFailed(f"{exc}; in segments: " + "; ".join(self.failures)) from exc
        if partial is not None:
            partial.discard()
        self.check_claims(data)
        return data

    def check_claims(self, blob: bytes) -> None:
        """Compare what each provider said and sent with ``blob``, the verified bytes."""
        for provider, claimed in self.claimed_lengths.items():
            if claimed != len(blob):
                self.forgers.add(provider)
        view = memoryview(blob)
        for provider, segment, sent in self.sent:
            true = hashlib.sha256(view[segment.offset : segment.offset + segment.size]).digest()
            if sent != true:
                self.forgers.add(provider)

    async def _attempt(
        self,
        partial: PartialBlob,
        segment: Segment,
        provider: str,
        results: trio.MemorySendChannel[tuple[Segment, str, str | None]],
    ) -> None:
        error: str | None = None
        try:
            with trio.fail_after(self.policy.segment_timeout):
                await self.source.read_range(
                    provider, self.digest, partial.length, segment.offset, partial.view(segment)
                )
        except trio.TooSlowError:
            error = f"stalled (not delivered within {self.policy.segment_timeout:.1f}s)"
        except BlobLengthMismatch as exc:
            self.claimed_lengths[provider] = exc.claimed
            error = str(exc)
        except Exception as exc:
            error = str(exc) or repr(exc)
        results.send_nowait((segment, provider, error))

    def _drop(self, provider: str, reason: str) -> None:
        self.failures.append(f"{provider}: {reason}")
        if provider in self.usable:
            self.usable.remove(provider)
            log.warning(
                "blob %s: provider %s gets no more segments: %s", self.digest, provider, reason
            )
