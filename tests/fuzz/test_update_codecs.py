"""Fuzzing the update decoders of fp16, int8 and top-k (:mod:`node.codecs`).

Property: :func:`decode_update` either raises :class:`InvalidUpdateEncoding` or gives finite
float32 tensors of the header's names and shapes, no more than the limit as float32; nothing
else escapes it. Valid encodings decode (fp16 and top-k to the very bytes they came from when
encoded again), and the bytes of every codec are refused as another codec.
"""

from __future__ import annotations

import json
import math
import struct

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from node.codecs import ANNOUNCED, INT8_BLOCK, MAGIC, decode_update, encode_update
from node.errors import InvalidUpdateEncoding, InvalidWeights
from node.weights import DEFAULT_MAX_BYTES, Weights
from tests.fuzz.budget import FUZZ, one_input
from tests.fuzz.edits import BYTE_EDITS, edit_bytes

TARGET = "node decode_update (fp16, int8, topk)"
PREFIX = struct.Struct("<4sHI")
CODECS = ("fp16", "int8", "topk")
SPECIAL_FLOATS = [math.nan, math.inf, -math.inf, -1.0, 0.0, 3e38, 1e-45]

names = st.text(min_size=1, max_size=8) | st.sampled_from(["linear.weight", "linear.bias"])
shapes = st.lists(st.integers(min_value=0, max_value=6), max_size=3).map(tuple)
small_floats = st.floats(width=32, min_value=-60000, max_value=60000, allow_nan=False)
updates: st.SearchStrategy[Weights] = st.dictionaries(
    names,
    shapes.flatmap(lambda shape: hnp.arrays(np.float32, shape, elements=small_floats)),
    min_size=1,
    max_size=4,
)
limits = st.sampled_from([DEFAULT_MAX_BYTES, 4096, 64, 0])


def check_update_bytes(data: bytes, codec: str, limit: int) -> Weights | None:
    """Decode ``data``; fail on anything outside the documented outcomes."""
    with one_input(TARGET):
        try:
            decoded = decode_update(data, ANNOUNCED[codec], limit)
        except InvalidWeights as exc:  # fp32's decoder raises its parent class
            assert codec == "fp32" or isinstance(exc, InvalidUpdateEncoding)
            return None
    assert len(data) <= limit
    assert list(decoded) == sorted(decoded)
    assert 4 * sum(array.size for array in decoded.values()) <= limit
    for array in decoded.values():
        assert array.dtype == np.float32 and array.flags.writeable
        assert np.isfinite(array).all()
    return decoded


def encoded(draw: st.DrawFn, codec: str) -> bytes:
    update = draw(updates)
    seed = draw(st.integers(min_value=0, max_value=2**32))
    fraction = draw(st.sampled_from([0.01, 0.3, 1.0]))
    return encode_update(update, codec, np.random.default_rng(seed), fraction)


@st.composite
def byte_edits(draw: st.DrawFn) -> tuple[str, bytes]:
    """A valid encoding with bytes flipped, cut out, put in, or a body value replaced by a
    NaN, an infinity, a negative scale or an index out of range."""
    codec = draw(st.sampled_from(CODECS))
    data = bytearray(encoded(draw, codec))
    (header_length,) = struct.unpack_from("<I", data, 6)
    body = PREFIX.size + header_length
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        edit = draw(st.sampled_from([*BYTE_EDITS, "float", "index", "int8"]))
        position = draw(st.integers(min_value=0, max_value=len(data)))
        if edit in BYTE_EDITS:
            edit_bytes(draw, data, edit, position)
        elif len(data) >= body + 4:
            slot = body + 4 * draw(st.integers(min_value=0, max_value=(len(data) - body) // 4 - 1))
            if edit == "float":
                data[slot : slot + 4] = struct.pack("<f", draw(st.sampled_from(SPECIAL_FLOATS)))
            elif edit == "index":
                index = draw(st.integers(min_value=0, max_value=2**32 - 1))
                data[slot : slot + 4] = struct.pack("<I", index)
            else:
                data[draw(st.integers(min_value=body, max_value=len(data) - 1))] = 0x80
    return codec, bytes(data)


@st.composite
def crafted(draw: st.DrawFn) -> tuple[str, bytes]:
    """A header written by hand (codec, block, k and shapes near or far from valid ones)
    with a body of about the size it claims."""
    codec = draw(st.sampled_from(CODECS))
    entries = sorted(
        draw(st.dictionaries(names, st.lists(st.integers(0, 600), max_size=2), max_size=3)).items()
    )
    count = sum(math.prod(shape) for _, shape in entries)
    header: dict[str, object] = {
        "codec": draw(st.sampled_from([codec, *CODECS, "fp32", ""])),
        "tensors": [[name, shape] for name, shape in entries],
    }
    if codec == "int8":
        header["block"] = draw(st.sampled_from([INT8_BLOCK, 0, 128, -1, True]))
    if codec == "topk":
        header["k"] = draw(st.integers(min_value=-1, max_value=count + 1) | st.just(2**40))
    raw = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    blocks = sum(-(-math.prod(shape) // INT8_BLOCK) for _, shape in entries)
    k = header.get("k", 0)
    size = {"fp16": 2 * count, "int8": 4 * blocks + count}.get(
        codec, 8 * k if isinstance(k, int) and 0 <= k < 10_000 else 0
    )
    size += draw(st.sampled_from([0, 0, 0, -1, 1]))
    pattern = draw(st.binary(min_size=1, max_size=64))  # repeated: drawing MBs is slow
    body = (pattern * (max(0, size) // len(pattern) + 1))[: max(0, size)]
    return codec, PREFIX.pack(MAGIC, 1, len(raw)) + raw + body


@FUZZ
@given(st.sampled_from(CODECS), st.binary(max_size=2048), limits)
def test_arbitrary_bytes(codec: str, data: bytes, limit: int) -> None:
    check_update_bytes(data, codec, limit)


@FUZZ
@given(st.sampled_from(CODECS), st.binary(max_size=2048))
def test_arbitrary_bytes_after_a_valid_prefix(codec: str, tail: bytes) -> None:
    check_update_bytes(MAGIC + struct.pack("<H", 1) + tail, codec, DEFAULT_MAX_BYTES)


@FUZZ
@given(st.sampled_from(CODECS), st.data())
def test_every_valid_encoding_decodes(codec: str, data: st.DataObject) -> None:
    update = data.draw(updates)
    blob = encode_update(update, codec, np.random.default_rng(0), 0.3)
    decoded = check_update_bytes(blob, codec, DEFAULT_MAX_BYTES)
    assert decoded is not None
    assert {n: a.shape for n, a in decoded.items()} == {n: a.shape for n, a in update.items()}
    if codec != "int8":
        again = encode_update(decoded, codec, topk_fraction=0.3)
        assert again == blob or codec == "topk"  # top-k may choose other zeros in a tie
    for other in (*CODECS, "fp32"):
        if other != codec:
            assert check_update_bytes(blob, other, DEFAULT_MAX_BYTES) is None


@FUZZ
@given(byte_edits(), limits)
def test_byte_edits_of_valid_encodings(edited: tuple[str, bytes], limit: int) -> None:
    codec, data = edited
    check_update_bytes(data, codec, limit)


@FUZZ
@given(crafted())
def test_crafted_headers(made: tuple[str, bytes]) -> None:
    codec, data = made
    check_update_bytes(data, codec, DEFAULT_MAX_BYTES)
