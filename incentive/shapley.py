"""Each member's effect on validation performance in a round: leave-one-out and Shapley values.

A *utility* maps a coalition (a frozenset of member names) to a score, higher is better. For
a round of federated learning it is :func:`node.coalitions.aggregate_utility`: the validation
metric of the model the coalition's updates make by FedAvg. :func:`leave_one_out` and
:func:`monte_carlo_shapley` split the utility of the whole federation among its members;
:func:`median_over_evaluators` combines the values that several evaluators measured on their own
validation data; :func:`chain_scores` turns values into integers for the Ledger.

Everything here is a pure function of its arguments (no I/O, no global random state); the
utility is the only code that does real work. See docs/contribution.md.
"""

from __future__ import annotations

import itertools
import math
import random
import statistics
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from decimal import Decimal
from fractions import Fraction
from numbers import Real

from incentive.errors import InvalidMeasurementInput

Utility = Callable[[frozenset[str]], float]
"""The score of a coalition of members, higher is better; must be a finite number."""

SCORE_MAX = 2**64 - 1
"""The largest value a ``uint64`` contract field holds."""


def memoised(utility: Utility) -> Utility:
    """Return ``utility`` with each coalition evaluated at most once (results kept in memory).

    Share one memoised utility between :func:`leave_one_out` and :func:`monte_carlo_shapley`
    to evaluate each coalition once for both.
    """
    cache: dict[frozenset[str], float] = {}

    def cached(coalition: frozenset[str]) -> float:
        if coalition not in cache:
            cache[coalition] = utility(coalition)
        return cache[coalition]

    return cached


def leave_one_out(members: Iterable[str], utility: Utility) -> dict[str, float]:
    """Return ``utility(all) − utility(all without m)`` for each member ``m``.

    Costs ``len(members) + 1`` utility evaluations. Raises InvalidMeasurementInput for an
    empty or repeated member list or a utility that is not a finite number.
    """
    names = _checked_members(members)
    value = _checked(utility)
    everyone = frozenset(names)
    whole = value(everyone)
    return {member: whole - value(everyone - {member}) for member in names}


def monte_carlo_shapley(
    members: Iterable[str],
    utility: Utility,
    permutations: int,
    seed: int,
    truncation: float = 0.0,
) -> dict[str, float]:
    """Return each member's Shapley value, exact or estimated from ``permutations`` orders.

    A member's Shapley value (Shapley 1953) is its marginal gain ``utility(before + m) −
    utility(before)`` averaged over every order in which the members can join. When
    ``len(members)! <= permutations`` every order is enumerated and the values are exact;
    otherwise ``permutations`` orders are drawn uniformly (Castro, Gómez and Tejada 2009) from
    ``random.Random(seed)``, after sorting the members, so the result does not depend on their
    input order. Each order's gains add up to ``utility(all) − utility(empty)``, and so do the
    values (without truncation).

    ``truncation > 0`` stops an order once ``|utility(all) − utility(before)| < truncation``
    and counts the remaining members' gains as zero (GTG-Shapley's within-round truncation,
    Liu et al. 2022); the values are then approximate even when every order is enumerated.

    Each coalition is evaluated once (at most ``2**len(members)`` evaluations). Raises
    InvalidMeasurementInput for an empty or repeated member list, ``permutations < 1``, a
    negative or non-finite ``truncation``, or a utility that is not a finite number.
    """
    names = _checked_members(members)
    if isinstance(permutations, bool) or not isinstance(permutations, int) or permutations < 1:
        raise InvalidMeasurementInput(f"permutations must be an integer >= 1, got {permutations!r}")
    if not (isinstance(truncation, Real) and math.isfinite(truncation) and truncation >= 0):
        raise InvalidMeasurementInput(
            f"truncation must be a finite number >= 0 (0 turns it off), got {truncation!r}"
        )
    value = memoised(_checked(utility))
    whole = value(frozenset(names))
    gains: dict[str, list[float]] = {member: [] for member in names}
    orders = list(_orders(names, permutations, seed))
    for order in orders:
        joined: frozenset[str] = frozenset()
        before = value(joined)
        for member in order:
            if abs(whole - before) < truncation:
                break  # the rest of this order is counted as gaining nothing
            joined = joined | {member}
            after = value(joined)
            gains[member].append(after - before)
            before = after
    return {member: math.fsum(gains[member]) / len(orders) for member in names}


def _orders(names: Sequence[str], permutations: int, seed: int) -> Iterator[Sequence[str]]:
    """Every order of ``names`` if there are at most ``permutations``, else that many drawn."""
    if math.factorial(len(names)) <= permutations:
        yield from itertools.permutations(names)
        return
    draw = random.Random(seed)
    for _ in range(permutations):
        order = list(names)
        draw.shuffle(order)
        yield order


def median_over_evaluators(per_evaluator: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Return, per member, the median of the values the evaluators measured.

    Each evaluator measures every member on its own validation data. With three or more
    evaluators one evaluator's values, however extreme, leave each median between the
    smallest and the largest of the others' values (an even count takes the mean of the two
    middle values). Raises InvalidMeasurementInput for no evaluators, evaluators that measured
    different members, or values that are not finite numbers.
    """
    if not per_evaluator:
        raise InvalidMeasurementInput("no evaluator results given; pass at least one mapping")
    names = _checked_members(per_evaluator[0])
    for index, values in enumerate(per_evaluator):
        if set(values) != set(names):
            missing = sorted(set(names) - set(values))
            extra = sorted(set(values) - set(names))
            raise InvalidMeasurementInput(
                f"evaluator {index} measured other members than evaluator 0 (missing {missing}, "
                f"extra {extra}); every evaluator must measure the same members"
            )
        for member in names:
            _finite(values[member], f"evaluator {index}'s value for {member!r}")
    return {
        member: float(statistics.median(values[member] for values in per_evaluator))
        for member in names
    }


def chain_scores(values: Mapping[str, float], total: int = 1_000_000) -> dict[str, int]:
    """Return each member's share of ``total`` integer units, in proportion to ``max(0, value)``.

    With the default ``total`` the scores are parts per million of the round's positive
    contribution. Negative and zero values score 0; if no value is positive every score is 0.
    Otherwise the scores add up to exactly ``total``: each member gets the floor of its exact
    share, and the units left over go one each to the largest remainders (ties to the member
    name that sorts first). Values are taken at their shortest decimal form (``repr``) and the
    arithmetic is exact, so equal inputs give equal scores on every machine. Every score is at
    most ``total``, so ``total <= 2**32 − 1`` fits a ``uint32`` field and ``2**64 − 1`` (the
    largest allowed) a ``uint64``.

    Raises InvalidMeasurementInput for no members, a value that is not a finite number, or a
    ``total`` that is not an integer in ``[1, 2**64 − 1]``.
    """
    names = _checked_members(values)
    if isinstance(total, bool) or not isinstance(total, int) or not 1 <= total <= SCORE_MAX:
        raise InvalidMeasurementInput(
            f"total must be an integer from 1 to 2**64 - 1 (a uint64), got {total!r}"
        )
    positive = {
        member: max(Fraction(0), _exact(_finite(values[member], f"the value for {member!r}")))
        for member in names
    }
    whole = sum(positive.values(), Fraction(0))
    if whole == 0:
        return dict.fromkeys(names, 0)
    shares = {member: part * total / whole for member, part in positive.items()}
    scores = {member: math.floor(share) for member, share in shares.items()}
    left_over = total - sum(scores.values())
    by_remainder = sorted(names, key=lambda member: (-(shares[member] - scores[member]), member))
    for member in by_remainder[:left_over]:
        scores[member] += 1
    return scores


def _checked_members(members: Iterable[str]) -> list[str]:
    """``members`` sorted, checked to be a non-empty list of distinct strings."""
    names = list(members)
    if not names:
        raise InvalidMeasurementInput("no members given; a contribution needs at least one member")
    strays = [name for name in names if not isinstance(name, str)]
    if strays:
        raise InvalidMeasurementInput(f"member names must be strings, got {strays!r}")
    repeated = sorted(name for name, count in Counter(names).items() if count > 1)
    if repeated:
        raise InvalidMeasurementInput(
            f"member(s) {repeated} given more than once; list each member once"
        )
    return sorted(names)


def _checked(utility: Utility) -> Utility:
    """``utility`` with its results checked to be finite numbers."""

    def checked(coalition: frozenset[str]) -> float:
        return _finite(utility(coalition), f"the utility of {sorted(coalition)}")

    return checked


def _finite(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise InvalidMeasurementInput(f"{what} is {value!r}; it must be a finite number")
    return float(value)


def _exact(value: float) -> Fraction:
    return Fraction(Decimal(repr(value)))
