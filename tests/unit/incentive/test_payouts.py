"""The epoch split, recomputed off chain: hand-computed cases and properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from incentive.payouts import epoch_split


def test_split_by_contribution_times_reputation_by_hand() -> None:
    # weights 100*10000, 200*5000, 300*10000 = 1e6, 1e6, 3e6 of 5e6
    split = epoch_split(
        1_000,
        {0: 100, 1: 200, 2: 300},
        {0: 10_000, 1: 5_000, 2: 10_000},
        {0: True, 1: True, 2: True},
    )
    assert split.credits == {0: 200, 1: 200, 2: 600}
    assert (split.paid, split.dust) == (1_000, 0)


def test_dust_and_ineligible_members_by_hand() -> None:
    split = epoch_split(
        10,
        {0: 1, 1: 1, 2: 1, 3: 5},
        {i: 10_000 for i in range(4)},
        {3: False, 0: True, 1: True, 2: True},
    )
    assert split.credits == {0: 3, 1: 3, 2: 3}
    assert split.dust == 1


def test_nothing_to_distribute_is_an_error() -> None:
    with pytest.raises(ValueError, match="nothing to distribute"):
        epoch_split(10, {0: 0}, {0: 10_000}, {0: True})


members = st.integers(min_value=1, max_value=12)


@st.composite
def epochs(draw: st.DrawFn) -> tuple[int, dict[int, int], dict[int, int], dict[int, bool]]:
    n = draw(members)
    deltas = {i: draw(st.integers(0, 2**40)) for i in range(n)}
    reputations = {i: draw(st.integers(0, 10_000)) for i in range(n)}
    eligible = {i: draw(st.booleans()) for i in range(n)}
    deltas[0], reputations[0], eligible[0] = max(deltas[0], 1), max(reputations[0], 1), True
    return draw(st.integers(0, 10**24)), deltas, reputations, eligible


@given(epochs())
def test_credits_and_dust_add_up_to_the_pot(
    epoch: tuple[int, dict[int, int], dict[int, int], dict[int, bool]],
) -> None:
    pot, deltas, reputations, eligible = epoch
    split = epoch_split(pot, deltas, reputations, eligible)
    assert split.paid + split.dust == pot
    assert sum(split.credits.values()) == split.paid
    assert 0 <= split.dust < max(1, len(split.credits))
    assert all(eligible[i] for i in split.credits)


@given(epochs(), st.integers(1, 2**30))
def test_a_larger_contribution_never_earns_less(
    epoch: tuple[int, dict[int, int], dict[int, int], dict[int, bool]], more: int
) -> None:
    pot, deltas, reputations, eligible = epoch
    before = epoch_split(pot, deltas, reputations, eligible).credits.get(0, 0)
    after = epoch_split(pot, {**deltas, 0: deltas[0] + more}, reputations, eligible).credits[0]
    assert after >= before
