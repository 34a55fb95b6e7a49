"""The contribution score recorded on chain for each member's update in a round.

This is the foundation rule: an update is worth what it did for the model, measured as the drop
in the evaluator's validation loss when the update is applied, weighted by the number of local
samples it was trained on. Updates that do not lower the loss score zero (never negative), so a
score is a non-negative integer that fits the Ledger's ``uint64``.
"""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction

from incentive.errors import InvalidContributionInput

MICRO = 1_000_000
SCORE_MAX = 2**64 - 1


def contribution_score(samples: int, loss_before: float, loss_after: float) -> int:
    """``samples × max(0, loss_before − loss_after)`` in micro-units, rounded down.

    Losses are taken at their shortest decimal form (``repr``), and the arithmetic is exact,
    so ``contribution_score(100, 0.5, 0.4) == 10_000_000`` on every machine. Scores above
    2**64 − 1 are capped there (the Ledger stores ``uint64``).

    Raises InvalidContributionInput (a ValueError) for a negative or non-integer sample count
    or a NaN/infinite loss.
    """
    if isinstance(samples, bool) or not isinstance(samples, int):
        raise InvalidContributionInput(f"samples must be an int, not {type(samples).__name__}")
    if samples < 0:
        raise InvalidContributionInput(f"samples must be >= 0, got {samples}")
    for name, loss in (("loss_before", loss_before), ("loss_after", loss_after)):
        if isinstance(loss, bool) or not isinstance(loss, int | float):
            raise InvalidContributionInput(f"{name} must be a number, not {type(loss).__name__}")
        if not math.isfinite(loss):
            raise InvalidContributionInput(f"{name} must be finite, got {loss}")
    improvement = _exact(loss_before) - _exact(loss_after)
    if improvement <= 0:
        return 0
    return min(math.floor(samples * improvement * MICRO), SCORE_MAX)


def _exact(loss: float) -> Fraction:
    return Fraction(Decimal(repr(float(loss))))
