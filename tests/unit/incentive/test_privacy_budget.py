"""The fixed-point privacy budget the chain records, and the audit's rules over a history."""

from __future__ import annotations

import math

import pytest

from incentive.errors import InvalidPrivacyBudget
from incentive.privacy_budget import NO_GUARANTEE, PrivacyBudget, budget_problems


@pytest.mark.parametrize(
    ("epsilon", "delta", "epsilon_e6", "delta_e18"),
    [
        (8.0, 1e-5, 8_000_000, 10_000_000_000_000),  # round decimals stay exact
        (8.0061234, 1e-5, 8_006_124, 10_000_000_000_000),  # epsilon rounds up
        (0.0000001, 1e-5, 1, 10_000_000_000_000),
        (0.0, 1e-5, 0, 10_000_000_000_000),  # the statistics round: nothing released yet
        (1.5, 1.5e-19, 1_500_000, 1),  # delta rounds up too
        (3.0, 0.9999999999999999, 3_000_000, 999_999_999_999_999_900),
    ],
)
def test_figures_round_up_to_fixed_point(
    epsilon: float, delta: float, epsilon_e6: int, delta_e18: int
) -> None:
    budget = PrivacyBudget.from_spent(epsilon, delta)

    assert budget == PrivacyBudget(epsilon_e6, delta_e18)
    assert budget.guaranteed
    assert budget.epsilon is not None and budget.epsilon >= epsilon
    assert budget.epsilon - epsilon < 1e-6


@pytest.mark.parametrize(
    ("epsilon", "delta"), [(None, None), (None, 1e-5), (math.inf, 1e-5), (2e13, 1e-5)]
)
def test_no_noise_or_no_bound_is_no_guarantee(epsilon: float | None, delta: float | None) -> None:
    budget = PrivacyBudget.from_spent(epsilon, delta)

    assert budget == NO_GUARANTEE == PrivacyBudget(2**64 - 1, 0)
    assert not budget.guaranteed
    assert (budget.epsilon, budget.delta) == (None, None)
    assert budget.as_dict() == {
        "epsilon": None,
        "delta": None,
        "epsilon_e6": 2**64 - 1,
        "delta_e18": 0,
    }


@pytest.mark.parametrize(
    ("epsilon", "delta"), [(-0.1, 1e-5), (math.nan, 1e-5), (1.0, 0.0), (1.0, 1.0), (1.0, None)]
)
def test_figures_the_record_cannot_hold_are_refused(epsilon: float, delta: float | None) -> None:
    with pytest.raises(InvalidPrivacyBudget):
        PrivacyBudget.from_spent(epsilon, delta)


@pytest.mark.parametrize(
    ("epsilon_e6", "delta_e18"), [(2**64 - 1, 1), (5, 0), (5, 10**18), (-1, 5), (2**64, 5)]
)
def test_the_contracts_rule_holds_for_raw_values(epsilon_e6: int, delta_e18: int) -> None:
    with pytest.raises(InvalidPrivacyBudget):
        PrivacyBudget(epsilon_e6, delta_e18)


def test_a_history_must_only_accumulate_privacy_loss() -> None:
    b = PrivacyBudget
    growing = [(1, b(0, 10**13)), (2, b(1_000_000, 10**13)), (3, b(1_400_000, 10**13))]
    assert budget_problems(growing) == []
    # a larger delta may buy a smaller epsilon; switching noise off ends the guarantee
    assert budget_problems([(1, b(2_000_000, 10**13)), (2, b(1_000_000, 10**12 * 100))]) == []
    assert budget_problems([(1, b(2_000_000, 10**13)), (2, NO_GUARANTEE)]) == []

    shrinking = budget_problems([(1, b(2_000_000, 10**13)), (2, b(1_999_999, 10**13))])
    assert shrinking == [
        "round 2 records epsilon 1.999999 at delta 1e-05, less than the previous round's "
        "epsilon 2.000000 at delta 1e-05: privacy loss only accumulates"
    ]
    smaller_delta = budget_problems([(4, b(2_000_000, 10**13)), (5, b(1_000_000, 10**12))])
    assert len(smaller_delta) == 1 and smaller_delta[0].startswith("round 5 ")
    late = budget_problems([(1, NO_GUARANTEE), (2, b(1_000_000, 10**13))])
    assert late == [
        "round 2 records epsilon 1.000000 at delta 1e-05 after a round without a guarantee: "
        "a release without noise cannot be made private later"
    ]
