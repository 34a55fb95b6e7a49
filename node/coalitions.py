"""The utility of a coalition of members in a round, for :mod:`incentive.shapley`.

It lives beside the node's aggregation so that ``incentive/`` does not depend on ``node/``:
a coalition's model is made exactly as the node aggregates a round.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from incentive.errors import InvalidMeasurementInput
from incentive.shapley import Utility, chain_scores, memoised, monte_carlo_shapley
from node.aggregation import apply_delta, fedavg
from node.training import evaluate
from node.weights import WeightArray

if TYPE_CHECKING:
    from node.learner import SiteLearner

Update = tuple[Mapping[str, WeightArray], int]
"""A member's update for a round: ``(delta from the global model, training samples)``."""


def aggregate_utility(
    global_weights: Mapping[str, WeightArray],
    updates: Mapping[str, Update],
    evaluate: Callable[[Mapping[str, WeightArray]], float],
) -> Utility:
    """Return the utility of a round: ``evaluate`` of the coalition's aggregated model.

    A coalition's model is ``apply_delta(global_weights, fedavg(its members' updates))``, the
    updates taken in member-name order (:mod:`node.aggregation`). The empty coalition, and one
    whose members trained on no samples, leaves ``global_weights`` unchanged. ``evaluate`` is
    the metric on one evaluator's validation data, higher is better. The returned utility
    raises InvalidMeasurementInput for a member that has no update.
    """

    def utility(coalition: frozenset[str]) -> float:
        unknown = sorted(coalition - updates.keys())
        if unknown:
            raise InvalidMeasurementInput(
                f"no update for member(s) {unknown}; the utility knows {sorted(updates)}"
            )
        chosen = [updates[member] for member in sorted(coalition)]
        if sum(samples for _, samples in chosen) == 0:
            return evaluate(global_weights)
        return evaluate(apply_delta(global_weights, fedavg(chosen)))

    return utility


def site_utility(learner: SiteLearner, round_number: int, updates: Mapping[str, Update]) -> Utility:
    """The utility of a coalition as one evaluator sees it: minus the loss, on the evaluator's
    own training rows, of its model moved by the coalition's FedAvg (the empty coalition: its
    model as it stands). The test split is never read."""
    site = learner.site

    def utility(coalition: frozenset[str]) -> float:
        chosen = [updates[member] for member in sorted(coalition)]
        model = learner.with_update(fedavg(chosen), round_number) if chosen else learner.model()
        return -evaluate(model, site.train_x, site.train_y, site.dataset).loss

    return utility


def shapley_shares(
    learner: SiteLearner,
    round_number: int,
    updates: Mapping[str, Update],
    permutations: int,
    seed: int,
) -> dict[str, int]:
    """Each member's Shapley value in the round on this evaluator's data, as parts per
    million of the round's positive contribution (:func:`incentive.shapley.chain_scores`)."""
    utility = memoised(site_utility(learner, round_number, updates))
    values = monte_carlo_shapley(list(updates), utility, permutations=permutations, seed=seed)
    return chain_scores(values)
