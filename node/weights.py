"""Model weights as plain arrays, and their one canonical byte encoding.

Weights are a mapping from tensor name to a float32 numpy array. Their encoding (format
version 1) is, in order:

====================  =====================================================================
bytes                 content
====================  =====================================================================
4                     magic ``b"MSWT"``
2                     format version, unsigned little-endian (1)
4                     header length ``H`` in bytes, unsigned little-endian
H                     header: ASCII JSON ``{"dtype":"<f4","tensors":[[name,[dims...]],...]}``
                      with tensors sorted by name, keys sorted, no whitespace
rest                  every tensor's values as little-endian float32, C order, in header
                      order, nothing after
====================  =====================================================================

The encoding is canonical: equal weights give equal bytes whatever the mapping's order, and
:func:`decode_weights` accepts only bytes that :func:`encode_weights` would produce, so the
SHA-256 of the encoding (:func:`weights_hash`) identifies a model everywhere.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import struct
import weakref
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from medswarm import untrusted_json
from node.errors import InvalidWeights

if TYPE_CHECKING:
    from torch import nn

WeightArray = npt.NDArray[np.float32]
Weights = dict[str, WeightArray]

MAGIC = b"MSWT"
FORMAT_VERSION = 1
CODEC = "mswt1-f32"  # how announcements name this encoding
DTYPE = "<f4"
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
"""Largest encoding :func:`decode_weights` accepts unless told otherwise (64 MiB)."""
MAX_HEADER_BYTES = 1024 * 1024
MAX_TENSORS = 10_000
MAX_NAME_LENGTH = 512
MAX_DIMS = 8

_PREFIX = struct.Struct("<4sHI")
_MAX_ARRAY_BYTES = int(np.iinfo(np.intp).max)


def _header_bytes(entries: list[tuple[str, tuple[int, ...]]]) -> bytes:
    header = {"dtype": DTYPE, "tensors": [[name, list(shape)] for name, shape in entries]}
    return json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not name or len(name) > MAX_NAME_LENGTH:
        raise InvalidWeights(
            f"tensor name {name!r} is not a non-empty string of at most "
            f"{MAX_NAME_LENGTH} characters"
        )
    return name


def _check_array(name: str, array: object) -> WeightArray:
    if not isinstance(array, np.ndarray):
        raise InvalidWeights(f"tensor {name!r} is a {type(array).__name__}, expected a numpy array")
    if array.dtype.kind != "f" or array.dtype.itemsize != 4:
        raise InvalidWeights(
            f"tensor {name!r} has dtype {array.dtype}, expected float32; "
            "cast with .astype(numpy.float32)"
        )
    if array.ndim > MAX_DIMS:
        raise InvalidWeights(f"tensor {name!r} has {array.ndim} dimensions, at most {MAX_DIMS}")
    if not np.isfinite(array).all():
        raise InvalidWeights(f"tensor {name!r} holds NaN or infinite values")
    return array.astype(DTYPE, copy=False)


def _encoding_parts(weights: Mapping[str, WeightArray]) -> list[bytes | memoryview]:
    """The pieces of the canonical encoding, in order, without copying the tensor data."""
    if not weights:
        raise InvalidWeights("cannot encode empty weights: a model has at least one tensor")
    if len(weights) > MAX_TENSORS:
        raise InvalidWeights(f"{len(weights)} tensors, at most {MAX_TENSORS} are allowed")
    names = sorted(_check_name(name) for name in weights)
    arrays = [_check_array(name, weights[name]) for name in names]
    header = _header_bytes([(n, tuple(a.shape)) for n, a in zip(names, arrays, strict=True)])
    if len(header) > MAX_HEADER_BYTES:
        raise InvalidWeights(f"header of {len(header)} bytes exceeds {MAX_HEADER_BYTES}")
    prefix = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(header))
    # Flat views: a memoryview of an array with a zero in its shape cannot be cast to bytes.
    return [prefix, header, *(_bytes_of(np.ascontiguousarray(a)) for a in arrays)]


def _bytes_of(array: WeightArray) -> memoryview:
    """The bytes of a C-contiguous array, without a copy (writable if the array is)."""
    return array.reshape(-1).data.cast("B")


def encode_weights(weights: Mapping[str, WeightArray]) -> bytes:
    """Return the canonical encoding of ``weights`` (see the module docstring).

    Raises :class:`InvalidWeights` for an empty mapping, a bad name, a non-float32 array or
    non-finite values.
    """
    return b"".join(_encoding_parts(weights))


def _parse_header(raw: bytes) -> list[tuple[str, tuple[int, ...]]]:
    try:
        header: Any = untrusted_json.loads(raw.decode("ascii"))
    except ValueError as exc:  # not ASCII, not JSON, nested too deeply, a number too long
        raise InvalidWeights(f"garbled weights header: not ASCII JSON ({exc})") from None
    if not isinstance(header, dict) or set(header) != {"dtype", "tensors"}:
        raise InvalidWeights("garbled weights header: expected exactly the keys dtype, tensors")
    if header["dtype"] != DTYPE:
        raise InvalidWeights(f"unsupported weights dtype {header['dtype']!r}, expected {DTYPE!r}")
    tensors = header["tensors"]
    if not isinstance(tensors, list) or not tensors or len(tensors) > MAX_TENSORS:
        raise InvalidWeights(f"garbled weights header: tensors must be 1..{MAX_TENSORS} entries")
    entries: list[tuple[str, tuple[int, ...]]] = []
    for entry in tensors:
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[1], list)):
            raise InvalidWeights("garbled weights header: each tensor must be [name, [dims]]")
        name = _check_name(entry[0])
        dims = entry[1]
        if len(dims) > MAX_DIMS or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in dims
        ):
            raise InvalidWeights(f"garbled weights header: bad shape {dims!r} for {name!r}")
        entries.append((name, tuple(dims)))
    names = [name for name, _ in entries]
    if any(a >= b for a, b in itertools.pairwise(names)):
        raise InvalidWeights("weights header is not canonical: tensor names unsorted or repeated")
    if _header_bytes(entries) != raw:
        raise InvalidWeights(
            "weights header is not canonical: re-formatted JSON (spacing, key order, escapes)"
        )
    return entries


@dataclass(frozen=True)
class _Layout:
    """Where each tensor of an encoding lies: (name, shape, byte offset, byte size)."""

    tensors: tuple[tuple[str, tuple[int, ...], int, int], ...]


def _layout(head: bytes, total: int, max_bytes: int) -> _Layout:
    """Check an encoding's prefix and header (``head`` starts the encoding of ``total``
    bytes and holds at least the prefix and header) and return its tensor layout."""
    if total > max_bytes:
        raise InvalidWeights(f"weights of {total} bytes exceed the limit of {max_bytes}")
    if total < _PREFIX.size:
        raise InvalidWeights(f"truncated weights: {total} bytes, shorter than the prefix")
    magic, version, header_len = _PREFIX.unpack_from(head)
    if magic != MAGIC:
        raise InvalidWeights(f"not medswarm weights: magic {magic!r}, expected {MAGIC!r}")
    if version != FORMAT_VERSION:
        raise InvalidWeights(
            f"unsupported weights format version {version}; this node reads {FORMAT_VERSION}"
        )
    if header_len > MAX_HEADER_BYTES:
        raise InvalidWeights(f"weights header of {header_len} bytes exceeds {MAX_HEADER_BYTES}")
    body_start = _PREFIX.size + header_len
    if body_start > total:
        raise InvalidWeights("truncated weights: the header runs past the end of the data")
    entries = _parse_header(bytes(head[_PREFIX.size : body_start]))
    for name, shape in entries:
        # An empty tensor takes no bytes whatever its other dimensions, but numpy still
        # refuses a shape whose non-zero dimensions multiply past its index range.
        if 4 * math.prod(d for d in shape if d) > _MAX_ARRAY_BYTES:
            raise InvalidWeights(f"tensor {name!r} has shape {list(shape)}: too large for an array")
    sizes = [int(np.prod(shape, dtype=object)) * 4 for _, shape in entries]
    body_len = total - body_start
    if sum(sizes) > body_len:
        raise InvalidWeights(f"truncated weights: {body_len} data bytes, {sum(sizes)} expected")
    if sum(sizes) < body_len:
        raise InvalidWeights(f"{body_len - sum(sizes)} unexpected bytes after the weights data")
    offsets = itertools.accumulate(sizes, initial=body_start)
    return _Layout(
        tuple(
            (name, shape, offset, size)
            for (name, shape), offset, size in zip(entries, offsets, sizes, strict=False)
        )
    )


def _finite(name: str, array: WeightArray) -> WeightArray:
    if not np.isfinite(array).all():
        raise InvalidWeights(f"tensor {name!r} holds NaN or infinite values")
    return array


def decode_weights(data: bytes, max_bytes: int = DEFAULT_MAX_BYTES) -> Weights:
    """Decode bytes made by :func:`encode_weights` into fresh, writable float32 arrays.

    Raises :class:`InvalidWeights` saying why when the data is larger than ``max_bytes``,
    truncated, has trailing bytes, a wrong magic or version, a garbled or non-canonical
    header, or NaN/infinite values.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise InvalidWeights(f"weights must be bytes, got {type(data).__name__}")
    data = bytes(data)
    layout = _layout(data[: _PREFIX.size + MAX_HEADER_BYTES], len(data), max_bytes)
    weights: Weights = {}
    for name, shape, offset, size in layout.tensors:
        flat = np.frombuffer(data, dtype=DTYPE, count=size // 4, offset=offset)
        weights[name] = _finite(name, flat.astype(np.float32).reshape(shape))
    return weights


class BlobWeights(Mapping[str, WeightArray]):
    """Weights encoded in a file, read one tensor at a time when asked for.

    Opening checks the prefix and the header (as :func:`decode_weights` does); each access
    reads that tensor into a fresh writable array and checks it is finite, so a node can
    average several models while holding one tensor of each. Call :meth:`check` to read
    everything once up front. The file stays open until the object is garbage-collected.
    """

    def __init__(self, path: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self._file = path.open("rb")
        weakref.finalize(self, self._file.close)
        total = os.fstat(self._file.fileno()).st_size
        head = os.pread(self._file.fileno(), _PREFIX.size + MAX_HEADER_BYTES, 0)
        self._tensors = {
            name: (shape, offset, size)
            for name, shape, offset, size in _layout(head, total, max_bytes).tensors
        }

    def __getitem__(self, name: str) -> WeightArray:
        shape, offset, size = self._tensors[name]
        array = np.empty(shape, dtype=np.float32)
        view = _bytes_of(array)
        done = 0
        while done < size:
            read = os.preadv(self._file.fileno(), [view[done:]], offset + done)
            if read == 0:
                raise InvalidWeights(f"weights file {self._file.name} shrank while being read")
            done += read
        return _finite(name, array)

    def __iter__(self) -> Iterator[str]:
        return iter(self._tensors)

    def __len__(self) -> int:
        return len(self._tensors)

    def shape(self, name: str) -> tuple[int, ...]:
        """The shape of tensor ``name``, without reading it."""
        return self._tensors[name][0]

    def check(self) -> None:
        """Read every tensor once; raise :class:`InvalidWeights` if any is not finite."""
        for name in self._tensors:
            self[name]


def encoded_size(weights: Mapping[str, WeightArray]) -> int:
    """The length of :func:`encode_weights`' bytes for ``weights`` (which it must accept),
    from their names and shapes alone."""
    names = sorted(weights)
    header = _header_bytes([(name, tuple(np.shape(weights[name]))) for name in names])
    return _PREFIX.size + len(header) + sum(4 * int(np.size(weights[name])) for name in names)


def shape_of(weights: Mapping[str, npt.ArrayLike], name: str) -> tuple[int, ...]:
    """The shape of ``weights[name]``, without reading it from a :class:`BlobWeights`."""
    if isinstance(weights, BlobWeights):
        return weights.shape(name)
    return tuple(np.shape(weights[name]))


def encoding_parts(weights: Mapping[str, WeightArray]) -> list[bytes | memoryview]:
    """The canonical encoding of ``weights`` in pieces (joined, they are
    :func:`encode_weights`'s bytes), for writing it out without a copy of the whole."""
    return _encoding_parts(weights)


def weights_hash(weights: Mapping[str, WeightArray]) -> str:
    """Return the lowercase hex SHA-256 of the canonical encoding of ``weights``."""
    digest = hashlib.sha256()
    for part in _encoding_parts(weights):
        digest.update(part)
    return digest.hexdigest()


def state_dict_to_weights(model: nn.Module) -> Weights:
    """Copy ``model``'s state (parameters and buffers) into float32 arrays, keyed by name.

    Raises :class:`InvalidWeights` for a non-floating entry (such as an integer counter).
    """
    weights: Weights = {}
    for name, tensor in model.state_dict().items():
        if not tensor.is_floating_point():
            raise InvalidWeights(
                f"state entry {name!r} has dtype {tensor.dtype}; only floating tensors can be "
                "exchanged as weights"
            )
        weights[name] = tensor.detach().cpu().numpy().astype(np.float32, copy=True)
    return weights


def load_weights_into(model: nn.Module, weights: Mapping[str, WeightArray]) -> None:
    """Copy ``weights`` into ``model`` in place; names and shapes must match exactly.

    Raises :class:`InvalidWeights` naming the missing, unexpected or mis-shaped tensors.
    """
    import torch  # here, so that torch-free code (aggregation) can import this module

    state = model.state_dict()
    missing = sorted(set(state) - set(weights))
    unexpected = sorted(set(weights) - set(state))
    if missing or unexpected:
        raise InvalidWeights(
            f"weights do not fit the model: missing {missing}, unexpected {unexpected}"
        )
    tensors = {}
    for name, target in state.items():
        array = np.asarray(weights[name])
        if tuple(array.shape) != tuple(target.shape):
            raise InvalidWeights(
                f"tensor {name!r} has shape {tuple(array.shape)}, the model expects "
                f"{tuple(target.shape)}"
            )
        if array.dtype == np.float32 and target.dtype == torch.float32 and array.flags.writeable:
            tensors[name] = torch.from_numpy(array)  # load_state_dict copies it
        else:
            tensors[name] = torch.tensor(array, dtype=target.dtype)
    model.load_state_dict(tensors, strict=True)
