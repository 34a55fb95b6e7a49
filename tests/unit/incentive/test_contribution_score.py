"""contribution_score: samples × loss improvement in micro-units, exact and non-negative."""

from __future__ import annotations

import math

import pytest

from incentive.contribution import contribution_score
from incentive.errors import InvalidContributionInput
from medswarm.errors import MedswarmError


@pytest.mark.parametrize(
    ("samples", "before", "after", "expected"),
    [
        (100, 0.5, 0.4, 10_000_000),  # 100 × 0.1 × 10^6
        (7, 0.3, 0.1, 1_400_000),  # naive float gives 0.19999999999999998 → 1_399_999
        (1, 2.0, 0.5, 1_500_000),
        (3, 1.0, 0.9999999, 0),  # 3 × 10^-7 × 10^6 = 0.3, rounded down
        (10, 0.1, 0.2, 0),  # the update made things worse: no negative scores
        (10, 0.7, 0.7, 0),
        (0, 5.0, 1.0, 0),
        (2, 3, 1, 4_000_000),  # integer losses are fine
    ],
)
def test_scores(samples: int, before: float, after: float, expected: int) -> None:
    assert contribution_score(samples, before, after) == expected


def test_huge_scores_are_capped_at_uint64() -> None:
    assert contribution_score(2**40, 1e10, 0.0) == 2**64 - 1


@pytest.mark.parametrize(
    ("samples", "before", "after", "fragment"),
    [
        (-1, 1.0, 0.5, "samples must be >= 0"),
        (1.5, 1.0, 0.5, "samples must be an int"),
        (True, 1.0, 0.5, "samples must be an int"),
        (1, math.nan, 0.5, "loss_before must be finite"),
        (1, 1.0, math.inf, "loss_after must be finite"),
        (1, "1.0", 0.5, "loss_before must be a number"),
    ],
)
def test_invalid_inputs_raise_a_value_error(
    samples: object, before: object, after: object, fragment: str
) -> None:
    with pytest.raises(InvalidContributionInput, match=fragment) as caught:
        contribution_score(samples, before, after)  # type: ignore[arg-type]
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, MedswarmError)
