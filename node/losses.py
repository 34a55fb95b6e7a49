"""Training losses, looked up by the name a :class:`~node.data.types.TaskSpec` gives.

A loss is made for one set of labels (a site's training labels, or the labels being
evaluated), so that class weights can come from that set; it is then a function of
``(outputs, targets)`` for any mini-batch of it. Outputs have shape ``(batch,)``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import torch
from torch.nn import functional

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def binary_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy of logits against 0/1 targets."""
    return functional.binary_cross_entropy_with_logits(logits, targets)


def class_balanced_weights(labels: npt.ArrayLike) -> tuple[float, float]:
    """Return ``(negative weight, positive weight)`` that make both classes count equally.

    A class with ``n_k`` of the ``n`` labels gets ``n / (K n_k)``, ``K`` the number of classes
    present (scikit-learn's "balanced"); a class that is absent gets 0, so a set with one
    class gives that class weight 1.
    """
    y = np.asarray(labels) > 0.5
    n, positives = len(y), int(y.sum())
    present = int(positives > 0) + int(positives < n)
    if present == 0:
        raise ValueError("cannot weight classes of an empty label set")
    negative_weight = n / (present * (n - positives)) if positives < n else 0.0
    positive_weight = n / (present * positives) if positives else 0.0
    return negative_weight, positive_weight


def balanced_binary_cross_entropy(labels: npt.ArrayLike) -> LossFn:
    """Binary cross-entropy with :func:`class_balanced_weights` of ``labels``.

    Each mini-batch's loss is its weighted mean (divided by the batch's total weight), so a
    batch holding a rare-class sample leans towards it without an outsized step.
    """
    negative_weight, positive_weight = class_balanced_weights(labels)

    def loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        per_sample = functional.binary_cross_entropy_with_logits(logits, targets, reduction="none")
        weights = torch.where(targets > 0.5, positive_weight, negative_weight)
        return (weights * per_sample).sum() / weights.sum()

    return loss


def cox_breslow(risk: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Negative Cox partial log-likelihood per event, with Breslow's handling of ties.

    ``risk`` holds log-hazard scores and ``targets`` ``(event, time)`` rows. For every patient
    ``i`` with an event, the term is ``risk_i - log(sum of exp(risk_j) over the patients with
    time_j >= time_i)``: Breslow's risk set holds every patient whose time is not earlier,
    including all patients tied with ``i`` (events and censored alike). The loss is minus the
    sum of the terms divided by the number of events, 0 (with a zero gradient) when the batch
    holds none. The risk sets are those within the batch.
    """
    events, times = targets[:, 0], targets[:, 1]
    order = torch.argsort(times, descending=True, stable=True)
    risk, events, times = risk[order], events[order], times[order]
    log_cumulative = torch.logcumsumexp(risk, dim=0)
    # With times descending, tied patients are adjacent, and the cumulative sum at the last of
    # them covers the whole risk set that all of them share.
    n = len(times)
    positions = torch.arange(n)
    is_last_of_tie = torch.ones(n, dtype=torch.bool)
    is_last_of_tie[:-1] = times[:-1] != times[1:]
    marked = torch.where(is_last_of_tie, positions, torch.full_like(positions, n))
    last_of_tie = torch.flip(torch.cummin(torch.flip(marked, [0]), dim=0).values, [0])
    terms = (risk - log_cumulative[last_of_tie]) * events
    return -terms.sum() / events.sum().clamp(min=1.0)


LOSSES: dict[str, Callable[[npt.ArrayLike], LossFn]] = {
    "bce": lambda labels: binary_cross_entropy,
    "balanced-bce": balanced_binary_cross_entropy,
    "cox-breslow": lambda labels: cox_breslow,
}
"""Loss name -> factory taking the labels the loss will be used on."""


def make_loss(name: str, labels: npt.ArrayLike) -> LossFn:
    """Return the loss ``name`` made for ``labels``; ``KeyError`` lists the known names."""
    if name not in LOSSES:
        raise KeyError(f"unknown loss {name!r}; known losses: {', '.join(sorted(LOSSES))}")
    return LOSSES[name](labels)
