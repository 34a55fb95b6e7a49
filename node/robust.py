"""Byzantine-robust aggregation rules and the screening of updates that feeds reputation.

Pure functions of weight arrays and sample counts, like :mod:`node.aggregation`. Each update
is flattened (tensors in name order) into one float64 row; a rule turns the rows into one
vector, which is cast back to float32 tensors. Equal inputs in equal order give
bit-identical outputs, so members can recompute an aggregate exactly.

Rules (``federation.aggregation``; docs/robustness.md):

- ``fedavg``: the sample-weighted mean (:func:`node.aggregation.fedavg`).
- ``median``: the coordinate-wise median (Yin et al. 2018).
- ``trimmed-mean``: per coordinate, the mean after dropping the ``floor(trim · n)`` largest
  and smallest values (Yin et al. 2018).
- ``krum``: the update with the smallest sum of squared distances to its ``n − f − 2``
  nearest others (Blanchard et al. 2017); ``f`` is ``federation.byzantine``.
- ``multi-krum``: the sample-weighted mean of the ``n − f`` updates with the best Krum
  scores.
- ``geometric-median``: the sample-weighted geometric median by Weiszfeld's iterations
  (Pillutla et al. 2022, RFA).

``clip_norm > 0`` first scales every update longer than ``clip_norm`` down to that length.
Rules that need more updates than they have (Krum with ``n <= 2f + 2``) fall back to the
sample-weighted mean of what they have and say so in :class:`Aggregated`.

:func:`screen` finds updates that are no honest member's: an all-zero update (a free rider),
an update pointing away from the others (its cosine with the coordinate-wise median of the
*other* updates below ``min_cosine``, -0.5 by default: sign flips, flipped labels), or one far
longer than the others (over ``norm_factor``, 5 by default, times the median length of the
others: scaling, noise). Late in training honest updates are small and noisy: honest members
of small, unlike clusters reached cosines of -0.54 and length ratios of 4.8 in the runs
measured, so tighter limits reject honest members (docs/robustness.md).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from node.aggregation import Float64Array, check_same_layout, checked_wide, fedavg, narrow
from node.errors import AggregationError
from node.weights import WeightArray, Weights, shape_of

RULES = ("fedavg", "median", "trimmed-mean", "krum", "multi-krum", "geometric-median")
WEISZFELD_ITERATIONS = 200
WEISZFELD_TOLERANCE = 1e-10
ZERO_NORM = 1e-12

Update = tuple[Mapping[str, WeightArray], int]


@dataclass(frozen=True)
class Aggregated:
    """A rule's result: the aggregate, the inputs it is made of (by index), and a note when
    the rule could not apply as configured."""

    weights: Weights
    used: tuple[int, ...]
    note: str = ""


def aggregate(
    rule: str,
    updates: Sequence[Update],
    *,
    trim: float = 0.2,
    byzantine: int = 1,
    clip_norm: float = 0.0,
) -> Aggregated:
    """Aggregate ``updates`` (``(tensors, samples)`` pairs, in the agreed order) by ``rule``.

    Raises :class:`AggregationError` for an unknown rule, no updates, updates of different
    layouts or non-finite values.
    """
    if rule not in RULES:
        raise AggregationError(f"unknown aggregation rule {rule!r}; choose one of {RULES}")
    if not updates:
        raise AggregationError(f"{rule} needs at least one update, got none")
    everyone = tuple(range(len(updates)))
    if rule == "fedavg" and not clip_norm:
        return Aggregated(fedavg(updates), everyone)  # streams tensor by tensor
    names, rows = _rows(updates)
    samples = np.array([float(n) for _, n in updates])
    if clip_norm > 0:
        norms = np.linalg.norm(rows, axis=1)
        factors = np.minimum(1.0, clip_norm / np.maximum(norms, ZERO_NORM))
        rows = rows * factors[:, None]
    n = len(rows)
    used, note = everyone, ""
    if rule == "fedavg":
        vector = _weighted_mean(rows, samples)
    elif rule == "median":
        vector = np.median(rows, axis=0)
    elif rule == "trimmed-mean":
        k = math.floor(trim * n)
        if n - 2 * k < 1:
            k = (n - 1) // 2
        vector = np.sort(rows, axis=0)[k : n - k].mean(axis=0)
    elif rule in ("krum", "multi-krum"):
        f = max(0, byzantine)
        if n <= 2 * f + 2:
            note = f"{rule} needs more than {2 * f + 2} updates for f = {f}, got {n}: fedavg"
            vector = _weighted_mean(rows, samples)
        else:
            order = _krum_order(rows, f)
            used = tuple(sorted(order[: 1 if rule == "krum" else n - f]))
            vector = _weighted_mean(rows[list(used)], samples[list(used)])
    else:
        vector = _geometric_median(rows, samples)
    return Aggregated(_unflatten(updates[0][0], names, vector, rule), used, note)


def screen(
    updates: Sequence[Update], norm_factor: float = 5.0, min_cosine: float = -0.5
) -> dict[int, str]:
    """The updates no honest member would send, by index, with the reason.

    Needs three updates or more to compare (fewer: nothing is flagged but all-zero updates).
    """
    _, rows = _rows(updates)
    norms = np.linalg.norm(rows, axis=1)
    flagged: dict[int, str] = {}
    for i, norm in enumerate(norms):
        if norm <= ZERO_NORM:
            flagged[i] = "an all-zero update (no training)"
    if len(rows) < 3:
        return flagged
    for i in range(len(rows)):
        if i in flagged:
            continue
        others = np.delete(rows, i, axis=0)
        center = np.median(others, axis=0)
        center_norm = float(np.linalg.norm(center))
        typical = float(np.median(np.delete(norms, i)))
        if center_norm > ZERO_NORM:
            cosine = float(rows[i] @ center) / (float(norms[i]) * center_norm)
            if cosine < min_cosine:
                flagged[i] = f"points away from the others (cosine {cosine:.2f} with their median)"
                continue
        if typical > ZERO_NORM and norms[i] > norm_factor * typical:
            flagged[i] = (
                f"{norms[i] / typical:.1f} times as long as the others' median "
                f"(limit {norm_factor:g})"
            )
    return flagged


def _rows(updates: Sequence[Update]) -> tuple[list[str], Float64Array]:
    first = updates[0][0]
    names = sorted(first)
    rows = []
    for index, (update, _) in enumerate(updates):
        where = f"update {index}"
        check_same_layout(first, update, where)
        rows.append(
            np.concatenate([checked_wide(name, update[name], where).ravel() for name in names])
        )
    return names, np.stack(rows)


def _unflatten(
    template: Mapping[str, WeightArray], names: list[str], vector: Float64Array, rule: str
) -> Weights:
    result: Weights = {}
    offset = 0
    for name in names:
        shape = shape_of(template, name)
        size = math.prod(shape)
        result[name] = narrow(name, vector[offset : offset + size].reshape(shape), rule)
        offset += size
    return result


def _weighted_mean(rows: Float64Array, samples: Float64Array) -> Float64Array:
    total = float(samples.sum())
    if total <= 0:
        raise AggregationError("the updates' sample counts add up to zero")
    return np.asarray((samples[:, None] * rows).sum(axis=0) / total)


def _krum_order(rows: Float64Array, f: int) -> list[int]:
    """Indices by Krum score, best first (ties by index)."""
    n = len(rows)
    squared = np.sum((rows[:, None, :] - rows[None, :, :]) ** 2, axis=2)
    closest = n - f - 2
    scores = [float(np.sort(np.delete(squared[i], i))[:closest].sum()) for i in range(n)]
    return sorted(range(n), key=lambda i: (scores[i], i))


def _geometric_median(rows: Float64Array, samples: Float64Array) -> Float64Array:
    """Weiszfeld's iterations from the weighted mean; a point that lands on an input stops
    there (the geometric median can be an input)."""
    point = _weighted_mean(rows, samples)
    for _ in range(WEISZFELD_ITERATIONS):
        distances = np.linalg.norm(rows - point, axis=1)
        if float(distances.min()) <= ZERO_NORM:
            return point
        weights = samples / distances
        moved = (weights[:, None] * rows).sum(axis=0) / float(weights.sum())
        step = float(np.linalg.norm(moved - point))
        point = moved
        if step <= WEISZFELD_TOLERANCE * max(1.0, float(np.linalg.norm(point))):
            break
    return np.asarray(point)
