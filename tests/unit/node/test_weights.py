"""The canonical weight encoding and the torch bridge."""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from node.errors import InvalidWeights
from node.model import build_model
from node.weights import (
    BlobWeights,
    decode_weights,
    encode_weights,
    encoded_size,
    encoding_parts,
    load_weights_into,
    shape_of,
    state_dict_to_weights,
    weights_hash,
)


def _weights() -> dict[str, np.ndarray]:
    return {
        "linear.weight": np.array([[1.5, -2.0, 0.25]], dtype=np.float32),
        "linear.bias": np.array([0.5], dtype=np.float32),
    }


def test_layout_matches_the_documented_format() -> None:
    header = b'{"dtype":"<f4","tensors":[["b",[]],["w",[2]]]}'
    expected = (
        b"MSWT"
        + struct.pack("<H", 1)
        + struct.pack("<I", len(header))
        + header
        + struct.pack("<f", 3.0)
        + struct.pack("<ff", 1.0, -0.5)
    )
    weights = {"w": np.array([1.0, -0.5], dtype=np.float32), "b": np.array(3.0, dtype=np.float32)}
    assert encode_weights(weights) == expected


def test_round_trip_preserves_names_shapes_and_values() -> None:
    decoded = decode_weights(encode_weights(_weights()))
    assert list(decoded) == ["linear.bias", "linear.weight"]
    for name, array in _weights().items():
        assert decoded[name].dtype == np.float32
        np.testing.assert_array_equal(decoded[name], array)
    decoded["linear.bias"][0] = 7.0  # decoded arrays are writable copies


def test_equal_weights_give_equal_bytes_whatever_the_order() -> None:
    forward = _weights()
    backward = dict(reversed(list(forward.items())))
    big_endian = {k: v.astype(">f4") for k, v in forward.items()}
    assert encode_weights(forward) == encode_weights(backward) == encode_weights(big_endian)


def test_hash_is_sha256_of_the_encoding() -> None:
    expected = hashlib.sha256(encode_weights(_weights())).hexdigest()
    assert weights_hash(_weights()) == expected
    changed = _weights()
    changed["linear.bias"] = np.array([0.5000001], dtype=np.float32)
    assert weights_hash(changed) != expected


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_encode_rejects_non_finite_values(bad: float) -> None:
    weights = _weights()
    weights["linear.weight"][0, 1] = bad
    with pytest.raises(InvalidWeights, match="NaN or infinite"):
        encode_weights(weights)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_decode_rejects_non_finite_values(bad: float) -> None:
    data = bytearray(encode_weights(_weights()))
    data[-4:] = struct.pack("<f", bad)
    with pytest.raises(InvalidWeights, match="NaN or infinite"):
        decode_weights(bytes(data))


def test_encode_rejects_other_dtypes_and_empty_weights() -> None:
    with pytest.raises(InvalidWeights, match="float32"):
        encode_weights({"w": np.zeros(2, dtype=np.float64)})
    with pytest.raises(InvalidWeights, match="empty"):
        encode_weights({})


def test_decode_rejects_truncated_data() -> None:
    data = encode_weights(_weights())
    for cut in (3, 9, 20, len(data) - 1):
        with pytest.raises(InvalidWeights, match="truncated"):
            decode_weights(data[:cut])


def test_decode_rejects_trailing_bytes() -> None:
    with pytest.raises(InvalidWeights, match="unexpected bytes"):
        decode_weights(encode_weights(_weights()) + b"\x00\x00\x00\x00")


def test_decode_rejects_bad_magic_and_version() -> None:
    data = encode_weights(_weights())
    with pytest.raises(InvalidWeights, match="magic"):
        decode_weights(b"XXXX" + data[4:])
    with pytest.raises(InvalidWeights, match="version 2"):
        decode_weights(data[:4] + struct.pack("<H", 2) + data[6:])


def test_decode_rejects_oversize_data_before_parsing() -> None:
    data = encode_weights(_weights())
    with pytest.raises(InvalidWeights, match="exceed the limit"):
        decode_weights(data, max_bytes=len(data) - 1)
    assert decode_weights(data, max_bytes=len(data))


def _with_header(header: bytes, body: bytes) -> bytes:
    return b"MSWT" + struct.pack("<HI", 1, len(header)) + header + body


def test_decode_rejects_garbled_and_non_canonical_headers() -> None:
    body = struct.pack("<ff", 1.0, 2.0)
    with pytest.raises(InvalidWeights, match="garbled"):
        decode_weights(_with_header(b"{not json", body))
    spaced = json.dumps({"dtype": "<f4", "tensors": [["w", [2]]]}).encode()
    with pytest.raises(InvalidWeights, match="not canonical"):
        decode_weights(_with_header(spaced, body))
    unsorted = b'{"dtype":"<f4","tensors":[["b",[1]],["a",[1]]]}'
    with pytest.raises(InvalidWeights, match="not canonical"):
        decode_weights(_with_header(unsorted, body))
    with pytest.raises(InvalidWeights, match="bad shape"):
        decode_weights(_with_header(b'{"dtype":"<f4","tensors":[["w",[-2]]]}', body))


def test_model_state_round_trips_through_weights() -> None:
    source = build_model("heart-disease", 13, seed=1)
    target = build_model("heart-disease", 13, seed=2)
    load_weights_into(target, state_dict_to_weights(source))
    for a, b in zip(source.parameters(), target.parameters(), strict=True):
        assert torch.equal(a, b)


def test_load_rejects_weights_that_do_not_fit() -> None:
    model = build_model("heart-disease", 3, seed=0)
    wrong_shape = _weights()
    wrong_shape["linear.weight"] = np.zeros((1, 4), dtype=np.float32)
    with pytest.raises(InvalidWeights, match="shape"):
        load_weights_into(model, wrong_shape)
    with pytest.raises(InvalidWeights, match="missing"):
        load_weights_into(model, {"linear.weight": _weights()["linear.weight"]})


def _sample_weights() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    return {
        "layer.weight": rng.standard_normal((5, 3)).astype(np.float32),
        "layer.bias": rng.standard_normal(5).astype(np.float32),
        "scale": np.array(2.5, dtype=np.float32),
    }


def test_blob_weights_read_what_decode_reads(tmp_path: Path) -> None:
    weights = _sample_weights()
    path = tmp_path / "model"
    path.write_bytes(encode_weights(weights))
    lazy = BlobWeights(path)
    assert list(lazy) == sorted(weights) and len(lazy) == len(weights)
    assert lazy.shape("layer.weight") == (5, 3) and shape_of(lazy, "scale") == ()
    for name, array in decode_weights(path.read_bytes()).items():
        assert np.array_equal(lazy[name], array) and lazy[name].flags.writeable
    lazy.check()


def test_blob_weights_check_the_file_like_decode(tmp_path: Path) -> None:
    encoded = encode_weights(_sample_weights())
    truncated = tmp_path / "truncated"
    truncated.write_bytes(encoded[:-4])
    with pytest.raises(InvalidWeights, match="truncated"):
        BlobWeights(truncated)
    poisoned = tmp_path / "poisoned"
    poisoned.write_bytes(encoded[:-4] + struct.pack("<f", float("nan")))
    lazy = BlobWeights(poisoned)  # the header is fine; the values are read on use
    with pytest.raises(InvalidWeights, match="NaN"):
        lazy.check()
    with pytest.raises(InvalidWeights, match="exceed the limit"):
        BlobWeights(truncated, max_bytes=16)


def test_encoded_size_and_parts_match_the_encoding() -> None:
    weights = _sample_weights()
    encoded = encode_weights(weights)
    assert encoded_size(weights) == len(encoded)
    assert b"".join(encoding_parts(weights)) == encoded


def test_empty_tensors_of_any_shape_round_trip(tmp_path: Path) -> None:
    weights = {
        "a": np.zeros((0, 4, 4), dtype=np.float32),
        "b": np.zeros((2, 0), dtype=np.float32),
        "c": np.array([1.0], dtype=np.float32),
    }
    data = encode_weights(weights)
    path = tmp_path / "model"
    path.write_bytes(data)
    for read in (decode_weights(data), BlobWeights(path)):
        assert {name: read[name].shape for name in read} == {"a": (0, 4, 4), "b": (2, 0), "c": (1,)}
    assert decode_weights(data)["c"].tolist() == [1.0]


def test_an_empty_tensor_whose_shape_numpy_cannot_hold_is_invalid(tmp_path: Path) -> None:
    # 4 bytes x 2**62 is past numpy's index range, though the tensor has no values
    data = _with_header(b'{"dtype":"<f4","tensors":[["a",[0,4611686018427387904]]]}', b"")
    with pytest.raises(InvalidWeights, match="too large for an array"):
        decode_weights(data)
    path = tmp_path / "model"
    path.write_bytes(data)
    with pytest.raises(InvalidWeights, match="too large for an array"):
        BlobWeights(path)


def test_a_header_nested_deeply_enough_to_overflow_the_stack_is_garbled() -> None:
    # json.loads on this header overflowed the C stack and killed the process
    data = _with_header(b"[" * 200_000 + b"]" * 200_000, b"")
    with pytest.raises(InvalidWeights, match=r"garbled weights header.*nested deeper"):
        decode_weights(data)
