"""The segment scheduler: several providers at once, stalls, liars, resumption after a restart.

Providers are in-memory stand-ins that answer range requests from a blob, each with its own
behaviour; timeouts are real but short.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
import trio

from gossip.blobs import BlobStore, blob_hash
from gossip.errors import BlobLengthMismatch, BlobNotFound, FetchFailed
from gossip.partial import PartialBlob, plan_segments
from gossip.segments import SegmentedFetch, SegmentPolicy, segment_timeout

SEGMENT = 1000
BLOB = os.urandom(10 * SEGMENT + 234)  # 11 segments, the last one short
DIGEST = blob_hash(BLOB)
POLICY = SegmentPolicy(segment_bytes=SEGMENT, concurrency=4, segment_timeout=0.3)


class Providers:
    """Range sources by name; ``behaviour`` says how each one answers.

    honest: the true bytes; stall: never answers; stall-ranges: tells the length, then never
    answers; liar: flips the first byte of each range; lies-on-3: flips a byte of segment 3
    only; skips-3: fails segment 3; dies-after-N: N ranges, then connection errors; short:
    says the blob is one byte shorter; absent: does not have it; whole-only: has it, but does
    not speak the range protocol (an older node).
    """

    def __init__(self, behaviour: dict[str, str], blob: bytes = BLOB) -> None:
        self.behaviour = behaviour
        self.blob = blob
        self.ranges: list[tuple[str, int]] = []  # (provider, offset) of every range asked for
        self.served: dict[str, int] = dict.fromkeys(behaviour, 0)
        self.whole_asked: list[list[str]] = []

    async def blob_length(self, provider: str, digest: str) -> int:
        kind = self.behaviour[provider]
        if kind == "stall":
            await trio.sleep_forever()
        if kind in ("absent", "whole-only"):
            raise BlobNotFound("no such blob")
        return len(self.blob) - (kind == "short")

    async def read_range(
        self, provider: str, digest: str, length: int, offset: int, out: memoryview
    ) -> None:
        self.ranges.append((provider, offset))
        kind = self.behaviour[provider]
        await trio.sleep(0.001)  # let the others be asked too
        if kind in ("stall", "stall-ranges"):
            await trio.sleep_forever()
        if kind in ("absent", "whole-only"):
            raise BlobNotFound("no such blob")
        if kind == "short":
            raise BlobLengthMismatch("another length", len(self.blob) - 1)
        if kind == "skips-3" and offset == 3 * SEGMENT:
            raise ConnectionResetError("busy")
        if kind.startswith("dies-after-") and self.served[provider] >= int(kind.split("-")[-1]):
            raise ConnectionResetError("connection reset by peer")
        self.served[provider] += 1
        out[:] = self.blob[offset : offset + len(out)]
        if kind == "liar" or (kind == "lies-on-3" and offset == 3 * SEGMENT):
            out[0] ^= 0xFF

    async def whole(self, providers: Sequence[str], forged: Callable[[str], None] | None) -> bytes:
        """The one-provider-at-a-time path: a liar's whole blob does not hash right (one that
        lies on segment 3 only sends the whole blob right)."""
        self.whole_asked.append(list(providers))
        for provider in providers:
            kind = self.behaviour[provider]
            if kind == "liar":
                if forged is not None:
                    forged(provider)
            elif kind in ("honest", "whole-only", "skips-3", "lies-on-3"):
                return self.blob
        raise FetchFailed("could not fetch blob: nobody delivered")


async def fetch(
    providers: Providers,
    names: list[str],
    store: BlobStore | None = None,
    policy: SegmentPolicy = POLICY,
) -> tuple[bytes, list[str]]:
    forged: list[str] = []
    segmented = SegmentedFetch(providers, store or BlobStore(), policy)
    with trio.fail_after(10):
        data = await segmented.fetch(DIGEST, names, 2**20, providers.whole, forged.append)
    return data, forged


def providers_of_segments(providers: Providers) -> set[str]:
    return {provider for provider, _ in providers.ranges}


async def test_segments_come_from_every_provider_at_once() -> None:
    providers = Providers({"a": "honest", "b": "honest", "c": "honest"})
    data, forged = await fetch(providers, ["a", "b", "c"])
    assert data == BLOB and forged == []
    assert sorted(offset for _, offset in providers.ranges) == list(range(0, len(BLOB), SEGMENT))
    assert providers_of_segments(providers) == {"a", "b", "c"}
    assert providers.whole_asked == []


async def test_a_stalling_providers_segments_move_to_another() -> None:
    providers = Providers({"stuck": "stall-ranges", "good": "honest"})
    started = trio.current_time()
    data, forged = await fetch(providers, ["stuck", "good"])
    assert data == BLOB and forged == []  # a stall is not an offence
    stuck_offsets = {offset for provider, offset in providers.ranges if provider == "stuck"}
    good_offsets = {offset for provider, offset in providers.ranges if provider == "good"}
    assert stuck_offsets and stuck_offsets <= good_offsets  # asked of "stuck", then of "good"
    assert providers.whole_asked == []
    # one timeout for the stalled segments (they were in flight together), not one each
    assert trio.current_time() - started < 3 * POLICY.segment_timeout + 1


async def test_a_provider_that_fails_is_replaced_and_not_blamed() -> None:
    providers = Providers({"dying": "dies-after-1", "good": "honest"})
    data, forged = await fetch(providers, ["dying", "good"])
    assert data == BLOB and forged == []
    assert providers.served["dying"] == 1


@pytest.mark.parametrize("liar_first", [True, False])
async def test_a_lying_provider_is_found_and_only_it_is_blamed(liar_first: bool) -> None:
    providers = Providers({"honest": "honest", "liar": "liar", "other": "honest"})
    names = ["liar", "honest", "other"] if liar_first else ["honest", "liar", "other"]
    data, forged = await fetch(providers, names)
    assert data == BLOB
    assert forged == ["liar"]  # once, even when its whole blob was wrong too
    assert providers.whole_asked == [names]  # the mismatch sent the fetch one at a time
    assert "liar" in providers_of_segments(providers)


async def test_a_provider_lying_about_one_segment_is_found() -> None:
    # "a" and "c" fail segment 3 (and get no more segments), so "b" delivers it, wrong.
    providers = Providers({"a": "skips-3", "b": "lies-on-3", "c": "skips-3"})
    data, forged = await fetch(providers, ["a", "b", "c"])
    assert ("b", 3 * SEGMENT) in providers.ranges
    assert data == BLOB
    assert forged == ["b"]


async def test_a_provider_giving_another_length_is_blamed_once_the_truth_is_known() -> None:
    providers = Providers({"short": "short", "good": "honest"})
    data, forged = await fetch(providers, ["short", "good"])
    assert data == BLOB
    assert forged == ["short"]


async def test_small_blobs_and_single_providers_take_the_whole_blob_path() -> None:
    small = Providers({"a": "honest", "b": "honest"}, blob=BLOB[: 2 * SEGMENT])
    forged: list[str] = []
    segmented = SegmentedFetch(small, BlobStore(), POLICY)
    digest = blob_hash(small.blob)
    assert await segmented.fetch(digest, ["a", "b"], 2**20, small.whole, forged.append)
    assert small.ranges == [] and small.whole_asked == [["a", "b"]]

    single = Providers({"a": "honest"})
    data, _ = await fetch(single, ["a"])
    assert data == BLOB and single.ranges == [] and single.whole_asked == [["a"]]


async def test_when_no_segment_provider_is_left_the_blob_comes_whole() -> None:
    providers = Providers({"absent": "absent", "dying": "dies-after-2", "old": "whole-only"})
    data, forged = await fetch(providers, ["absent", "dying", "old"])
    assert data == BLOB and forged == []
    assert providers.served["dying"] == 2
    assert providers.whole_asked == [["absent", "dying", "old"]]


async def test_an_announced_length_saves_asking_for_it() -> None:
    small = Providers({"a": "honest", "b": "honest"}, blob=BLOB[:SEGMENT])
    asked: list[str] = []
    blob_length = small.blob_length

    async def counted(provider: str, digest: str) -> int:
        asked.append(provider)
        return await blob_length(provider, digest)

    small.blob_length = counted  # type: ignore[method-assign]
    announced = SegmentedFetch(small, BlobStore(), POLICY, lambda digest: len(small.blob))
    assert await announced.fetch(blob_hash(small.blob), ["a", "b"], 2**20, small.whole)
    assert asked == [] and small.ranges == []  # small: whole, without a length request

    large = Providers({"a": "honest", "b": "honest"})
    large.blob_length = counted  # type: ignore[method-assign]
    announced = SegmentedFetch(large, BlobStore(), POLICY, lambda digest: len(BLOB))
    assert await announced.fetch(DIGEST, ["a", "b"], 2**20, large.whole) == BLOB
    assert asked == [] and providers_of_segments(large) == {"a", "b"}


async def test_a_wrong_announced_length_costs_time_but_not_the_blob_or_a_provider() -> None:
    providers = Providers({"a": "honest", "b": "honest"})
    read_range = providers.read_range

    async def true_length(
        provider: str, digest: str, length: int, offset: int, out: memoryview
    ) -> None:
        providers.ranges.append((provider, offset))
        if length != len(BLOB):
            raise BlobLengthMismatch("another length", len(BLOB))
        await read_range(provider, digest, length, offset, out)

    providers.read_range = true_length  # type: ignore[method-assign]
    forged: list[str] = []
    wrong = SegmentedFetch(providers, BlobStore(), POLICY, lambda digest: len(BLOB) + 5000)
    assert await wrong.fetch(DIGEST, ["a", "b"], 2**20, providers.whole, forged.append) == BLOB
    assert providers.whole_asked == [["a", "b"]] and forged == []


# ------------------------------------------------------------------ partial files, restarts


def partial_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if ".part" in p.name)


async def test_a_restarted_fetch_takes_only_the_missing_segments(tmp_path: Path) -> None:
    first = Providers({"a": "dies-after-2", "b": "dies-after-2"})
    with pytest.raises(FetchFailed, match="connection reset"):
        await fetch(first, ["a", "b"], BlobStore(tmp_path))
    assert partial_files(tmp_path) == [f"{DIGEST}.part", f"{DIGEST}.part.json"]
    sidecar = json.loads((tmp_path / f"{DIGEST}.part.json").read_text())
    assert sidecar["length"] == len(BLOB) and sidecar["segment_bytes"] == SEGMENT
    assert len(sidecar["done"]) == 4
    restarted = BlobStore(tmp_path)
    assert restarted.digests() == set() and restarted.get(DIGEST) is None  # never a blob

    second = Providers({"c": "honest"})
    data, forged = await fetch(second, ["c"], restarted)  # one provider is enough to go on
    assert data == BLOB and forged == []
    fetched = sorted(offset for _, offset in second.ranges)
    missing = [
        s.offset for s in plan_segments(len(BLOB), SEGMENT) if s.index not in sidecar["done"]
    ]
    assert fetched == missing
    assert partial_files(tmp_path) == []
    assert (tmp_path / DIGEST).read_bytes() == BLOB  # the partial file became the blob


async def test_a_partial_that_does_not_hash_right_is_deleted(tmp_path: Path) -> None:
    providers = Providers({"x": "liar", "y": "liar"})
    with pytest.raises(FetchFailed):
        await fetch(providers, ["x", "y"], BlobStore(tmp_path))
    assert sorted(providers.whole_asked[0]) == ["x", "y"]
    assert partial_files(tmp_path) == [] and BlobStore(tmp_path).digests() == set()


async def test_resumed_bytes_that_went_bad_are_fetched_again_without_blame(
    tmp_path: Path,
) -> None:
    store = BlobStore(tmp_path)
    partial = store.open_partial(DIGEST, len(BLOB), SEGMENT)
    for segment in partial.segments[:5]:
        partial.view(segment)[:] = bytes(segment.size)  # zeros, e.g. after a power cut
        await partial.save(segment)
    partial.close()
    providers = Providers({"a": "honest", "b": "honest"})
    data, forged = await fetch(providers, ["a", "b"], BlobStore(tmp_path))
    assert data == BLOB and forged == []
    assert providers.whole_asked  # the resumed bytes failed the hash check
    assert partial_files(tmp_path) == []


async def test_a_partial_file_that_cannot_be_written_fails_the_fetch_plainly() -> None:
    class FullDisk(PartialBlob):
        async def save(self, segment: object) -> None:
            raise OSError(28, "No space left on device")

    class Store(BlobStore):
        def open_partial(self, digest: str, length: int, segment_bytes: int) -> PartialBlob:
            return FullDisk(digest, length, segment_bytes)

    providers = Providers({"a": "honest", "b": "honest"})
    with pytest.raises(FetchFailed, match=r"No space left on device.*disk full"):
        await fetch(providers, ["a", "b"], Store())


def test_prune_deletes_old_partials_but_not_one_in_use(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    old = store.open_partial("a" * 64, 100, 10)
    old.close()
    in_use = store.open_partial("b" * 64, 100, 10)
    for name in partial_files(tmp_path):
        os.utime(tmp_path / name, (1000.0, 1000.0))
    assert store.prune(2000.0) == 0  # partials are not blobs and are not counted
    assert partial_files(tmp_path) == ["b" * 64 + ".part", "b" * 64 + ".part.json"]
    in_use.close()
    store.prune(2000.0)
    assert partial_files(tmp_path) == []


def test_unusable_sidecars_are_discarded(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    store.open_partial(DIGEST, len(BLOB), SEGMENT).close()
    (tmp_path / f"{DIGEST}.part.json").write_text("{not json")
    assert store.resume_partial(DIGEST, 2**20) is None
    assert partial_files(tmp_path) == []
    store.open_partial(DIGEST, len(BLOB), SEGMENT).close()
    assert store.resume_partial(DIGEST, len(BLOB) - 1) is None  # above today's size limit
    assert partial_files(tmp_path) == []


@pytest.mark.parametrize(
    ("sidecar", "reason"),
    [
        # planned 2**26 one-byte segments: minutes and gigabytes before any other check
        (
            {"version": 1, "length": 2**26, "segment_bytes": 1, "done": []},
            "more than 65536 segments",
        ),
        # json.loads overflowed the C stack on this and killed the process
        ("[" * 200_000 + "]" * 200_000, "nested deeper than"),
    ],
)
def test_corrupt_sidecars_are_discarded_without_planning_or_parsing_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, sidecar: object, reason: str
) -> None:
    store = BlobStore(tmp_path)
    store.open_partial(DIGEST, len(BLOB), SEGMENT).close()
    text = sidecar if isinstance(sidecar, str) else json.dumps(sidecar)
    (tmp_path / f"{DIGEST}.part.json").write_text(text)
    assert store.resume_partial(DIGEST, 2**26) is None
    assert reason in caplog.text
    assert partial_files(tmp_path) == []


def test_a_second_fetch_of_the_same_blob_keeps_to_memory(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    first = store.open_partial(DIGEST, len(BLOB), SEGMENT)
    second = store.open_partial(DIGEST, len(BLOB), SEGMENT)
    assert first.on_disk and not second.on_disk
    assert store.resume_partial(DIGEST, 2**20) is None  # busy: not resumed twice
    first.close()
    resumed = store.resume_partial(DIGEST, 2**20)
    assert isinstance(resumed, PartialBlob) and resumed.on_disk
    resumed.discard()


def test_the_segment_timeout_is_a_share_of_the_fetch_timeout() -> None:
    assert segment_timeout(10.0, 8 * 2**20, 64 * 2**20) == 5.0  # 4 x 10 s x 1/8
    assert segment_timeout(10.0, 2**20, 64 * 2**20) == 2.5  # at least a quarter
    assert segment_timeout(10.0, 64 * 2**20, 64 * 2**20) == 10.0  # at most all of it
