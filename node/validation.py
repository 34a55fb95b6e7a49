"""Validating updates on the members' own rows: a defence against data poisoning.

Screening (:func:`node.robust.screen`) judges an update by its geometry: its length and its
direction against the others'. An update trained honestly on poisoned data, such as a site's
rows with the labels flipped, has a normal length. Under SCAFFOLD its direction also looks like
everyone else's after the first round, because the site's control variate ``c_i`` cancels its
own drift. The harm then travels through the variates. What does show is what the site's own
data asks for, and how that changes the loss on other hospitals' rows.

With ``federation.validate_updates`` every member fetches every update of the round (all
clusters) and judges each by the *step* it stands for:

- Under FedAvg and the adaptive strategies, the step is the update itself.
- Under SCAFFOLD, the step is the update with the sender's drift correction taken out:
  ``delta - K * lr * (c_i - c)``. ``K`` is the sender's local steps, ``c`` the server variate,
  and ``c_i`` the sender's variate before the round. This is the step its own gradients
  alone would have made.
  - ``c_i`` is not sent. Each member rebuilds it from the variate changes in every update of
    that sender since the first model round (:class:`VariateHistory`).
  - A member that missed one of them gives no measure of that sender.

Each step is weighted by the sender's samples over the mean of the round's senders' samples:
the weight its update has in the average, relative to an average member. A small hospital
whose data is unlike the others' then moves the model as little as it does in the average, and
a sender that claims fewer samples to look harmless gets that much less weight in the average
too.

For each weighted step the member measures the loss of the model it makes on its own training
rows, divided by the loss of the model the round started from (:func:`loss_ratios`). It
gossips these ratios as a *validation*. A cluster's aggregator then decides with
:func:`validation_outliers`:

1. Per evaluator, a robust z-score of each update's ratio against the other updates that
   evaluator measured: ``(ratio - median) / (1.4826 * MAD)``.
2. Per update, the median z-score and the median loss increase (``ratio - 1``), each over the
   evaluators other than its own sender.

An update is rejected when its median z-score exceeds ``federation.validation_threshold`` and
it raises the median evaluator's loss by more than ``federation.validation_max_loss_increase``.
That is, it made most hospitals' loss clearly worse, and worse than the round's other updates
did. Both conditions are needed:

- The z-score alone flags a site whose data is merely unlike the others'.
- The increase alone depends on how far the model still is from its optimum.

A minority of lying evaluators moves each median only within the honest evaluators' range.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from node.learner import VARIATE, SiteLearner
from node.training import evaluate
from node.weights import WeightArray, Weights

RATIO_SCALE = 1_000_000  # ratios travel as integers: micro-units
MAX_RATIO = (2**64 - 1) / RATIO_SCALE  # the largest ratio a score can carry
MIN_EVALUATORS = 3  # fewer evaluators of an update than this: no verdict on it
MIN_MEASURED = 4  # an evaluator that measured fewer updates gives no z-scores
MAD_TO_SIGMA = 1.4826  # the MAD of a normal distribution times this is its sigma
HISTORY_ROUNDS = 4  # rounds of each sender's variate kept (a retried round looks back one)

Variate = dict[str, npt.NDArray[np.float64]]  # a site's c_i, kept in double precision


class VariateHistory:
    """Each sender's SCAFFOLD variate ``c_i`` after each round, rebuilt from its updates.

    A site's update carries ``(c_i(new) - c_i(old)) / n_i`` as ``variate/<tensor>``, and
    ``c_i`` starts at zero in the first model round. Whoever saw all of a sender's updates
    therefore knows its ``c_i``.
    """

    def __init__(self, first_model_round: int) -> None:
        self.first_model_round = first_model_round
        self._after: dict[str, dict[int, Variate]] = {}  # sender -> round -> c_i after it

    def before(
        self, sender: str, round_number: int, shape_of: Mapping[str, WeightArray]
    ) -> Variate | None:
        """``sender``'s variate at the start of ``round_number`` (tensors shaped like
        ``shape_of``), or None if this node missed one of its updates since the first
        model round."""
        if round_number <= self.first_model_round:
            return {name: np.zeros(np.shape(v), np.float64) for name, v in shape_of.items()}
        return self._after.get(sender, {}).get(round_number - 1)

    def record(
        self,
        sender: str,
        round_number: int,
        before: Variate,
        update: Mapping[str, WeightArray],
        samples: int,
    ) -> None:
        """Remember ``sender``'s variate after ``round_number``: ``before`` plus the change
        its ``update`` carries for ``samples`` samples."""
        after = {
            name: np.asarray(c, np.float64)
            + np.asarray(update[VARIATE + name], np.float64) * samples
            for name, c in before.items()
        }
        rounds = self._after.setdefault(sender, {})
        rounds[round_number] = after
        for old in [r for r in rounds if r <= round_number - HISTORY_ROUNDS]:
            del rounds[old]


def own_step(
    learner: SiteLearner,
    update: Mapping[str, WeightArray],
    samples: int,
    variate_before: Variate | None,
    weight: float = 1.0,
) -> Weights:
    """The step an update stands for, times ``weight``, in the update's layout.

    The step is the update itself, or under SCAFFOLD (given the sender's variate before the
    round) its delta without the drift correction, ``delta - K * lr * (c_i - c)``."""
    c = learner.server_variate() if learner.scaffold and variate_before is not None else {}
    scale = learner.training.steps_for(samples) * learner.training.lr
    step: Weights = {}
    for name, values in update.items():
        if name.startswith(VARIATE):
            step[name] = np.asarray(values, np.float32)
            continue
        moved = np.asarray(values, np.float64)
        if c and variate_before is not None:
            moved = moved - scale * (
                np.asarray(variate_before[name], np.float64) - np.asarray(c[name], np.float64)
            )
        step[name] = (weight * moved).astype(np.float32)
    return step


def loss_ratios(
    learner: SiteLearner, round_number: int, steps: Mapping[str, Mapping[str, WeightArray]]
) -> dict[str, float]:
    """For each sender's step, the loss on ``learner``'s training rows of the model it makes
    from the global model the learner holds, divided by that global model's loss (blocking:
    run it in a worker thread).

    Raises :class:`~node.errors.AggregationError` (a ``ValueError``) for a step that does not
    fit the round's layout.
    """
    site = learner.site
    base = evaluate(learner.model(), site.train_x, site.train_y, site.dataset).loss
    ratios = {}
    for sender in sorted(steps):
        model = learner.with_update(steps[sender], round_number)
        loss = evaluate(model, site.train_x, site.train_y, site.dataset).loss
        ratios[sender] = loss / max(base, 1e-12)
    return ratios


def ratio_score(ratio: float) -> int:
    """A loss ratio as the integer an announcement carries (non-finite or huge: the
    largest)."""
    if not math.isfinite(ratio) or ratio >= MAX_RATIO:
        return 2**64 - 1
    return max(0, round(ratio * RATIO_SCALE))


def robust_z(values: Mapping[str, float]) -> dict[str, float]:
    """Each update's robust z-score among the values one evaluator measured (empty when it
    measured fewer than :data:`MIN_MEASURED`)."""
    if len(values) < MIN_MEASURED:
        return {}
    middle = statistics.median(values.values())
    spread = MAD_TO_SIGMA * statistics.median(abs(v - middle) for v in values.values())
    scale = max(spread, 1e-3 * abs(middle), 1e-12)  # equal values: no update stands out
    return {sender: (value - middle) / scale for sender, value in values.items()}


def validation_outliers(
    measured: Mapping[str, Mapping[str, float]],
    candidates: Sequence[str],
    threshold: float,
    max_loss_increase: float,
) -> tuple[dict[str, tuple[float, float]], dict[str, str]]:
    """Judge ``candidates`` (senders) by the loss ratios each evaluator measured
    (``measured[evaluator][sender]``).

    Returns, for every candidate that at least :data:`MIN_EVALUATORS` evaluators other than
    itself measured, its median z-score and median loss increase, and the rejections among
    them with the reason. Addresses are compared as given: pass them in one case.
    """
    z_by_evaluator = {evaluator: robust_z(ratios) for evaluator, ratios in measured.items()}
    scores: dict[str, tuple[float, float]] = {}
    rejected: dict[str, str] = {}
    for sender in candidates:
        judges = [e for e, z in z_by_evaluator.items() if e != sender and sender in z]
        if len(judges) < MIN_EVALUATORS:
            continue
        z_score = statistics.median(z_by_evaluator[e][sender] for e in judges)
        increase = statistics.median(measured[e][sender] - 1 for e in judges)
        scores[sender] = (z_score, increase)
        if z_score > threshold and increase > max_loss_increase:
            rejected[sender] = (
                f"its step raises the other members' loss by {increase:.0%} at the median, "
                f"more than the round's other updates do (median robust z-score {z_score:.2f} "
                f"over {len(judges)} evaluators; limits {max_loss_increase:.0%} and {threshold})"
            )
    return scores, rejected
