"""Update codecs: error bounds of fp16 and int8 worked out independently, int8's stochastic
rounding unbiased, top-k's choice and its error feedback, and bad bytes refused."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest

from node.codecs import (
    ANNOUNCED,
    INT8_BLOCK,
    decode_update,
    encode_update,
    topk_count,
    topk_split,
)
from node.errors import InvalidUpdateEncoding, InvalidWeights
from node.update_encoder import UpdateEncoder, encode_aggregate
from node.weights import Weights, encode_weights

PREFIX = struct.Struct("<4sHI")


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def round_trip(update: Weights, codec: str, seed: int = 0, fraction: float = 0.01) -> Weights:
    data = encode_update(update, codec, rng(seed), fraction)
    return decode_update(data, ANNOUNCED[codec])


def body_offset(data: bytes) -> int:
    (_magic, _version, header_length) = PREFIX.unpack_from(data)
    return PREFIX.size + header_length


def test_fp32_is_the_weights_encoding() -> None:
    update = {"w": np.array([1.5, -2.25], dtype=np.float32)}
    assert encode_update(update, "fp32") == encode_weights(update)
    assert ANNOUNCED["fp32"] == "mswt1-f32"


def test_fp16_round_trip_is_within_half_an_ulp_of_eleven_bits() -> None:
    # Magnitudes spread over fp16's normal range, both signs.
    exponents = rng().uniform(-14, 15.9, 5000)
    values = np.sign(rng(1).normal(size=5000)) * 2.0**exponents
    update = {
        "a": values[:3000].astype(np.float32).reshape(30, 100),
        "b": values[3000:].astype(np.float32),
    }
    decoded = round_trip(update, "fp16")
    for name, original in update.items():
        wide = original.astype(np.float64)
        relative = np.abs(decoded[name].astype(np.float64) - wide) / np.abs(wide)
        assert relative.max() <= 2.0**-11  # round to nearest, 10 stored mantissa bits
        assert decoded[name].dtype == np.float32 and decoded[name].shape == original.shape


def test_fp16_refuses_values_it_cannot_hold() -> None:
    with pytest.raises(InvalidUpdateEncoding, match="float16's range"):
        encode_update({"a": np.array([70000.0], dtype=np.float32)}, "fp16")


def test_int8_error_of_each_value_is_below_its_blocks_scale() -> None:
    # Blocks of very different magnitudes, and a tensor whose length is not a multiple of 256.
    values = rng().normal(size=1000) * np.repeat([1e-4, 1.0, 30.0, 1e-2], 250)
    update = {"w": values.astype(np.float32), "z": np.zeros(7, dtype=np.float32)}
    decoded = round_trip(update, "int8")
    w = update["w"].astype(np.float64)
    for start in range(0, w.size, INT8_BLOCK):
        block = w[start : start + INT8_BLOCK]
        scale = np.abs(block).max() / 127  # worked out here, in float64
        error = np.abs(decoded["w"][start : start + INT8_BLOCK].astype(np.float64) - block)
        assert error.max() <= scale * (1 + 1e-6)
    assert (decoded["z"] == 0).all()


def test_int8_stochastic_rounding_is_unbiased() -> None:
    # Every value sits 0.3 of a step above a grid point: rounding to nearest would be off by
    # 0.3 x scale on every value, always the same way.
    scale = 0.01
    grid = rng().integers(-120, 120, INT8_BLOCK - 1)
    values = np.append((grid + 0.3) * scale, 127 * scale).astype(np.float32)  # max sets scale
    trials = 2000
    total = np.zeros(values.size)
    for trial in range(trials):
        total += round_trip({"w": values}, "int8", seed=trial)["w"]
    mean_error = total / trials - values.astype(np.float64)
    # One decoded value varies by at most a step: standard deviation <= scale / 2, so the
    # mean of 2000 has standard deviation <= scale / (2 sqrt(2000)) = 1.1e-4 x (scale / 0.01).
    # Threshold: 5 of those per value (a false alarm about once in 3 million values), far
    # below the 0.3 x scale = 3e-3 bias of rounding to nearest.
    sigma = scale / (2 * math.sqrt(trials))
    assert np.abs(mean_error).max() <= 5 * sigma
    assert abs(mean_error.mean()) <= 5 * sigma / math.sqrt(values.size)
    assert 5 * sigma < 0.3 * scale / 5


def test_int8_sends_about_a_byte_per_value() -> None:
    update = {"w": rng().normal(size=10_000).astype(np.float32)}
    data = encode_update(update, "int8", rng())
    blocks = math.ceil(10_000 / INT8_BLOCK)
    assert len(data) - body_offset(data) == 10_000 + 4 * blocks


def test_topk_keeps_exactly_the_k_largest_magnitudes() -> None:
    update = {
        "a": rng().normal(size=(40, 25)).astype(np.float32),
        "b": (rng(1).normal(size=300) * 3).astype(np.float32),
    }
    fraction = 0.05
    decoded = round_trip(update, "topk", fraction=fraction)
    flat = np.concatenate([update["a"].ravel(), update["b"].ravel()])  # name order
    k = math.ceil(fraction * flat.size)
    largest = set(np.argsort(-np.abs(flat.astype(np.float64)), kind="stable")[:k].tolist())
    sent = np.concatenate([decoded["a"].ravel(), decoded["b"].ravel()])
    assert set(np.flatnonzero(sent).tolist()) == largest
    assert (sent[sorted(largest)] == flat[sorted(largest)]).all()  # sent exactly
    assert topk_count(flat.size, fraction) == k == 65


def test_topk_residual_and_sent_add_up_to_the_input() -> None:
    values = rng().normal(size=5000).astype(np.float32)
    indices, kept, residual = topk_split(values, 50)
    sent = np.zeros_like(values)
    sent[indices] = kept
    assert ((sent + residual) == values).all()
    assert (residual[indices] == 0).all() and np.count_nonzero(sent) == 50


def test_topk_bytes_are_eight_per_kept_value() -> None:
    update = {"w": rng().normal(size=100_000).astype(np.float32)}
    data = encode_update(update, "topk", topk_fraction=0.01)
    assert len(data) - body_offset(data) == 8 * 1000
    assert len(data) < len(encode_weights(update)) / 20


def test_error_feedback_sends_what_an_earlier_round_left_out() -> None:
    encoder = UpdateEncoder("topk", seed=0, site="s", topk_fraction=0.1)
    first = {"w": np.array([5.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0], dtype=np.float32)}
    second = {"w": np.zeros(10, dtype=np.float32)}
    one = encoder.encode(first, 1)
    assert one.codec == "mswc1-topk"
    assert one.sent["w"].tolist() == [5.0] + [0.0] * 9
    assert (one.sent["w"] + encoder.residual["w"] == first["w"]).all()
    two = encoder.encode(second, 2)
    assert np.count_nonzero(two.sent["w"]) == 1 and two.sent["w"].max() == 1.0
    assert float(encoder.residual["w"].sum()) == 8.0  # nothing lost: 9 - 1 sent
    again = encoder.encode(second, 2)  # a retried round starts from the same residual
    assert again.data == two.data
    assert float(encoder.residual["w"].sum()) == 8.0


def test_int8_encoder_is_reproducible_per_round_and_site() -> None:
    update = {"w": rng().normal(size=600).astype(np.float32)}
    one = UpdateEncoder("int8", seed=3, site="a").encode(update, 4)
    assert UpdateEncoder("int8", seed=3, site="a").encode(update, 4).data == one.data
    assert UpdateEncoder("int8", seed=3, site="b").encode(update, 4).data != one.data
    assert (decode_update(one.data, one.codec)["w"] == one.sent["w"]).all()


# ------------------------------------------------------------------ cluster aggregates


def aggregate_of(seed: int) -> Weights:
    return {
        "w": (rng(seed).normal(size=(40, 25)) * 0.01).astype(np.float32),
        "b": rng(seed + 100).normal(size=7).astype(np.float32),
    }


def test_an_aggregate_gives_the_same_int8_bytes_wherever_it_is_encoded() -> None:
    aggregate = aggregate_of(1)
    # Another member's recomputation: equal values in arrays of its own, named in another
    # order, the float32 values arriving as float64.
    recomputed = {"b": aggregate["b"].astype(np.float64), "w": aggregate["w"].copy()}
    one = encode_aggregate(aggregate, "int8")
    assert one.codec == "mswc1-int8"
    assert encode_aggregate(recomputed, "int8").data == one.data
    assert encode_aggregate(aggregate, "int8").data == one.data
    decoded = decode_update(one.data, one.codec)
    assert all((decoded[name] == one.sent[name]).all() for name in aggregate)


def test_an_int8_aggregate_is_within_its_blocks_scale() -> None:
    aggregate = aggregate_of(2)
    sent = encode_aggregate(aggregate, "int8").sent
    for name, values in aggregate.items():
        flat = values.astype(np.float64).reshape(-1)
        got = sent[name].astype(np.float64).reshape(-1)
        assert sent[name].shape == values.shape
        for start in range(0, flat.size, INT8_BLOCK):
            block = flat[start : start + INT8_BLOCK]
            scale = np.abs(block).max() / 127  # worked out here, in float64
            assert np.abs(got[start : start + INT8_BLOCK] - block).max() <= scale * (1 + 1e-6)


def test_an_int8_aggregate_is_rounded_stochastically() -> None:
    # Every value 0.3 of a step above a grid point: rounding to nearest would round all of
    # them down, stochastic rounding about 30% of them up.
    scale = 0.01
    grid = rng(5).integers(-120, 120, INT8_BLOCK - 1)
    values = np.append((grid + 0.3) * scale, 127 * scale).astype(np.float32)
    steps = encode_aggregate({"w": values}, "int8").sent["w"][:-1].astype(np.float64) / scale
    up = np.isclose(steps, grid + 1, atol=1e-3)
    assert (up | np.isclose(steps, grid, atol=1e-3)).all()
    # 255 draws of p = 0.3: mean 76.5, standard deviation 7.3; 40..115 is 5 of them.
    assert 40 <= up.sum() <= 115


def test_another_aggregate_gives_other_bytes_and_other_rounding() -> None:
    aggregate = aggregate_of(3)
    nudged = {name: values.copy() for name, values in aggregate.items()}
    nudged["b"][0] = np.nextafter(nudged["b"][0], np.float32(np.inf))
    one, other = encode_aggregate(aggregate, "int8"), encode_aggregate(nudged, "int8")
    assert one.data != other.data
    # "w" is unchanged, so only a random generator seeded from the whole aggregate's content
    # rounds its values differently.
    assert (one.sent["w"] != other.sent["w"]).any()


def test_fp16_aggregates_are_fp16_and_top_k_aggregates_float32() -> None:
    aggregate = aggregate_of(4)
    half = encode_aggregate(aggregate, "fp16")
    assert half.codec == "mswc1-fp16"
    for name, values in aggregate.items():
        wide = values.astype(np.float64)
        error = np.abs(half.sent[name].astype(np.float64) - wide)
        # half an ulp: relative 2^-11 for normal values, 2^-25 absolute below 2^-14
        assert (error <= np.maximum(np.abs(wide) * 2.0**-11, 2.0**-25)).all()
    for codec in ("topk", "fp32"):
        full = encode_aggregate(aggregate, codec)
        assert full.codec == "mswt1-f32"
        assert full.data == encode_weights(aggregate)
        assert all((full.sent[name] == aggregate[name]).all() for name in aggregate)


# ------------------------------------------------------------------------- bad bytes


def int8_bytes() -> bytes:
    return encode_update({"w": rng().normal(size=300).astype(np.float32)}, "int8", rng())


def topk_bytes() -> bytes:
    update = {"w": rng().normal(size=300).astype(np.float32)}
    return encode_update(update, "topk", topk_fraction=0.02)


def test_truncated_or_padded_bytes_are_refused() -> None:
    for codec, data in [("int8", int8_bytes()), ("topk", topk_bytes())]:
        with pytest.raises(InvalidUpdateEncoding, match="truncated"):
            decode_update(data[:-1], ANNOUNCED[codec])
        with pytest.raises(InvalidUpdateEncoding, match="unexpected bytes"):
            decode_update(data + b"\0", ANNOUNCED[codec])


def test_a_blob_of_another_codec_is_refused() -> None:
    with pytest.raises(InvalidUpdateEncoding, match="holds a 'int8' encoding"):
        decode_update(int8_bytes(), ANNOUNCED["topk"])
    with pytest.raises(InvalidWeights, match="not medswarm weights"):
        decode_update(int8_bytes(), ANNOUNCED["fp32"])
    with pytest.raises(InvalidUpdateEncoding, match="unknown update codec 'zstd'"):
        decode_update(int8_bytes(), "zstd")


@pytest.mark.parametrize(
    ("scale", "reason"),
    [(math.nan, "NaN, infinite or negative"), (-1.0, "negative"), (math.inf, "infinite")],
)
def test_int8_scales_must_be_finite_and_not_negative(scale: float, reason: str) -> None:
    data = bytearray(int8_bytes())
    start = body_offset(bytes(data))
    data[start : start + 4] = struct.pack("<f", scale)
    with pytest.raises(InvalidUpdateEncoding, match=reason):
        decode_update(bytes(data), ANNOUNCED["int8"])


def test_int8_values_must_be_within_127() -> None:
    data = bytearray(int8_bytes())
    data[-1] = 0x80  # -128
    with pytest.raises(InvalidUpdateEncoding, match="-128"):
        decode_update(bytes(data), ANNOUNCED["int8"])


def test_int8_scale_that_overflows_is_refused() -> None:
    data = bytearray(int8_bytes())
    start = body_offset(bytes(data))
    data[start : start + 4] = struct.pack("<f", 3e38)
    with pytest.raises(InvalidUpdateEncoding, match="NaN or infinite values"):
        decode_update(bytes(data), ANNOUNCED["int8"])


def test_topk_indices_must_be_in_range_and_increasing() -> None:
    data = topk_bytes()
    start = body_offset(data)
    out_of_range = bytearray(data)
    out_of_range[start + 4 * 5 : start + 4 * 6] = struct.pack("<I", 300)  # the last index
    with pytest.raises(InvalidUpdateEncoding, match="out of range"):
        decode_update(bytes(out_of_range), ANNOUNCED["topk"])
    repeated = bytearray(data)
    repeated[start + 4 : start + 8] = repeated[start : start + 4]
    with pytest.raises(InvalidUpdateEncoding, match="strictly increasing"):
        decode_update(bytes(repeated), ANNOUNCED["topk"])
    nan = bytearray(data)
    nan[-4:] = struct.pack("<f", math.nan)
    with pytest.raises(InvalidUpdateEncoding, match="NaN or infinite"):
        decode_update(bytes(nan), ANNOUNCED["topk"])


def test_a_small_blob_may_not_unpack_into_a_huge_update() -> None:
    header = b'{"codec":"topk","k":1,"tensors":[["w",[1000000000]]]}'
    body = struct.pack("<I", 0) + struct.pack("<f", 1.0)
    data = PREFIX.pack(b"MSWC", 1, len(header)) + header + body
    with pytest.raises(InvalidUpdateEncoding, match="decodes to 4000000000 bytes"):
        decode_update(data, ANNOUNCED["topk"], max_bytes=64 * 2**20)
