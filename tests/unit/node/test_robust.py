"""Robust aggregation rules and update screening (node/robust.py)."""

from __future__ import annotations

import numpy as np
import pytest

from node.aggregation import fedavg
from node.errors import AggregationError
from node.robust import RULES, aggregate, screen


def update(*values: float, samples: int = 10) -> tuple[dict[str, np.ndarray], int]:
    vector = np.array(values, dtype=np.float32)
    return {"a": vector[:1].copy(), "b": vector[1:].reshape(1, -1).copy()}, samples


HONEST = [
    update(1.0, 2.0, 3.0),
    update(1.2, 1.8, 3.1),
    update(0.9, 2.1, 2.9),
    update(1.1, 2.0, 3.0),
]
BOOSTED = update(100.0, -50.0, 80.0)


def flat(weights: dict[str, np.ndarray]) -> np.ndarray:
    return np.concatenate([weights["a"].ravel(), weights["b"].ravel()])


def test_fedavg_is_the_streaming_mean_bit_for_bit() -> None:
    result = aggregate("fedavg", HONEST)
    expected = fedavg(HONEST)
    assert all(np.array_equal(result.weights[n], expected[n]) for n in expected)
    assert result.used == (0, 1, 2, 3)


def test_median_and_trimmed_mean_ignore_one_extreme_update() -> None:
    median = flat(aggregate("median", [*HONEST, BOOSTED]).weights)
    np.testing.assert_allclose(median, [1.1, 2.0, 3.0], atol=1e-6)
    trimmed = flat(aggregate("trimmed-mean", [*HONEST, BOOSTED], trim=0.2).weights)
    # drop the largest and the smallest per coordinate, average the three left
    np.testing.assert_allclose(trimmed, [1.1, 1.9333333, 3.0333333], atol=1e-5)
    assert np.abs(flat(fedavg([*HONEST, BOOSTED]))).max() > 15  # the mean is dragged away


def test_krum_picks_an_honest_update_and_multi_krum_leaves_the_outlier_out() -> None:
    krum = aggregate("krum", [*HONEST, BOOSTED], byzantine=1)
    assert len(krum.used) == 1 and krum.used[0] < 4
    multi = aggregate("multi-krum", [*HONEST, BOOSTED], byzantine=1)
    assert multi.used == (0, 1, 2, 3)
    np.testing.assert_allclose(flat(multi.weights), flat(fedavg(HONEST)), atol=1e-6)


def test_krum_without_enough_updates_falls_back_to_the_mean_and_says_so() -> None:
    result = aggregate("krum", HONEST[:3], byzantine=1)
    assert "needs more than 4 updates" in result.note
    np.testing.assert_allclose(flat(result.weights), flat(fedavg(HONEST[:3])), atol=1e-6)


def test_geometric_median_stays_with_the_majority() -> None:
    result = flat(aggregate("geometric-median", [*HONEST, BOOSTED]).weights)
    assert np.linalg.norm(result - np.array([1.05, 1.975, 3.0])) < 0.5


def test_clipping_shortens_long_updates_only() -> None:
    clipped = aggregate("fedavg", [update(3.0, 4.0, 0.0), update(0.3, 0.4, 0.0)], clip_norm=1.0)
    np.testing.assert_allclose(flat(clipped.weights), [0.45, 0.6, 0.0], atol=1e-6)


@pytest.mark.parametrize("rule", RULES)
def test_every_rule_is_deterministic_and_keeps_the_layout(rule: str) -> None:
    inputs = [*HONEST, BOOSTED]
    first, second = aggregate(rule, inputs), aggregate(rule, inputs)
    assert sorted(first.weights) == ["a", "b"]
    assert first.weights["b"].shape == (1, 2) and first.weights["a"].dtype == np.float32
    assert all(first.weights[n].tobytes() == second.weights[n].tobytes() for n in "ab")


def test_bad_input_is_refused() -> None:
    with pytest.raises(AggregationError, match="unknown aggregation rule"):
        aggregate("mode", HONEST)
    with pytest.raises(AggregationError, match="at least one update"):
        aggregate("median", [])
    with pytest.raises(AggregationError, match="NaN"):
        aggregate("median", [*HONEST, update(float("nan"), 0.0, 0.0)])
    with pytest.raises(AggregationError, match="shape"):
        aggregate(
            "median",
            [HONEST[0], ({"a": np.zeros(1, np.float32), "b": np.zeros((2, 1), np.float32)}, 1)],
        )


def test_screening_flags_what_no_honest_member_sends() -> None:
    flipped = update(-1.0, -2.0, -3.0)
    zero = update(0.0, 0.0, 0.0)
    flagged = screen([*HONEST, flipped, BOOSTED, zero])
    assert set(flagged) == {4, 5, 6}
    assert "points away" in flagged[4]
    assert "times as long" in flagged[5]
    assert "all-zero" in flagged[6]
    assert screen(HONEST) == {}


def test_screening_limits_are_the_callers() -> None:
    longer = update(4.0, 8.0, 12.0)  # four times as long, same direction
    assert 4 in screen([*HONEST, longer], norm_factor=3.0)
    assert screen([*HONEST, longer], norm_factor=5.0) == {}
    sideways = update(-2.0, 1.0, -1.0)  # cosine about -0.35 with the others' median
    cosine_flags = screen([*HONEST, sideways], min_cosine=-0.1)
    assert 4 in cosine_flags and screen([*HONEST, sideways], min_cosine=-0.9) == {}


def test_two_updates_are_too_few_to_judge_except_zeros() -> None:
    assert screen([HONEST[0], update(-1.0, -2.0, -3.0)]) == {}
    assert screen([HONEST[0], update(0.0, 0.0, 0.0)]) == {1: "an all-zero update (no training)"}
