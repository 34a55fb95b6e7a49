"""Update codecs: a member's update (a weights delta) as fewer bytes. Pure numpy, no I/O.

A federation chooses one codec (``federation.update_codec``); every member encodes its model
updates with it and names it in the update's announcement (:data:`ANNOUNCED`), and every
node decodes with it. Cluster aggregates travel as fp16 or int8 under those codecs, else as
float32 (:func:`node.update_encoder.encode_aggregate`); global models stay float32
(:mod:`node.weights`).

=========  ======================================================================  =========
codec      what travels                                                             bytes/value
=========  ======================================================================  =========
``fp32``   the canonical weights encoding (:mod:`node.weights`), unchanged          4
``fp16``   every value as IEEE half precision, rounded to nearest                   2
``int8``   per block of :data:`INT8_BLOCK` values of a tensor, a float32 scale      about 1
           ``max|x| / 127`` and each value as ``floor(x / scale + u)``, ``u``
           uniform in [0, 1) (stochastic rounding: unbiased), in -127..127
``topk``   the ``k = ceil(fraction x n)`` values of largest magnitude of the        8 per kept
           whole update (its ``n`` values in tensor-name order) with their indices
=========  ======================================================================  =========

The ``fp16``, ``int8`` and ``topk`` encodings (format version 1) are, in order:

====================  =====================================================================
bytes                 content
====================  =====================================================================
4                     magic ``b"MSWC"``
2                     format version, unsigned little-endian (1)
4                     header length ``H`` in bytes, unsigned little-endian
H                     header: ASCII JSON, keys sorted, no whitespace:
                      ``{"codec":"fp16","tensors":[[name,[dims...]],...]}``,
                      ``{"block":256,"codec":"int8","tensors":...}`` or
                      ``{"codec":"topk","k":K,"tensors":...}``, tensors sorted by name
rest                  ``fp16``: every tensor's values as little-endian float16, C order, in
                      header order. ``int8``: every tensor's block scales as little-endian
                      float32 (tensor by tensor, in header order), then every tensor's values
                      as int8. ``topk``: ``K`` indices as little-endian uint32, strictly
                      increasing, into the update's values in header order, then the ``K``
                      values as little-endian float32. Nothing after.
====================  =====================================================================

Decoding checks everything a peer could get wrong: the lengths, the header, finite values
and scales (NaN, infinite or negative scales are refused), int8 values in -127..127, top-k
indices in range and increasing, and that what the bytes decode to is at most ``max_bytes``
as float32 (a small blob must not unpack into a huge model). Errors are
:class:`~node.errors.InvalidUpdateEncoding` (an :class:`~node.errors.InvalidWeights`).
Decoding is deterministic, so every node gets the same float32 tensors from the same bytes.
"""

from __future__ import annotations

import itertools
import json
import math
import struct
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from medswarm import untrusted_json
from node.errors import InvalidUpdateEncoding
from node.weights import (
    CODEC,
    DEFAULT_MAX_BYTES,
    MAX_DIMS,
    MAX_HEADER_BYTES,
    MAX_NAME_LENGTH,
    MAX_TENSORS,
    WeightArray,
    Weights,
    decode_weights,
    encode_weights,
)

UpdateCodec = Literal["fp32", "fp16", "int8", "topk"]
UPDATE_CODECS: tuple[UpdateCodec, ...] = ("fp32", "fp16", "int8", "topk")
ANNOUNCED: dict[str, str] = {
    "fp32": CODEC,
    "fp16": "mswc1-fp16",
    "int8": "mswc1-int8",
    "topk": "mswc1-topk",
}
"""How an update's announcement names each codec (``codec`` field)."""
BY_ANNOUNCED = {announced: codec for codec, announced in ANNOUNCED.items()}

MAGIC = b"MSWC"
FORMAT_VERSION = 1
INT8_BLOCK = 256
INT8_LIMIT = 127
FP16_MAX = float(np.finfo(np.float16).max)
DEFAULT_TOPK_FRACTION = 0.01
MAX_VALUES = 2**32 - 1  # top-k indices are uint32

_PREFIX = struct.Struct("<4sHI")
Float32Array = npt.NDArray[np.float32]
IndexArray = npt.NDArray[np.uint32]
Int8Array = npt.NDArray[np.int8]


# ------------------------------------------------------------------------- pure arithmetic


def int8_quantise(
    values: Float32Array, rng: np.random.Generator, block: int = INT8_BLOCK
) -> tuple[Float32Array, Int8Array]:
    """Quantise a flat float32 array by blocks: each block's scale ``max|x| / 127`` (float32)
    and each value as ``floor(x / scale + u)`` with ``u`` uniform in [0, 1) from ``rng``,
    clipped to -127..127 (0 in an all-zero block). ``scale * q`` then differs from ``x`` by
    less than ``scale`` and equals it in expectation."""
    count = values.size
    blocks = -(-count // block)
    padded = np.zeros(blocks * block, dtype=np.float32)
    padded[:count] = values
    rows = padded.reshape(blocks, block)
    scales = (np.abs(rows).max(axis=1) / np.float32(INT8_LIMIT)).astype(np.float32)
    divisors = np.where(scales > 0, scales, np.float32(1.0))
    scaled = rows / divisors[:, None]
    scaled += rng.random(scaled.shape, dtype=np.float32)
    np.floor(scaled, out=scaled)
    np.clip(scaled, -INT8_LIMIT, INT8_LIMIT, out=scaled)
    scaled[scales == 0] = 0
    return scales, scaled.reshape(-1)[:count].astype(np.int8)


def int8_dequantise(
    scales: Float32Array, quantised: Int8Array, block: int = INT8_BLOCK
) -> Float32Array:
    """The float32 values ``scale * q`` of :func:`int8_quantise`'s output."""
    per_value = np.repeat(scales, block)[: quantised.size]
    with np.errstate(over="ignore"):  # a scale too large gives infinities, refused by callers
        return quantised.astype(np.float32) * per_value


def topk_count(values: int, fraction: float) -> int:
    """How many of ``values`` values top-k keeps: ``ceil(fraction x values)``, at least one
    (none of none)."""
    if values == 0:
        return 0
    return min(values, max(1, math.ceil(fraction * values)))


def topk_select(values: Float32Array, k: int) -> IndexArray:
    """The indices (increasing) of the ``k`` values of largest magnitude in flat ``values``."""
    if k >= values.size:
        return np.arange(values.size, dtype=np.uint32)
    if k <= 0:
        return np.zeros(0, dtype=np.uint32)
    chosen = np.argpartition(np.abs(values), values.size - k)[values.size - k :]
    chosen.sort()
    return chosen.astype(np.uint32)


def topk_split(values: Float32Array, k: int) -> tuple[IndexArray, Float32Array, Float32Array]:
    """Split flat ``values`` into what top-k sends (indices and their values) and the
    residual it keeps (``values`` with the sent places zero): sent + residual == values."""
    indices = topk_select(values, k)
    residual = values.astype(np.float32, copy=True)
    residual[indices] = 0
    return indices, values[indices].astype(np.float32), residual


# ------------------------------------------------------------------------------- encoding


def announced_codec(codec: str) -> str:
    """The ``codec`` string of an update announcement for a ``federation.update_codec``."""
    try:
        return ANNOUNCED[codec]
    except KeyError:
        raise InvalidUpdateEncoding(
            f"unknown update codec {codec!r}; choose one of {', '.join(UPDATE_CODECS)}"
        ) from None


def encode_update(
    update: Mapping[str, WeightArray],
    codec: str,
    rng: np.random.Generator | None = None,
    topk_fraction: float = DEFAULT_TOPK_FRACTION,
) -> bytes:
    """Encode ``update`` (float32 tensors by name) with ``codec`` (see the module docstring).

    ``rng`` draws int8's stochastic rounding (required for ``int8``); ``topk_fraction`` is
    the share of values top-k keeps. Raises :class:`~node.errors.InvalidUpdateEncoding` for
    an unknown codec, empty or non-finite tensors, bad names, or values beyond fp16's range.
    """
    if codec == "fp32":
        return encode_weights(update)
    announced_codec(codec)
    entries = _prepared(update)
    shapes = [(name, tuple(array.shape)) for name, array in entries]
    if codec == "fp16":
        parts = [_fp16_bytes(name, array) for name, array in entries]
        return _framed({"codec": "fp16"}, shapes, parts)
    if codec == "int8":
        if rng is None:
            raise InvalidUpdateEncoding("int8 needs a random generator for stochastic rounding")
        quantised = [int8_quantise(array.reshape(-1), rng) for _, array in entries]
        parts = [scales.tobytes() for scales, _ in quantised]
        parts += [values.tobytes() for _, values in quantised]
        return _framed({"block": INT8_BLOCK, "codec": "int8"}, shapes, parts)
    if not (0 < topk_fraction <= 1):
        raise InvalidUpdateEncoding(f"top-k fraction {topk_fraction!r} must be in (0, 1]")
    flat = _flat(entries)
    indices, kept, _residual = topk_split(flat, topk_count(flat.size, topk_fraction))
    header = {"codec": "topk", "k": int(indices.size)}
    return _framed(header, shapes, [indices.astype("<u4").tobytes(), kept.astype("<f4").tobytes()])


def _prepared(update: Mapping[str, WeightArray]) -> list[tuple[str, Float32Array]]:
    """``update``'s tensors sorted by name as float32 arrays, checked."""
    if not update:
        raise InvalidUpdateEncoding("cannot encode an empty update: a model has a tensor")
    if len(update) > MAX_TENSORS:
        raise InvalidUpdateEncoding(f"{len(update)} tensors, at most {MAX_TENSORS} are allowed")
    entries = []
    for name in sorted(update):
        _check_name(name)
        array = update[name]
        if not isinstance(array, np.ndarray) or array.dtype.kind != "f" or array.ndim > MAX_DIMS:
            raise InvalidUpdateEncoding(
                f"tensor {name!r} must be a floating-point numpy array of at most {MAX_DIMS} "
                "dimensions"
            )
        values = np.asarray(array, dtype=np.float32, order="C")  # keeps 0-d arrays 0-d
        if not np.isfinite(values).all():
            raise InvalidUpdateEncoding(f"tensor {name!r} holds NaN or infinite values")
        entries.append((name, values))
    if sum(array.size for _, array in entries) > MAX_VALUES:
        raise InvalidUpdateEncoding(f"an update of more than {MAX_VALUES} values cannot be encoded")
    return entries


def _fp16_bytes(name: str, array: Float32Array) -> bytes:
    if array.size and float(np.abs(array).max()) > FP16_MAX:
        raise InvalidUpdateEncoding(
            f"tensor {name!r} has values beyond float16's range (+-{FP16_MAX:g}); "
            'use federation.update_codec = "int8" or "fp32" for such updates'
        )
    return array.astype("<f2").tobytes()


def _flat(entries: list[tuple[str, Float32Array]]) -> Float32Array:
    if not entries:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate([array.reshape(-1) for _, array in entries])


def _header_bytes(fields: Mapping[str, Any], shapes: list[tuple[str, tuple[int, ...]]]) -> bytes:
    header = {**fields, "tensors": [[name, list(shape)] for name, shape in shapes]}
    return json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _framed(
    fields: Mapping[str, Any], shapes: list[tuple[str, tuple[int, ...]]], parts: list[bytes]
) -> bytes:
    header = _header_bytes(fields, shapes)
    if len(header) > MAX_HEADER_BYTES:
        raise InvalidUpdateEncoding(f"header of {len(header)} bytes exceeds {MAX_HEADER_BYTES}")
    return b"".join([_PREFIX.pack(MAGIC, FORMAT_VERSION, len(header)), header, *parts])


# ------------------------------------------------------------------------------- decoding


def decode_update(data: bytes, announced: str, max_bytes: int = DEFAULT_MAX_BYTES) -> Weights:
    """Decode an update announced with codec string ``announced`` into fresh float32 arrays.

    ``max_bytes`` bounds both the encoding and what it decodes to (as float32). Raises
    :class:`~node.errors.InvalidUpdateEncoding` saying what is wrong: an unknown codec, a
    blob of another codec, truncated or trailing bytes, a garbled header, NaN or negative
    scales, int8 values outside -127..127, top-k indices out of range or not increasing, or
    non-finite values.
    """
    codec = BY_ANNOUNCED.get(announced)
    if codec is None:
        raise InvalidUpdateEncoding(
            f"unknown update codec {announced!r}; this node reads "
            + ", ".join(sorted(BY_ANNOUNCED))
        )
    if not isinstance(data, bytes | bytearray | memoryview):
        raise InvalidUpdateEncoding(f"an update must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if codec == "fp32":
        return decode_weights(data, max_bytes)  # raises InvalidWeights
    fields, shapes, body = _parse(data, max_bytes)
    if fields.get("codec") != codec:
        raise InvalidUpdateEncoding(
            f"update announced as {announced!r} holds a {fields.get('codec')!r} encoding"
        )
    sizes = [math.prod(shape) for _, shape in shapes]
    if 4 * sum(sizes) > max_bytes:
        raise InvalidUpdateEncoding(
            f"update decodes to {4 * sum(sizes)} bytes of float32, over the limit of "
            f"{max_bytes} (network.max_blob_bytes)"
        )
    if codec == "fp16":
        flat = _fp16_values(body, sum(sizes))
    elif codec == "int8":
        flat = _int8_values(body, sizes, fields)
    else:
        flat = _topk_values(body, sum(sizes), fields)
    offsets = itertools.accumulate(sizes, initial=0)
    return {
        name: flat[start : start + size].reshape(shape).copy()
        for (name, shape), start, size in zip(shapes, offsets, sizes, strict=False)
    }


def _parse(
    data: bytes, max_bytes: int
) -> tuple[dict[str, Any], list[tuple[str, tuple[int, ...]]], bytes]:
    """The header's fields (but tensors), the tensor shapes and the body, checked."""
    if len(data) > max_bytes:
        raise InvalidUpdateEncoding(f"update of {len(data)} bytes exceeds the limit of {max_bytes}")
    if len(data) < _PREFIX.size:
        raise InvalidUpdateEncoding(f"truncated update: {len(data)} bytes, shorter than the prefix")
    magic, version, header_len = _PREFIX.unpack_from(data)
    if magic != MAGIC:
        raise InvalidUpdateEncoding(f"not an encoded update: magic {magic!r}, expected {MAGIC!r}")
    if version != FORMAT_VERSION:
        raise InvalidUpdateEncoding(
            f"unsupported update format version {version}; this node reads {FORMAT_VERSION}"
        )
    if header_len > MAX_HEADER_BYTES or _PREFIX.size + header_len > len(data):
        raise InvalidUpdateEncoding("truncated update: the header runs past the end of the data")
    raw = data[_PREFIX.size : _PREFIX.size + header_len]
    try:
        header: Any = untrusted_json.loads(raw.decode("ascii"))
    except ValueError as exc:
        raise InvalidUpdateEncoding(f"garbled update header: not ASCII JSON ({exc})") from None
    expected_keys = {
        "fp16": {"codec", "tensors"},
        "int8": {"block", "codec", "tensors"},
        "topk": {"codec", "k", "tensors"},
    }
    codec = header.get("codec") if isinstance(header, dict) else None
    if not isinstance(codec, str) or set(header) != expected_keys.get(codec):
        raise InvalidUpdateEncoding(
            "garbled update header: expected the keys codec, tensors (fp16), block, codec, "
            "tensors (int8) or codec, k, tensors (topk)"
        )
    shapes = _shapes(header["tensors"])
    fields = {key: value for key, value in header.items() if key != "tensors"}
    if _header_bytes(fields, shapes) != raw:
        raise InvalidUpdateEncoding(
            "update header is not canonical: re-formatted JSON (spacing, key order, escapes)"
        )
    return fields, shapes, data[_PREFIX.size + header_len :]


def _shapes(tensors: object) -> list[tuple[str, tuple[int, ...]]]:
    if not isinstance(tensors, list) or not tensors or len(tensors) > MAX_TENSORS:
        raise InvalidUpdateEncoding(f"garbled update header: tensors must be 1..{MAX_TENSORS}")
    shapes = []
    for entry in tensors:
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[1], list)):
            raise InvalidUpdateEncoding("garbled update header: each tensor must be [name, [dims]]")
        name, dims = _check_name(entry[0]), entry[1]
        if len(dims) > MAX_DIMS or not all(
            isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= MAX_VALUES for d in dims
        ):
            raise InvalidUpdateEncoding(f"garbled update header: bad shape {dims!r} for {name!r}")
        shapes.append((name, tuple(dims)))
    names = [name for name, _ in shapes]
    if any(a >= b for a, b in itertools.pairwise(names)):
        raise InvalidUpdateEncoding("update header is not canonical: names unsorted or repeated")
    if sum(math.prod(shape) for _, shape in shapes) > MAX_VALUES:
        raise InvalidUpdateEncoding(f"update header claims more than {MAX_VALUES} values")
    return shapes


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not name or len(name) > MAX_NAME_LENGTH:
        raise InvalidUpdateEncoding(
            f"tensor name {name!r} is not a non-empty string of at most {MAX_NAME_LENGTH} "
            "characters"
        )
    return name


def _body_length(body: bytes, expected: int, what: str) -> None:
    if len(body) < expected:
        raise InvalidUpdateEncoding(
            f"truncated update: {len(body)} bytes of {what}, {expected} expected"
        )
    if len(body) > expected:
        raise InvalidUpdateEncoding(f"{len(body) - expected} unexpected bytes after the {what}")


def _finite(values: Float32Array, what: str) -> Float32Array:
    if not np.isfinite(values).all():
        raise InvalidUpdateEncoding(f"update holds NaN or infinite {what}")
    return values


def _fp16_values(body: bytes, count: int) -> Float32Array:
    _body_length(body, 2 * count, "fp16 values")
    return _finite(np.frombuffer(body, dtype="<f2").astype(np.float32), "fp16 values")


def _int8_values(body: bytes, sizes: list[int], fields: Mapping[str, Any]) -> Float32Array:
    block = fields["block"]
    if block != INT8_BLOCK or isinstance(block, bool):
        raise InvalidUpdateEncoding(f"int8 block of {block!r} values; this node reads {INT8_BLOCK}")
    blocks = [-(-size // block) for size in sizes]
    count = sum(sizes)
    _body_length(body, 4 * sum(blocks) + count, "int8 scales and values")
    scales = np.frombuffer(body, dtype="<f4", count=sum(blocks)).astype(np.float32)
    if not (np.isfinite(scales).all() and (scales >= 0).all()):
        raise InvalidUpdateEncoding("int8 update holds a NaN, infinite or negative block scale")
    quantised = np.frombuffer(body, dtype=np.int8, offset=4 * sum(blocks))
    if quantised.size and int(quantised.min()) < -INT8_LIMIT:
        raise InvalidUpdateEncoding(f"int8 update holds -128, outside -{INT8_LIMIT}..{INT8_LIMIT}")
    pieces = []
    scale_starts = itertools.accumulate(blocks, initial=0)
    value_starts = itertools.accumulate(sizes, initial=0)
    for size, tensor_blocks, s, v in zip(sizes, blocks, scale_starts, value_starts, strict=False):
        pieces.append(int8_dequantise(scales[s : s + tensor_blocks], quantised[v : v + size]))
    flat = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)
    return _finite(flat, "values (a scale too large)")


def _topk_values(body: bytes, count: int, fields: Mapping[str, Any]) -> Float32Array:
    k = fields["k"]
    if not isinstance(k, int) or isinstance(k, bool) or not 0 <= k <= count:
        raise InvalidUpdateEncoding(f"top-k update keeps {k!r} values of {count}")
    if count and not k:
        raise InvalidUpdateEncoding("top-k update keeps no value: k is at least 1")
    _body_length(body, 8 * k, "top-k indices and values")
    indices = np.frombuffer(body, dtype="<u4", count=k)
    if k and int(indices[-1]) >= count:
        raise InvalidUpdateEncoding(
            f"top-k index {int(indices[-1])} is out of range for an update of {count} values"
        )
    if k > 1 and not (np.diff(indices.astype(np.int64)) > 0).all():
        raise InvalidUpdateEncoding("top-k indices are not strictly increasing")
    values = _finite(np.frombuffer(body, dtype="<f4", offset=4 * k).astype(np.float32), "values")
    flat = np.zeros(count, dtype=np.float32)
    flat[indices] = values
    return flat
