"""The utility of a coalition of members in a round, for :mod:`incentive.shapley`.

It lives beside the node's aggregation so that ``incentive/`` does not depend on ``node/``:
a coalition's model is made exactly as the node aggregates a round.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from incentive.errors import InvalidMeasurementInput
from incentive.shapley import Utility
from node.aggregation import apply_delta, fedavg
from node.weights import WeightArray

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
