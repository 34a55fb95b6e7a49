"""Fuzzing the loader of a resumable fetch's state: the sidecar ``<hash>.part.json``.

Property: :meth:`PartialBlob.resume` never raises. It gives back a partial fetch that fits
the limit, whose done segments exist and whose buffer holds the partial file, or ``None``
having deleted files that do not describe a usable fetch.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gossip.partial import SIDECAR_VERSION, PartialBlob, part_path, sidecar_path
from tests.fuzz.budget import FUZZ, one_input
from tests.fuzz.json_text import fragments, json_values, render_object

TARGET = "gossip PartialBlob.resume (sidecar loader)"
DIGEST = "ab" * 32
MAX_BYTES = 64 * 2**20  # network.max_blob_bytes by default

sizes = st.integers(min_value=0, max_value=4096) | st.sampled_from(
    [1, 2**16, 2**16 - 1, MAX_BYTES, MAX_BYTES + 1, 2**64, -1]
)


@pytest.fixture(autouse=True, scope="module")
def quiet_partial_log() -> Iterator[None]:
    """No warnings from the loader: pytest keeps every log record of a test, and a record
    keeps its exception's traceback and with it the discarded fetch's buffer (up to
    64 MiB an input)."""
    logger = logging.getLogger("gossip.partial")
    logger.disabled = True
    yield
    logger.disabled = False


@pytest.fixture(scope="module")
def directory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield tmp_path_factory.mktemp("partials")


@st.composite
def sidecars(draw: st.DrawFn) -> str:
    """A sidecar as the node writes it, with some of its fields edited or made junk."""
    length = draw(sizes)
    segment_bytes = draw(sizes)
    done = draw(st.lists(st.integers(min_value=-1, max_value=70), max_size=8))
    record: dict[str, object] = {
        "version": SIDECAR_VERSION,
        "length": length,
        "segment_bytes": segment_bytes,
        "done": done,
    }
    pairs = [(key, json.dumps(value)) for key, value in record.items()]
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        index = draw(st.integers(min_value=0, max_value=len(pairs) - 1))
        edit = draw(st.sampled_from(["replace", "drop", "add"]))
        if edit == "replace":
            pairs[index] = (
                pairs[index][0],
                draw(fragments(200_000, like=record.get(pairs[index][0]))),
            )
        elif edit == "drop":
            del pairs[index]
            if not pairs:
                break
        else:
            pairs.append((draw(st.text(max_size=8)), draw(fragments(64))))
    return render_object(pairs)


sidecar_texts = st.one_of(
    sidecars(),
    json_values.map(json.dumps),
    st.text(max_size=200),
)


def check_resume(directory: Path, sidecar: bytes, part: bytes | None, part_length: int) -> None:
    sidecar_path(directory, DIGEST).write_bytes(sidecar)
    part_file = part_path(directory, DIGEST)
    part_file.unlink(missing_ok=True)
    if part is not None:
        part_file.write_bytes(part[:part_length].ljust(part_length, b"\0"))
    with one_input(TARGET):
        partial = PartialBlob.resume(directory, DIGEST, MAX_BYTES)
    if partial is None:
        assert not sidecar_path(directory, DIGEST).exists()
        assert not part_file.exists()
        return
    try:
        assert 0 < partial.length <= MAX_BYTES
        assert partial.done <= {segment.index for segment in partial.segments}
        assert partial.on_disk
        assert bytes(partial.buffer) == part_file.read_bytes()
    finally:
        partial.close()


part_lengths = st.integers(min_value=0, max_value=4096) | st.sampled_from([2**16, 2**20])


@FUZZ
@given(sidecar_texts, st.none() | st.binary(max_size=64), part_lengths)
def test_sidecars(directory: Path, sidecar: str, part: bytes | None, part_length: int) -> None:
    encoded = sidecar.encode("utf-8", errors="surrogatepass")
    check_resume(directory, encoded, part, part_length)


@FUZZ
@given(st.binary(max_size=300), st.none() | st.binary(max_size=64), part_lengths)
def test_arbitrary_bytes(
    directory: Path, sidecar: bytes, part: bytes | None, part_length: int
) -> None:
    check_resume(directory, sidecar, part, part_length)


@FUZZ
@given(
    st.integers(min_value=1, max_value=MAX_BYTES),
    st.integers(min_value=1, max_value=2**22),
    st.lists(st.integers(min_value=0, max_value=1100), max_size=8),
)
def test_records_the_node_could_have_written(
    directory: Path, length: int, segment_bytes: int, done: list[int]
) -> None:
    record = {"version": 1, "length": length, "segment_bytes": segment_bytes, "done": done}
    check_resume(directory, json.dumps(record).encode(), b"", min(length, 2**20))
