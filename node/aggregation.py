"""Aggregation rules: pure functions of weight arrays and sample counts (no I/O, no torch).

Update protocol: every node starts round ``r`` from the same global weights ``g``, trains
locally to ``w_i`` and publishes ``delta(w_i, g)`` with its number of training samples
``n_i``. The next global model is ``apply_delta(g, fedavg([(delta_i, n_i), ...]))``.

Arithmetic is float64 (elementwise, accumulated in input order) and results are cast to
float32, so equal inputs in equal order give bit-identical outputs on every platform. Callers
must put the updates in one agreed order (for example sorted by sender) before aggregating.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from node.errors import AggregationError
from node.weights import WeightArray, Weights

Float64Array = npt.NDArray[np.float64]


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
    for name, array in reference.items():
        if np.shape(other[name]) != np.shape(array):
            raise AggregationError(
                f"{where}: tensor {name!r} has shape {np.shape(other[name])}, "
                f"expected {np.shape(array)}"
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
    sums: dict[str, Float64Array] = {name: np.zeros(np.shape(a)) for name, a in first.items()}
    for index, (update, samples) in enumerate(updates):
        where = f"fedavg: update {index}"
        if isinstance(samples, bool) or not isinstance(samples, int | np.integer) or samples < 0:
            raise AggregationError(
                f"{where}: samples must be a non-negative integer, got {samples!r}"
            )
        check_same_layout(first, update, where)
        for name in first:
            sums[name] += float(samples) * checked_wide(name, update[name], where)
        total += int(samples)
    if total == 0:
        raise AggregationError("fedavg: the updates' sample counts add up to zero")
    return {name: narrow(name, sums[name] / float(total), "fedavg") for name in sorted(sums)}


def delta(new: Mapping[str, WeightArray], old: Mapping[str, WeightArray]) -> Weights:
    """Return the update ``new - old`` tensor by tensor (names and shapes must match)."""
    check_same_layout(old, new, "delta")
    return {
        name: narrow(
            name,
            checked_wide(name, new[name], "delta") - checked_wide(name, old[name], "delta"),
            "delta",
        )
        for name in sorted(old)
    }


def apply_delta(
    global_weights: Mapping[str, WeightArray], update: Mapping[str, WeightArray]
) -> Weights:
    """Return ``global_weights + update`` tensor by tensor (names and shapes must match)."""
    where = "apply_delta"
    check_same_layout(global_weights, update, where)
    return {
        name: narrow(
            name,
            checked_wide(name, global_weights[name], where)
            + checked_wide(name, update[name], where),
            where,
        )
        for name in sorted(global_weights)
    }
