"""Fuzzing the weights decoder and the file reader that checks a blob lazily.

Property: :func:`decode_weights` and ``BlobWeights(path, limit).check()`` either both raise
:class:`InvalidWeights` or both give the same finite float32 tensors, whose encoding is
exactly the bytes read (the format is canonical).
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from node.errors import InvalidWeights
from node.weights import (
    DEFAULT_MAX_BYTES,
    DTYPE,
    MAGIC,
    BlobWeights,
    Weights,
    decode_weights,
    encode_weights,
)
from tests.fuzz.budget import FUZZ, one_input
from tests.fuzz.edits import BYTE_EDITS, edit_bytes
from tests.fuzz.json_text import fragments, huge_numbers, json_values, near

TARGET = "node decode_weights + BlobWeights.check"
PREFIX = struct.Struct("<4sHI")
NAN_AND_INF = [
    struct.pack("<f", math.nan),
    struct.pack("<f", math.inf),
    struct.pack("<f", -math.inf),
    b"\x01\x00\xc0\x7f",  # a signalling NaN
    b"\xff\xff\xff\xff",  # a negative NaN with every payload bit set
]

names = st.text(min_size=1, max_size=12) | st.sampled_from(["linear.weight", "linear.bias"])
shapes = st.lists(st.integers(min_value=0, max_value=4), max_size=3).map(tuple)
finite_floats = st.floats(width=32, allow_nan=False, allow_infinity=False)
weights_strategy: st.SearchStrategy[Weights] = st.dictionaries(
    names,
    shapes.flatmap(lambda shape: hnp.arrays(np.float32, shape, elements=finite_floats)),
    min_size=1,
    max_size=4,
)
dims = st.one_of(
    st.integers(min_value=0, max_value=3),
    st.sampled_from([0, -1, 2**31, 2**32, 2**62, 2**63, 2**64, 10**30, True, 1.0, "2", None]),
)
limits = st.sampled_from(["default", "exact", "one short", "tiny"])


@pytest.fixture(scope="module")
def blob_path(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield tmp_path_factory.mktemp("weights") / "blob"


def _limit(choice: str, data: bytes) -> int:
    return {
        "default": DEFAULT_MAX_BYTES,
        "exact": len(data),
        "one short": max(0, len(data) - 1),
        "tiny": 16,
    }[choice]


def _read(data: bytes, limit: int, path: Path) -> tuple[Weights | None, Weights | None]:
    """Both readers' results (``None``: it raised :class:`InvalidWeights`)."""
    try:
        decoded: Weights | None = decode_weights(data, limit)
    except InvalidWeights:
        decoded = None
    path.write_bytes(data)
    try:
        blob = BlobWeights(path, limit)
        blob.check()
        from_file: Weights | None = {name: blob[name] for name in blob}
    except InvalidWeights:
        from_file = None
    return decoded, from_file


def check_weights_bytes(data: bytes, limit: int, path: Path) -> Weights | None:
    """Read ``data`` both ways; fail on anything outside the documented outcomes."""
    with one_input(TARGET):
        decoded, from_file = _read(data, limit, path)
    assert (decoded is None) == (from_file is None), "the two readers disagree"
    if decoded is None or from_file is None:
        return None
    assert len(data) <= limit
    assert list(decoded) == list(from_file)
    for name, array in decoded.items():
        assert array.dtype == np.float32 and array.flags.writeable
        assert np.isfinite(array).all()
        assert array.tobytes() == from_file[name].tobytes()
    assert encode_weights(decoded) == data, "decoded weights encode to other bytes"
    return decoded


def _prefixed(header: bytes, body: bytes) -> bytes:
    return PREFIX.pack(MAGIC, 1, len(header)) + header + body


@st.composite
def byte_edits(draw: st.DrawFn) -> bytes:
    """A valid encoding with bytes flipped, cut out, put in, or the prefix fields changed."""
    data = bytearray(encode_weights(draw(weights_strategy)))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        position = draw(st.integers(min_value=0, max_value=len(data)))
        edit = draw(st.sampled_from([*BYTE_EDITS, "header length", "version"]))
        if edit in BYTE_EDITS:
            edit_bytes(draw, data, edit, position)
        elif len(data) >= PREFIX.size:
            field = slice(6, 10) if edit == "header length" else slice(4, 6)
            size = field.stop - field.start
            value = draw(st.integers(min_value=0, max_value=2 ** (8 * size) - 1))
            data[field] = value.to_bytes(size, "little")
    return bytes(data)


@st.composite
def non_finite_payloads(draw: st.DrawFn) -> bytes:
    """A valid encoding with one value replaced by a NaN or an infinity."""
    weights = draw(weights_strategy.filter(lambda w: any(a.size for a in w.values())))
    data = bytearray(encode_weights(weights))
    (header_length,) = struct.unpack_from("<I", data, 6)
    body_start = PREFIX.size + header_length
    slot = draw(st.integers(min_value=0, max_value=(len(data) - body_start) // 4 - 1))
    data[body_start + 4 * slot : body_start + 4 * slot + 4] = draw(st.sampled_from(NAN_AND_INF))
    return bytes(data)


def _values_needed(tensors: object) -> int | None:
    """How many float32 values a header's tensors claim, if that is a small number."""
    if not isinstance(tensors, list):
        return None
    total = 0
    for entry in tensors:
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[1], list)):
            return None
        shape = entry[1]
        if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
            return None
        total += math.prod(shape)
    return total if total <= 1024 else None


@st.composite
def crafted_headers(draw: st.DrawFn) -> bytes:
    """A header written by hand: shapes, names and dtype near or far from the valid ones,
    with a body of the size it claims when that can be worked out."""
    entries = draw(st.lists(st.tuples(names, st.lists(dims, max_size=4)), max_size=4))
    if draw(st.booleans()):
        entries.sort(key=lambda entry: entry[0])
    tensors: object = [[name, shape] for name, shape in entries]
    dtype: object = draw(st.sampled_from([DTYPE, "<f8", ">f4", "float32", "<F4"]) | near(DTYPE))
    header: dict[str, object] = {"dtype": dtype, "tensors": tensors}
    style = draw(st.sampled_from(["canonical", "spaced", "unsorted", "fragment", "extra key"]))
    if style == "canonical":
        text = json.dumps(header, sort_keys=True, separators=(",", ":"))
    elif style == "spaced":
        text = json.dumps(header, sort_keys=True)
    elif style == "unsorted":
        text = json.dumps({"tensors": tensors, "dtype": dtype}, separators=(",", ":"))
    elif style == "fragment":
        key = draw(st.sampled_from(["dtype", "tensors"]))
        other = "tensors" if key == "dtype" else "dtype"
        replacement = draw(fragments(200_000) | huge_numbers())
        text = (
            "{"
            + ",".join(
                sorted(
                    [
                        json.dumps(key) + ":" + replacement,
                        json.dumps(other) + ":" + json.dumps(header[other]),
                    ]
                )
            )
            + "}"
        )
        tensors = None
    else:
        header[draw(st.text(max_size=6))] = draw(json_values)
        text = json.dumps(header, sort_keys=True, separators=(",", ":"))
    raw = text.encode("utf-8", errors="surrogatepass")
    needed = _values_needed(tensors)
    if needed is None:
        body = draw(st.binary(max_size=64))
    else:
        values = draw(st.lists(finite_floats, min_size=needed, max_size=needed))
        body = np.array(values, dtype=DTYPE).tobytes()
        if draw(st.integers(min_value=0, max_value=9)) == 0 and body:
            body = body[: draw(st.integers(min_value=0, max_value=len(body) - 1))]
    return _prefixed(raw, body)


@FUZZ
@given(st.binary(max_size=4096), limits)
def test_arbitrary_bytes(blob_path: Path, data: bytes, limit: str) -> None:
    check_weights_bytes(data, _limit(limit, data), blob_path)


@FUZZ
@given(st.binary(max_size=4096), limits)
def test_arbitrary_bytes_after_a_valid_prefix(blob_path: Path, tail: bytes, limit: str) -> None:
    data = MAGIC + struct.pack("<H", 1) + tail
    check_weights_bytes(data, _limit(limit, data), blob_path)


@FUZZ
@given(weights_strategy, limits)
def test_every_valid_encoding_round_trips(blob_path: Path, weights: Weights, limit: str) -> None:
    data = encode_weights(weights)
    decoded = check_weights_bytes(data, _limit(limit, data), blob_path)
    if len(data) <= _limit(limit, data):
        assert decoded is not None
        assert sorted(decoded) == sorted(weights)
        for name, array in weights.items():
            assert decoded[name].shape == array.shape
            assert decoded[name].tobytes() == array.astype(DTYPE).tobytes()


@FUZZ
@given(byte_edits(), limits)
def test_byte_edits_of_valid_encodings(blob_path: Path, data: bytes, limit: str) -> None:
    check_weights_bytes(data, _limit(limit, data), blob_path)


@FUZZ
@given(non_finite_payloads())
def test_nan_and_infinity_are_refused(blob_path: Path, data: bytes) -> None:
    assert check_weights_bytes(data, DEFAULT_MAX_BYTES, blob_path) is None


@FUZZ
@given(crafted_headers(), limits)
def test_crafted_headers(blob_path: Path, data: bytes, limit: str) -> None:
    check_weights_bytes(data, _limit(limit, data), blob_path)
