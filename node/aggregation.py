"""Aggregation rules: pure functions of weight arrays and sample counts (no I/O, no torch).

Update protocol: every node starts round ``r`` from the same global weights ``g``, trains
locally to ``w_i`` and publishes ``delta(w_i, g)`` with its number of training samples
``n_i``. The next global model is ``apply_delta(g, fedavg([(delta_i, n_i), ...]))``.

FedAvg sums in float32, as Flower's aggregate does: each update is multiplied by its sample
count and added into a float32 running sum, each operation rounded once (IEEE 754, no fused
multiply-add), over chunks of :data:`CHUNK` values so the products stay in the processor's
cache. That reads each update once and the sum once per update, as a plain ``numpy.add``
does, and moves half the bytes a float64 sum would. For M updates the rounding error is at
most about ``M * 2**-24`` of the sum of the weighted updates' sizes, far below what the update
codecs or training noise change. Deltas are computed in float64 and cast to float32. Every
step is elementwise, in input order, so equal inputs in equal order give bit-identical
outputs on every platform. Callers must put the updates in one agreed order (for example
sorted by sender) before aggregating.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from node.errors import AggregationError
from node.weights import WeightArray, Weights, shape_of

Float64Array = npt.NDArray[np.float64]
Float32Array = npt.NDArray[np.float32]

CHUNK = 1 << 15  # values per step of a weighted sum: 128 KiB of float32 products, in cache


def checked_wide(name: str, array: object, where: str) -> Float64Array:
    """``array`` as float64, checked to be a finite floating-point numpy array."""
    if not isinstance(array, np.ndarray) or array.dtype.kind != "f":
        raise AggregationError(f"{where}: tensor {name!r} is not a floating-point numpy array")
    wide = array.astype(np.float64)
    if not np.isfinite(wide).all():
        raise AggregationError(f"{where}: tensor {name!r} holds NaN or infinite values")
    return wide


def narrow(name: str, wide: Float64Array, where: str) -> WeightArray:
    """``wide`` as float32, checked not to overflow."""
    narrow = wide.astype(np.float32)
    if not np.isfinite(narrow).all():
        raise AggregationError(f"{where}: tensor {name!r} overflows float32")
    return narrow


def check_same_layout(
    reference: Mapping[str, npt.ArrayLike], other: Mapping[str, npt.ArrayLike], where: str
) -> None:
    """Raise :class:`AggregationError` unless both hold the same tensor names and shapes."""
    if set(reference) != set(other):
        missing = sorted(set(reference) - set(other))
        extra = sorted(set(other) - set(reference))
        raise AggregationError(f"{where}: tensor names differ (missing {missing}, extra {extra})")
    for name in reference:
        expected, found = shape_of(reference, name), shape_of(other, name)
        if found != expected:
            raise AggregationError(
                f"{where}: tensor {name!r} has shape {found}, expected {expected}"
            )


def fedavg(updates: Sequence[tuple[Mapping[str, WeightArray], int]]) -> Weights:
    """Return the sample-weighted mean ``sum(n_i * u_i) / sum(n_i)`` of the updates.

    ``updates`` holds ``(weights_or_delta, samples)`` pairs; every update must have the same
    tensor names and shapes and finite values. Sample counts are non-negative integers with a
    positive total. The result is deterministic given the input order (sort by sender first).
    Raises :class:`AggregationError` otherwise.
    """
    if not updates:
        raise AggregationError("fedavg needs at least one update, got none")
    first = updates[0][0]
    if not first:
        raise AggregationError("fedavg: update 0 has no tensors")
    total = 0
    for index, (update, samples) in enumerate(updates):
        where = f"fedavg: update {index}"
        if isinstance(samples, bool) or not isinstance(samples, int | np.integer) or samples < 0:
            raise AggregationError(
                f"{where}: samples must be a non-negative integer, got {samples!r}"
            )
        check_same_layout(first, update, where)
        total += int(samples)
    if total == 0:
        raise AggregationError("fedavg: the updates' sample counts add up to zero")
    weighted = [update for update, samples in updates if samples > 0]
    only = weighted[0] if len(weighted) == 1 else None
    result: Weights = {}
    scratch = np.empty(CHUNK, dtype=np.float32)
    for name in sorted(first):
        # Updates may be BlobWeights: each tensor is read when it is needed and dropped after.
        total_sum = np.zeros(shape_of(first, name), dtype=np.float32)
        for index, (update, samples) in enumerate(updates):
            tensor = _check_floating(name, update[name], f"fedavg: update {index}")
            add_weighted(total_sum.reshape(-1), tensor.reshape(-1), samples, scratch)
        mean = np.empty_like(total_sum)
        if not divide_finite(total_sum.reshape(-1), total, mean.reshape(-1)):
            _raise_for_non_finite(name, [u for u, _ in updates], "fedavg", "float32")
        result[name] = mean if only is None else sole_update(only[name])
    return result


def sole_update(tensor: npt.NDArray[np.floating]) -> WeightArray:
    """The mean when one update carries all the weight: that update itself, as float32 (its
    ``n * u / n`` in float32 could differ from ``u`` in the last bit)."""
    return np.array(tensor, dtype=np.float32)


def add_weighted(
    total: Float32Array, values: npt.NDArray[np.floating], samples: int, scratch: Float32Array
) -> None:
    """``total += float32(samples) * values`` in place, chunk by chunk through ``scratch``
    (at least :data:`CHUNK` float32 values): the product rounded to float32, then the sum."""
    weight = np.float32(samples)
    with np.errstate(over="ignore", invalid="ignore"):  # beyond float32: found by divide_finite
        for start in range(0, values.size, CHUNK):
            stop = min(values.size, start + CHUNK)
            product = scratch[: stop - start]
            np.multiply(values[start:stop], weight, out=product, casting="same_kind")
            np.add(total[start:stop], product, out=total[start:stop])


def divide_finite(total: Float32Array, samples: int, out: Float32Array) -> bool:
    """``out = total / float32(samples)``; False if any value is NaN or infinite (a NaN or
    infinity added, or a sum beyond float32)."""
    np.divide(total, np.float32(samples), out=out)
    return bool(np.isfinite(out).all())


def cluster_averages(
    updates: Sequence[tuple[Mapping[str, WeightArray], int]], clusters: Sequence[int]
) -> list[tuple[Weights, int]]:
    """Each cluster's FedAvg of its members' updates (in the given order) and its samples, in
    cluster order: what the nodes' aggregators record, ``clusters`` a cluster per update."""
    parts = []
    for cluster in sorted(set(clusters)):
        members = [u for u, c in zip(updates, clusters, strict=True) if c == cluster]
        parts.append((fedavg(members), sum(n for _, n in members)))
    return parts


def delta(new: Mapping[str, WeightArray], old: Mapping[str, WeightArray]) -> Weights:
    """Return the update ``new - old`` tensor by tensor (names and shapes must match)."""
    return _elementwise(np.subtract, new, old, "delta")


def apply_delta(
    global_weights: Mapping[str, WeightArray], update: Mapping[str, WeightArray]
) -> Weights:
    """Return ``global_weights + update`` tensor by tensor (names and shapes must match)."""
    return _elementwise(np.add, global_weights, update, "apply_delta")


def _elementwise(
    operation: np.ufunc,
    left: Mapping[str, WeightArray],
    right: Mapping[str, WeightArray],
    where: str,
) -> Weights:
    """``operation(left, right)`` per tensor, computed in float64 and returned as float32."""
    reference, other = (right, left) if where == "delta" else (left, right)
    check_same_layout(reference, other, where)
    result: Weights = {}
    for name in sorted(reference):
        a = _check_floating(name, left[name], where)
        b = _check_floating(name, right[name], where)
        wide = operation(a, b, dtype=np.float64)
        if not np.isfinite(wide).all():  # NaN or infinity in either operand shows up here
            _raise_for_non_finite(name, [left, right], where)
        result[name] = narrow(name, wide, where)
    return result


def _check_floating(name: str, array: object, where: str) -> npt.NDArray[np.floating]:
    if not isinstance(array, np.ndarray) or array.dtype.kind != "f":
        raise AggregationError(f"{where}: tensor {name!r} is not a floating-point numpy array")
    return array


def _raise_for_non_finite(
    name: str,
    operands: Sequence[Mapping[str, WeightArray]],
    where: str,
    arithmetic: str = "float64",
) -> None:
    """Name the operand whose tensor ``name`` holds NaN or infinity (the error path only)."""
    for index, operand in enumerate(operands):
        checked_wide(
            name, operand[name], f"{where}: update {index}" if where == "fedavg" else where
        )
    raise AggregationError(f"{where}: tensor {name!r} overflows {arithmetic}")
