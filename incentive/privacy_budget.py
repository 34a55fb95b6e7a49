"""A round's differential-privacy budget as the chain records it: two fixed-point integers.

``epsilon_e6`` is epsilon in millionths and ``delta_e18`` delta in parts per 10**18, both
``uint64`` and both rounded **up**, so the recorded pair ``(epsilon', delta')`` is never a
stronger claim than the accountant's ``(epsilon, delta)``: any mechanism that is
``(epsilon, delta)``-DP is ``(epsilon', delta')``-DP too. Rounds whose updates carry no noise
(differential privacy off, or clipping alone) record :data:`NO_GUARANTEE`: ``epsilon_e6`` =
2**64 - 1 (infinite) with ``delta_e18`` = 0. Decimal arithmetic on the figures' shortest
``repr`` keeps round decimals exact (delta 1e-5 is 10**13, not 10**13 + 1). Pure; no chain
access. docs/ledger.md explains the choice.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from itertools import pairwise
from typing import Any

from incentive.errors import InvalidPrivacyBudget

EPSILON_SCALE = 10**6
DELTA_SCALE = 10**18
NO_GUARANTEE_E6 = 2**64 - 1  # the contract's NO_PRIVACY_GUARANTEE


@dataclass(frozen=True)
class PrivacyBudget:
    """Cumulative ``(epsilon, delta)`` of the members' updates after a round, fixed-point."""

    epsilon_e6: int
    delta_e18: int

    def __post_init__(self) -> None:
        if self.epsilon_e6 == NO_GUARANTEE_E6:
            if self.delta_e18 != 0:
                raise InvalidPrivacyBudget(
                    f"a round without a guarantee records delta 0, got {self.delta_e18}"
                )
        elif not 0 <= self.epsilon_e6 < NO_GUARANTEE_E6:
            raise InvalidPrivacyBudget(f"epsilon_e6 {self.epsilon_e6} does not fit uint64")
        elif not 0 < self.delta_e18 < DELTA_SCALE:
            raise InvalidPrivacyBudget(
                f"delta_e18 {self.delta_e18} is outside 1..{DELTA_SCALE - 1} (delta in (0, 1))"
            )

    @classmethod
    def from_spent(cls, epsilon: float | None, delta: float | None) -> PrivacyBudget:
        """The record of an accountant's figures; :data:`NO_GUARANTEE` when ``epsilon`` is
        None or infinite, or too large for ``uint64`` millionths (above 1.8e13)."""
        if epsilon is None or math.isinf(epsilon):
            return NO_GUARANTEE
        if math.isnan(epsilon) or epsilon < 0:
            raise InvalidPrivacyBudget(f"epsilon must be a number >= 0, got {epsilon}")
        if delta is None or not 0 < delta < 1:
            raise InvalidPrivacyBudget(f"delta must lie in (0, 1), got {delta}")
        epsilon_e6 = _scaled_up(epsilon, EPSILON_SCALE)
        if epsilon_e6 >= NO_GUARANTEE_E6:
            return NO_GUARANTEE
        return cls(epsilon_e6, min(_scaled_up(delta, DELTA_SCALE), DELTA_SCALE - 1))

    @property
    def guaranteed(self) -> bool:
        """Whether the round's updates were noised (a finite epsilon)."""
        return self.epsilon_e6 != NO_GUARANTEE_E6

    @property
    def epsilon(self) -> float | None:
        """Epsilon as recorded (None: no guarantee)."""
        return self.epsilon_e6 / EPSILON_SCALE if self.guaranteed else None

    @property
    def delta(self) -> float | None:
        """Delta as recorded (None: no guarantee)."""
        return self.delta_e18 / DELTA_SCALE if self.guaranteed else None

    def as_call_arguments(self) -> tuple[int, int]:
        """``(epsilonE6, deltaE18)`` as ``Consortium.finalizeRound`` and ``Ledger.attest``
        take them."""
        return (self.epsilon_e6, self.delta_e18)

    def as_dict(self) -> dict[str, Any]:
        """The figures as numbers and as recorded (what audit reports carry per round)."""
        return {
            "epsilon": self.epsilon,
            "delta": self.delta,
            "epsilon_e6": self.epsilon_e6,
            "delta_e18": self.delta_e18,
        }

    def describe(self) -> str:
        """``epsilon E at delta D``, or that there is no guarantee."""
        if not self.guaranteed:
            return "no DP guarantee"
        return f"epsilon {self.epsilon:.6f} at delta {self.delta:g}"


NO_GUARANTEE = PrivacyBudget(NO_GUARANTEE_E6, 0)


def _scaled_up(value: float, scale: int) -> int:
    return int((Decimal(repr(value)) * scale).to_integral_value(rounding=ROUND_CEILING))


def budget_problems(history: Sequence[tuple[int, PrivacyBudget]]) -> list[str]:
    """What breaks the rules a federation's recorded budgets must follow, given
    ``(round, budget)`` in round order:

    - privacy loss only accumulates: where a round's delta is not above the previous round's,
      its epsilon is not below the previous one's (a larger delta may lawfully buy a smaller
      epsilon for the same releases, so nothing is required there);
    - once a round released updates without a guarantee, no later round has one."""
    problems = []
    for (_, before), (number, now) in pairwise(history):
        if not before.guaranteed and now.guaranteed:
            problems.append(
                f"round {number} records {now.describe()} after a round without a "
                "guarantee: a release without noise cannot be made private later"
            )
        elif (
            before.guaranteed
            and now.guaranteed
            and now.delta_e18 <= before.delta_e18
            and now.epsilon_e6 < before.epsilon_e6
        ):
            problems.append(
                f"round {number} records {now.describe()}, less than the previous "
                f"round's {before.describe()}: privacy loss only accumulates"
            )
    return problems
