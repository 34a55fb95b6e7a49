"""The reward split of ``contracts/EpochRewards.sol``, recomputed off chain (pure integers).

An auditor feeds it what the chain says (the pot and each member's contribution delta,
reputation and standing at the epoch) and compares the result with the ``RewardCredited``
events; a consortium can preview an epoch the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class EpochSplit:
    """Credits by member index, what was paid in all, and the dust left in the pool."""

    credits: dict[int, int]
    paid: int
    dust: int


def epoch_split(
    pot: int,
    deltas: Mapping[int, int],
    reputations: Mapping[int, int],
    eligible: Mapping[int, bool],
) -> EpochSplit:
    """``share(i) = floor(pot * delta(i) * reputation(i) / sum of weights)`` over eligible
    members (active, non-excluded hospitals) with a positive weight; the remainder is dust.

    Raises ValueError for negative inputs or when no member has a positive weight (the contract
    reverts ``NothingToDistribute`` then).
    """
    if pot < 0 or any(v < 0 for v in deltas.values()) or any(v < 0 for v in reputations.values()):
        raise ValueError("pot, contribution deltas and reputations must be >= 0")
    weights = {
        i: delta * reputations[i]
        for i, delta in deltas.items()
        if eligible.get(i, False) and delta * reputations[i] > 0
    }
    total = sum(weights.values())
    if total == 0:
        raise ValueError("no member has a positive weight: nothing to distribute")
    credits = {i: pot * w // total for i, w in sorted(weights.items())}
    paid = sum(credits.values())
    return EpochSplit(credits, paid, pot - paid)
