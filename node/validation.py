"""Validating updates on the members' own rows: a defence against data poisoning.

Screening (:func:`node.robust.screen`) judges an update by its geometry: its length and its
direction against the others'. An update trained honestly on poisoned data, such as a site's
rows with the labels flipped, has a normal length, and under SCAFFOLD its direction soon looks
like everyone else's too, since the site's control variate cancels its own drift; the harm
travels through the variates. What does show is the loss the model it makes has on other
hospitals' rows.

With ``federation.validate_updates`` every member fetches every update of the round (all
clusters), computes for each the loss of the model the update alone would make on its own
training rows (:func:`update_losses`), and gossips the losses as a *validation*. A cluster's
aggregator then scores each of its updates by :func:`validation_outliers`:

1. Per evaluator, a robust z-score of each update's loss against the other updates that
   evaluator measured: ``(loss - median) / (1.4826 * MAD)``. Hospitals' losses differ in
   scale, and this puts them on one.
2. Per update, the median of its z-scores over the evaluators other than its own sender.

An update whose median exceeds ``federation.validation_threshold`` made most hospitals' loss
worse than the typical update of the round did, and is rejected. A lying evaluator moves the
median only within the honest evaluators' range. Every evaluator judges on its own rows. An
honest hospital whose data differs from most others' (a site with one class only) can be
rejected in early rounds, and docs/robustness.md gives the figures.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence

from node.learner import SiteLearner
from node.training import evaluate
from node.weights import WeightArray

LOSS_SCALE = 1_000_000  # losses travel as integers: micro-units of the task's loss
MAX_LOSS = (2**64 - 1) / LOSS_SCALE  # the largest loss a score can carry
MIN_EVALUATORS = 3  # fewer evaluators of an update than this: no verdict on it
MIN_MEASURED = 4  # an evaluator that measured fewer updates gives no z-scores
MAD_TO_SIGMA = 1.4826  # the MAD of a normal distribution times this is its sigma


def update_losses(
    learner: SiteLearner, round_number: int, updates: Mapping[str, Mapping[str, WeightArray]]
) -> dict[str, float]:
    """The loss on ``learner``'s training rows of the model each update makes from the global
    model the learner holds, by sender (blocking: run it in a worker thread).

    Raises :class:`~node.errors.AggregationError` (a ``ValueError``) for an update that does
    not fit the round's layout.
    """
    site = learner.site
    losses = {}
    for sender in sorted(updates):
        model = learner.with_update(updates[sender], round_number)
        losses[sender] = evaluate(model, site.train_x, site.train_y, site.dataset).loss
    return losses


def loss_score(loss: float) -> int:
    """A loss as the integer an announcement carries (non-finite or huge: the largest)."""
    if not math.isfinite(loss) or loss >= MAX_LOSS:
        return 2**64 - 1
    return max(0, round(loss * LOSS_SCALE))


def robust_z(losses: Mapping[str, float]) -> dict[str, float]:
    """Each update's robust z-score among the losses one evaluator measured (empty when it
    measured fewer than :data:`MIN_MEASURED`)."""
    if len(losses) < MIN_MEASURED:
        return {}
    values = list(losses.values())
    middle = statistics.median(values)
    spread = MAD_TO_SIGMA * statistics.median(abs(v - middle) for v in values)
    scale = max(spread, 1e-3 * abs(middle), 1e-12)  # equal losses: no update stands out
    return {sender: (loss - middle) / scale for sender, loss in losses.items()}


def validation_outliers(
    measured: Mapping[str, Mapping[str, float]],
    candidates: Sequence[str],
    threshold: float,
) -> tuple[dict[str, float], dict[str, str]]:
    """Score ``candidates`` (senders) from the losses each evaluator measured
    (``measured[evaluator][sender]``) and name those to reject, with the reason.

    Returns the median z-score of every candidate that at least :data:`MIN_EVALUATORS`
    evaluators other than itself measured, and the rejections among them (score above
    ``threshold``). Addresses are compared as given: pass them in one case.
    """
    z_by_evaluator = {evaluator: robust_z(losses) for evaluator, losses in measured.items()}
    scores: dict[str, float] = {}
    rejected: dict[str, str] = {}
    for sender in candidates:
        votes = [z[sender] for e, z in z_by_evaluator.items() if e != sender and sender in z]
        if len(votes) < MIN_EVALUATORS:
            continue
        scores[sender] = statistics.median(votes)
        if scores[sender] > threshold:
            rejected[sender] = (
                f"raises the other members' loss more than the round's other updates do "
                f"(median robust z-score {scores[sender]:.2f} over {len(votes)} evaluators, "
                f"above {threshold})"
            )
    return scores, rejected
