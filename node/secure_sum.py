"""A cluster's sample-weighted mean from masked inputs: the pure arithmetic of secure
aggregation in a round (the messages travel in :mod:`node.secure_round`). No I/O.

An update (a dict of float32 tensors) travels as one flat vector: its tensors in name order,
each flattened (:func:`flatten`, :func:`unflatten`, by the round's :data:`Layout`). Member u
of the roster masks ``x_u * n_u / S``, where ``n_u`` is its number of samples and ``S`` the
sum of the roster's samples: every value stays within the update's own range, so the sum of
the members' encodings cannot overflow where one update would not. The survivors' unmasked
sum is ``sum over survivors of x_u * n_u / S``; times ``S / (sum of the survivors' samples)``
it is their FedAvg (:func:`secure_mean`). Unmasking is deterministic: any member holding the
masked inputs, the keys and at least ``threshold`` answers gets the same bytes, which is how
members check their cluster's aggregate.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
from numpy.typing import NDArray

from node.errors import AggregationError
from node.secagg import (
    KeyAdvertisement,
    MaskedInput,
    SecAggAggregator,
    SecAggRound,
    ShareBundle,
    UnmaskingAnswer,
    UnmaskingRequest,
)
from node.weights import WeightArray, Weights

Layout = tuple[tuple[str, tuple[int, ...]], ...]


def layout_of(tensors: Mapping[str, tuple[int, ...]]) -> Layout:
    """The round's update layout: tensor names in order, each with its shape."""
    return tuple((name, tuple(tensors[name])) for name in sorted(tensors))


def layout_length(layout: Layout) -> int:
    """How many values an update of ``layout`` has."""
    return sum(int(np.prod(shape, dtype=np.int64)) for _, shape in layout)


def flatten(update: Mapping[str, WeightArray], layout: Layout) -> NDArray[np.float64]:
    """``update``'s tensors in ``layout``'s order as one float64 vector; raises
    :class:`AggregationError` if its names or shapes are not the layout's."""
    names = [name for name, _ in layout]
    if sorted(update) != names:
        raise AggregationError(f"the update's tensors {sorted(update)} are not the round's {names}")
    parts = []
    for name, shape in layout:
        tensor = np.asarray(update[name])
        if tensor.shape != shape:
            raise AggregationError(f"tensor {name!r} has shape {tensor.shape}, expected {shape}")
        parts.append(tensor.astype(np.float64).ravel())
    return np.concatenate(parts) if parts else np.zeros(0)


def unflatten(vector: NDArray[np.floating], layout: Layout) -> Weights:
    """The float32 tensors of a flat vector laid out as ``layout``."""
    if vector.shape != (layout_length(layout),):
        raise AggregationError(
            f"a vector of {vector.shape} values does not fit the round's "
            f"{layout_length(layout)}-value layout"
        )
    tensors: Weights = {}
    at = 0
    for name, shape in layout:
        size = int(np.prod(shape, dtype=np.int64))
        tensors[name] = vector[at : at + size].astype(np.float32).reshape(shape)
        at += size
    return tensors


def weighted_input(
    update: Mapping[str, WeightArray], layout: Layout, samples: int, total: int
) -> NDArray[np.float64]:
    """What member u masks: its flat update times ``samples / total`` (n_u / S)."""
    if not 0 < samples <= total:
        raise AggregationError(f"{samples} samples of a roster total of {total}")
    return flatten(update, layout) * (samples / total)


def roster_members(bundles: Mapping[int, ShareBundle]) -> tuple[int, ...]:
    """The largest set of the members whose share bundles are given such that each bundle
    holds shares for every other member of the set (a member can mask only with members
    whose shares it can open). Member indices, ascending."""
    chosen = set(bundles)
    while True:
        kept = {
            member
            for member in chosen
            if chosen - {member} <= {recipient for recipient, _ in bundles[member].sealed}
        }
        if kept == chosen:
            return tuple(sorted(chosen))
        chosen = kept


def answers_request(answer: UnmaskingAnswer, request: UnmaskingRequest) -> bool:
    """Whether ``answer`` holds exactly the shares ``request`` asks for, from a member that
    masked."""
    return (
        answer.sender in (*request.survivors, *request.dropped)
        and tuple(owner for owner, _ in answer.seed_shares) == request.survivors
        and tuple(owner for owner, _ in answer.key_shares) == request.dropped
    )


def unmasking(
    setup: SecAggRound,
    advertisements: Iterable[KeyAdvertisement],
    inputs: Sequence[MaskedInput],
) -> SecAggAggregator:
    """An aggregator holding ``inputs`` whose request is made: the one that unmasks them."""
    aggregator = SecAggAggregator(setup, advertisements)
    for masked in inputs:
        aggregator.receive(masked)
    aggregator.request()
    return aggregator


def secure_mean(
    aggregator: SecAggAggregator,
    answers: Iterable[UnmaskingAnswer],
    samples: Mapping[int, int],
    layout: Layout,
) -> Weights:
    """The survivors' FedAvg from the answers to ``aggregator``'s request: their unmasked
    sum of ``x_u * n_u / S`` times ``S / (their samples)``. ``samples``: each roster member's
    samples, by index. Answers that do not answer the request are left out; raises
    :class:`~node.errors.CannotUnmask` if fewer than the threshold remain."""
    request = aggregator.request()
    first: dict[int, UnmaskingAnswer] = {}
    for answer in answers:
        if answers_request(answer, request):
            first.setdefault(answer.sender, answer)
    total = aggregator.unmask(first.values()).astype(np.float64)
    roster = sum(samples[m] for m in (*request.survivors, *request.dropped))
    survivors = sum(samples[m] for m in request.survivors)
    return unflatten(total * (roster / survivors), layout)
