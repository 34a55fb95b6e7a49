"""Leave-one-out and Shapley values of small games, the evaluators' median and chain scores.

Expected values are worked out by hand in the comments, or by a second method in the test.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Callable, Mapping

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from incentive.errors import InvalidMeasurementInput
from incentive.shapley import (
    Utility,
    chain_scores,
    leave_one_out,
    median_over_evaluators,
    memoised,
    monte_carlo_shapley,
)
from medswarm.errors import MedswarmError
from node.coalitions import aggregate_utility
from node.weights import WeightArray


def glove_game(coalition: frozenset[str]) -> float:
    """One left glove (``left``) and two right gloves: a coalition is worth 1 per pair."""
    rights = len(coalition & {"right1", "right2"})
    return float(min(1 if "left" in coalition else 0, rights))


# Players alone are worth 10, 20, 30; every pair adds 10 more (no extra for all three).
SYNERGY_GAME = {
    frozenset(): 0.0,
    frozenset("a"): 10.0,
    frozenset("b"): 20.0,
    frozenset("c"): 30.0,
    frozenset("ab"): 40.0,
    frozenset("ac"): 50.0,
    frozenset("bc"): 60.0,
    frozenset("abc"): 90.0,
}

# For v(S) = (sum of the weights in S)²: v = Σ w_i² + Σ_{i<j} 2 w_i w_j, and the Shapley value
# gives each player its own term and half of each pair's, w_i² + w_i (W − w_i) = w_i W.
SQUARE_WEIGHTS = {"a": 1, "b": 2, "c": 3, "d": 4, "e": 5, "f": 6}


def square_game(coalition: frozenset[str]) -> float:
    return float(sum(SQUARE_WEIGHTS[m] for m in coalition)) ** 2


def counted(utility: Utility) -> tuple[Utility, list[frozenset[str]]]:
    calls: list[frozenset[str]] = []

    def counting(coalition: frozenset[str]) -> float:
        calls.append(coalition)
        return utility(coalition)

    return counting, calls


def test_glove_game_exact_shapley_and_leave_one_out() -> None:
    # Of the 6 orders, ``left`` completes a pair whenever it is not first (4 orders); each
    # right glove only when it follows ``left`` with the other right glove still out (1 order).
    members = ["left", "right1", "right2"]
    shapley = monte_carlo_shapley(members, glove_game, permutations=6, seed=0)
    assert shapley == pytest.approx({"left": 4 / 6, "right1": 1 / 6, "right2": 1 / 6})
    # Without ``left`` nothing is left; without one right glove the other still makes a pair.
    assert leave_one_out(members, glove_game) == {"left": 1.0, "right1": 0.0, "right2": 0.0}


def test_synergy_game_exact_shapley() -> None:
    # a: gains 10 (first, 1/3 of orders), 40−20 and 50−30 (second, after b or c, 1/6 each),
    # 90−60 (last, 1/3): 10/3 + 20/6 + 20/6 + 30/3 = 20. Likewise b = 30 and c = 40; or: own
    # value plus half of each pair's 10.
    shapley = monte_carlo_shapley("abc", SYNERGY_GAME.__getitem__, permutations=6, seed=0)
    assert shapley == pytest.approx({"a": 20.0, "b": 30.0, "c": 40.0})
    assert leave_one_out("abc", SYNERGY_GAME.__getitem__) == {"a": 30.0, "b": 40.0, "c": 50.0}


def test_additive_game_gives_each_player_its_own_value() -> None:
    own = {"x": 1.5, "y": -2.0, "z": 4.0, "w": 0.0}

    def additive(coalition: frozenset[str]) -> float:
        return 7.0 + sum(own[m] for m in coalition)

    assert monte_carlo_shapley(own, additive, permutations=24, seed=0) == pytest.approx(own)
    assert monte_carlo_shapley(own, additive, permutations=5, seed=3) == pytest.approx(own)
    assert leave_one_out(own, additive) == pytest.approx(own)


def test_exact_enumeration_of_a_six_player_game() -> None:
    exact = monte_carlo_shapley(SQUARE_WEIGHTS, square_game, permutations=720, seed=0)
    assert exact == pytest.approx({m: 21.0 * w for m, w in SQUARE_WEIGHTS.items()})


@pytest.mark.parametrize("seed", range(5))
def test_sampled_shapley_is_within_four_standard_errors_of_the_exact_value(seed: int) -> None:
    permutations = 700  # fewer than 6! = 720, so the orders are drawn
    estimate = monte_carlo_shapley(SQUARE_WEIGHTS, square_game, permutations, seed)
    for member, weight in SQUARE_WEIGHTS.items():
        # The spread of the member's gain over all 720 orders, enumerated here directly.
        gains = []
        for order in itertools.permutations(SQUARE_WEIGHTS):
            before = sum(SQUARE_WEIGHTS[m] for m in order[: order.index(member)])
            gains.append((before + weight) ** 2 - before**2)
        standard_error = statistics.pstdev(gains) / math.sqrt(permutations)
        assert abs(estimate[member] - 21.0 * weight) < 4 * standard_error


def test_same_seed_same_values_whatever_the_member_order() -> None:
    members = list(SQUARE_WEIGHTS)
    first = monte_carlo_shapley(members, square_game, permutations=50, seed=11)
    again = monte_carlo_shapley(members[::-1], square_game, permutations=50, seed=11)
    other_seed = monte_carlo_shapley(members, square_game, permutations=50, seed=12)
    assert first == again
    assert list(first) == sorted(members)
    assert first != other_seed


def test_each_coalition_is_evaluated_once() -> None:
    utility, calls = counted(square_game)
    monte_carlo_shapley(SQUARE_WEIGHTS, utility, permutations=720, seed=0)
    assert len(calls) == len(set(calls)) == 2**6
    shared, shared_calls = counted(square_game)
    cached = memoised(shared)
    leave_one_out(SQUARE_WEIGHTS, cached)
    monte_carlo_shapley(SQUARE_WEIGHTS, cached, permutations=720, seed=0)
    assert len(shared_calls) == 2**6


def test_truncation_skips_the_rest_of_an_order_once_the_utility_is_reached() -> None:
    # Any non-empty coalition is worth 1: the first member of an order gains 1, the rest 0.
    members = ["a", "b", "c", "d", "e"]
    utility, calls = counted(lambda coalition: 1.0 if coalition else 0.0)
    values = monte_carlo_shapley(members, utility, permutations=120, seed=0, truncation=0.01)
    assert values == pytest.approx(dict.fromkeys(members, 1 / 5))
    assert len(calls) == 7  # the empty coalition, everyone, and each member alone
    assert set(calls) == {frozenset(), frozenset(members), *(frozenset(m) for m in members)}


def test_truncation_above_the_whole_gain_gives_zeros() -> None:
    values = monte_carlo_shapley("abc", SYNERGY_GAME.__getitem__, 6, 0, truncation=100.0)
    assert values == {"a": 0.0, "b": 0.0, "c": 0.0}


small_games = st.integers(min_value=1, max_value=5).flatmap(
    lambda n: st.tuples(
        st.just([f"m{i}" for i in range(n)]),
        st.lists(
            st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
            min_size=2**n,
            max_size=2**n,
        ),
        st.integers(min_value=1, max_value=200),
        st.integers(min_value=0, max_value=2**32),
    )
)


@settings(max_examples=60, deadline=None)
@given(small_games)
def test_values_add_up_to_the_gain_of_the_whole_federation(
    game: tuple[list[str], list[float], int, int],
) -> None:
    # Each order's gains telescope to v(all) − v(empty), so this holds for sampled orders too.
    members, table, permutations, seed = game

    def utility(coalition: frozenset[str]) -> float:
        return table[sum(1 << i for i, m in enumerate(members) if m in coalition)]

    values = monte_carlo_shapley(members, utility, permutations, seed)
    gain = utility(frozenset(members)) - utility(frozenset())
    assert math.fsum(values.values()) == pytest.approx(gain, abs=1e-6)


def test_the_median_ignores_one_lying_evaluator_out_of_three() -> None:
    honest = [{"a": 0.10, "b": 0.30, "liar": -0.05}, {"a": 0.20, "b": 0.25, "liar": -0.02}]
    for inflation in (1.0, 1e3, 1e9):
        lie = {"a": -inflation, "b": -inflation, "liar": inflation}
        assert median_over_evaluators([*honest, lie]) == {"a": 0.10, "b": 0.25, "liar": -0.02}


@given(
    st.lists(st.floats(-1e9, 1e9), min_size=2, max_size=6),
    st.floats(allow_nan=False, allow_infinity=False),
)
def test_one_evaluator_cannot_move_the_median_outside_the_others_range(
    honest: list[float], lie: float
) -> None:
    median = median_over_evaluators([{"m": value} for value in [*honest, lie]])["m"]
    assert min(honest) <= median <= max(honest)


@pytest.mark.parametrize(
    ("values", "total", "expected"),
    [
        ({"a": 0.1, "b": 0.2, "c": 0.3}, 600, {"a": 100, "b": 200, "c": 300}),
        ({"a": 1.0, "b": -5.0, "c": 3.0}, 1_000_000, {"a": 250_000, "b": 0, "c": 750_000}),
        # 1/3 each of 10: 3 each, the one unit left goes to the first name among equals.
        ({"b": 1.0, "a": 1.0, "c": 1.0}, 10, {"a": 4, "b": 3, "c": 3}),
        # shares 7 × 2/9 = 1.56 and 7 × 7/9 = 5.44: floors 1 and 5, the unit left to a (0.56).
        ({"a": 2.0, "b": 7.0}, 7, {"a": 2, "b": 5}),
        ({"a": -1.0, "b": 0.0}, 1_000_000, {"a": 0, "b": 0}),
        ({"a": 1e300, "b": 1e-300}, 2**64 - 1, {"a": 2**64 - 1, "b": 0}),
    ],
)
def test_chain_scores(values: dict[str, float], total: int, expected: dict[str, int]) -> None:
    assert chain_scores(values, total) == expected


def test_aggregate_utility_evaluates_the_coalitions_fedavg_model() -> None:
    weights = {"w": np.array([1.0, 2.0], dtype=np.float32)}
    updates = {
        "a": ({"w": np.array([4.0, 0.0], dtype=np.float32)}, 1),
        "b": ({"w": np.array([0.0, 8.0], dtype=np.float32)}, 3),
        "idle": ({"w": np.array([100.0, 100.0], dtype=np.float32)}, 0),
    }
    seen: list[list[float]] = []

    def evaluate(model: Mapping[str, WeightArray]) -> float:
        seen.append(model["w"].tolist())
        return float(model["w"].sum())

    utility = aggregate_utility(weights, updates, evaluate)
    assert utility(frozenset()) == 3.0
    # (1·[4, 0] + 3·[0, 8]) / 4 = [1, 6], added to [1, 2]
    assert utility(frozenset({"a", "b"})) == 10.0
    assert utility(frozenset({"a", "b", "idle"})) == 10.0
    assert utility(frozenset({"idle"})) == 3.0
    assert seen == [[1.0, 2.0], [2.0, 8.0], [2.0, 8.0], [1.0, 2.0]]
    with pytest.raises(InvalidMeasurementInput, match=r"no update for member\(s\) \['zed'\]"):
        utility(frozenset({"a", "zed"}))


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (lambda: leave_one_out([], glove_game), "no members given"),
        (lambda: monte_carlo_shapley([], glove_game, 10, 0), "no members given"),
        (lambda: leave_one_out(["a", "b", "a"], glove_game), r"\['a'\] given more than once"),
        (lambda: monte_carlo_shapley("abc", lambda c: math.nan, 6, 0), r"\['a', 'b', 'c'\] is nan"),
        (lambda: leave_one_out("ab", lambda c: math.inf if c else 0.0), "must be a finite number"),
        (
            lambda: monte_carlo_shapley("ab", glove_game, 0, 0),
            "permutations must be an integer >= 1",
        ),
        (lambda: monte_carlo_shapley("ab", glove_game, 2.5, 0), "permutations must be an integer"),  # type: ignore[arg-type]
        (lambda: monte_carlo_shapley("ab", glove_game, 2, 0, truncation=-1), "truncation must be"),
        (lambda: median_over_evaluators([]), "no evaluator results"),
        (
            lambda: median_over_evaluators([{"a": 1.0, "b": 2.0}, {"a": 1.0, "c": 2.0}]),
            r"evaluator 1 measured other members .*missing \['b'\], extra \['c'\]",
        ),
        (lambda: median_over_evaluators([{"a": math.nan}]), "evaluator 0's value for 'a' is nan"),
        (lambda: chain_scores({}), "no members given"),
        (lambda: chain_scores({"a": math.inf}), "the value for 'a' is inf"),
        (lambda: chain_scores({"a": 1.0}, total=0), "total must be an integer from 1"),
        (lambda: chain_scores({"a": 1.0}, total=2**64), "total must be an integer from 1"),
    ],
)
def test_invalid_inputs_raise_a_value_error(call: Callable[[], object], fragment: str) -> None:
    with pytest.raises(InvalidMeasurementInput, match=fragment) as caught:
        call()
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, MedswarmError)
