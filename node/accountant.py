"""Rényi differential privacy (RDP) accounting for the Gaussian mechanism. Pure Python.

Every model round a member announces its clipped update plus Gaussian noise whose standard
deviation is ``noise_multiplier`` times the clipping norm (:mod:`node.privacy`). One such
release is the Gaussian mechanism with L2 sensitivity equal to the clipping norm, which is
``(α, α / (2σ²))``-RDP for every order ``α > 1`` (Mironov, "Rényi Differential Privacy",
2017, Prop. 7), ``σ`` the noise multiplier. Releases compose by adding their RDP order by
order (same paper, Prop. 1), so ``R`` rounds give ``R·α / (2σ²)``.

**Sampled participation.** When each member took part in a round only with probability
``q`` (Poisson sampling), the round is the sampled Gaussian mechanism. For integer orders
``α >= 2`` its RDP is exactly (Mironov, Talwar and Zhang, "Rényi Differential Privacy of the
Sampled Gaussian Mechanism", 2019, Sec. 3.3)::

    A_α = Σ_{k=0..α} C(α, k) (1 - q)^(α-k) q^k exp((k² - k) / (2σ²))
    RDP(α) = log(A_α) / (α - 1)

With ``q < 1`` only the integer orders of the grid are used; with ``q = 1`` the sum is its
last term and the formula is the plain ``α / (2σ²)``. In this federation every member takes
part in every round, so the nodes use ``q = 1``.

**Conversion to (ε, δ).** An ``(α, ρ)``-RDP mechanism is ``(ε, δ)``-DP with::

    ε = ρ + log((α - 1) / α) - (log δ + log α) / (α - 1)

(Canonne, Kamath and Steinke 2020, Prop. 12; Balle et al. 2020, Thm. 21), tighter than
Mironov's ``ρ + log(1/δ) / (α - 1)``. The accountant takes the smallest ε over its orders
(never below 0) and reports the order that gave it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from node.errors import PrivacyError

DEFAULT_ORDERS: tuple[float, ...] = (
    1.01,
    1.02,
    1.05,
    *(1 + x / 10 for x in range(1, 100)),  # 1.1 ... 10.9
    *(float(x) for x in range(11, 65)),
    80.0,
    96.0,
    128.0,
    192.0,
    256.0,
    512.0,
    1024.0,
)
"""Rényi orders tried: fine near 1, where the best order lies when ε is large."""

BISECTION_STEPS = 200
LARGEST_NOISE_MULTIPLIER = 1e6


@dataclass(frozen=True)
class PrivacySpent:
    """``(epsilon, delta)``-DP after ``rounds`` releases; ``order`` is the Rényi order that
    gave ``epsilon`` (None after no release, when ``epsilon`` is 0)."""

    epsilon: float
    delta: float
    order: float | None
    rounds: int


def gaussian_rdp(noise_multiplier: float, order: float) -> float:
    """RDP of order ``order`` of one Gaussian release: ``order / (2 noise_multiplier²)``."""
    _check_noise(noise_multiplier)
    _check_order(order)
    return order / (2.0 * noise_multiplier**2)


def sampled_gaussian_rdp(sample_rate: float, noise_multiplier: float, order: float) -> float:
    """RDP of one sampled Gaussian release (participation probability ``sample_rate``).

    ``order`` must be an integer >= 2 unless ``sample_rate`` is 1 (see the module docstring).
    """
    _check_noise(noise_multiplier)
    _check_order(order)
    _check_rate(sample_rate)
    if sample_rate == 1.0:
        return gaussian_rdp(noise_multiplier, order)
    if not float(order).is_integer():
        raise PrivacyError(
            f"the sampled Gaussian bound is implemented for integer orders only, got {order}; "
            "use integer orders when sample_rate < 1"
        )
    alpha = int(order)
    log_q, log_rest = math.log(sample_rate), math.log1p(-sample_rate)
    terms = [
        _log_binomial(alpha, k)
        + (alpha - k) * log_rest
        + k * log_q
        + (k * k - k) / (2.0 * noise_multiplier**2)
        for k in range(alpha + 1)
    ]
    return max(0.0, _log_sum_exp(terms) / (alpha - 1))


def rdp_to_epsilon(
    rdp: Sequence[float], orders: Sequence[float], delta: float
) -> tuple[float, float]:
    """The smallest ε over ``orders`` for the RDP values ``rdp`` at ``delta``, and its order."""
    _check_delta(delta)
    if len(rdp) != len(orders) or not orders:
        raise PrivacyError(
            f"need one RDP value per order and at least one order, got {len(rdp)} values "
            f"for {len(orders)} orders"
        )
    best, best_order = math.inf, float(orders[0])
    for value, order in zip(rdp, orders, strict=True):
        _check_order(order)
        if math.isnan(value) or value < 0:
            raise PrivacyError(f"RDP must be a number >= 0, got {value} at order {order}")
        epsilon = (
            value + math.log1p(-1.0 / order) - (math.log(delta) + math.log(order)) / (order - 1)
        )
        if epsilon < best:
            best, best_order = epsilon, float(order)
    return max(0.0, best), best_order


class RdpAccountant:
    """Counts a member's Gaussian releases and converts them to ``(epsilon, delta)``.

    ``noise_multiplier`` is the noise's standard deviation over the clipping norm;
    ``sample_rate`` the probability that a member takes part in a round (1: every round).
    Raises :class:`~node.errors.PrivacyError` for a noise multiplier that is not positive and
    finite, a rate outside (0, 1], or orders that are not finite numbers above 1.
    """

    def __init__(
        self,
        noise_multiplier: float,
        sample_rate: float = 1.0,
        orders: Sequence[float] = DEFAULT_ORDERS,
    ) -> None:
        _check_noise(noise_multiplier)
        _check_rate(sample_rate)
        if not orders:
            raise PrivacyError("the accountant needs at least one Rényi order")
        for order in orders:
            _check_order(order)
        if sample_rate < 1.0:
            orders = [order for order in orders if float(order).is_integer()]
            if not orders:
                raise PrivacyError(
                    "with sample_rate < 1 only integer orders can be used, and none was given"
                )
        self.noise_multiplier = float(noise_multiplier)
        self.sample_rate = float(sample_rate)
        self.orders: tuple[float, ...] = tuple(float(order) for order in orders)
        self._per_round = tuple(
            sampled_gaussian_rdp(self.sample_rate, self.noise_multiplier, order)
            for order in self.orders
        )
        self.rounds = 0

    def step(self, rounds: int = 1) -> RdpAccountant:
        """Count ``rounds`` more releases; returns the accountant, so calls can chain."""
        if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 0:
            raise PrivacyError(f"rounds must be an integer >= 0, got {rounds!r}")
        self.rounds += rounds
        return self

    def rdp(self) -> tuple[float, ...]:
        """The RDP spent so far at each of :attr:`orders`."""
        return tuple(self.rounds * value for value in self._per_round)

    def spent(self, delta: float) -> PrivacySpent:
        """The ``(epsilon, delta)`` guarantee of the releases counted so far."""
        _check_delta(delta)
        if self.rounds == 0:
            return PrivacySpent(0.0, delta, None, 0)
        epsilon, order = rdp_to_epsilon(self.rdp(), self.orders, delta)
        return PrivacySpent(epsilon, delta, order, self.rounds)

    def epsilon(self, delta: float) -> float:
        """The epsilon of :meth:`spent`."""
        return self.spent(delta).epsilon


def epsilon_after(
    noise_multiplier: float,
    rounds: int,
    delta: float,
    sample_rate: float = 1.0,
    orders: Sequence[float] = DEFAULT_ORDERS,
) -> float:
    """Epsilon at ``delta`` after ``rounds`` releases with ``noise_multiplier``."""
    return RdpAccountant(noise_multiplier, sample_rate, orders).step(rounds).epsilon(delta)


def noise_multiplier_for(
    target_epsilon: float,
    rounds: int,
    delta: float,
    sample_rate: float = 1.0,
    orders: Sequence[float] = DEFAULT_ORDERS,
    tolerance: float = 1e-6,
) -> float:
    """The smallest noise multiplier (to ``tolerance``, relative) whose epsilon after
    ``rounds`` releases at ``delta`` is at most ``target_epsilon``; 0.0 for an infinite
    target or no rounds (no noise needed). Found by bisection, epsilon falling as the noise
    grows.

    Raises :class:`~node.errors.PrivacyError` for a target that is not positive, or one below
    what any noise reaches with these orders (the conversion term alone bounds epsilon below).
    """
    if not _is_number(target_epsilon) or math.isnan(target_epsilon) or target_epsilon <= 0:
        raise PrivacyError(f"target epsilon must be positive, got {target_epsilon}")
    _check_delta(delta)
    if not (0 < tolerance < 1):
        raise PrivacyError(f"tolerance must be in (0, 1), got {tolerance}")
    if math.isinf(target_epsilon) or rounds == 0:
        return 0.0

    def epsilon(noise: float) -> float:
        return epsilon_after(noise, rounds, delta, sample_rate, orders)

    low, high = 0.0, 1.0
    while epsilon(high) > target_epsilon:
        low, high = high, high * 2
        if high > LARGEST_NOISE_MULTIPLIER:
            raise PrivacyError(
                f"epsilon {target_epsilon} is out of reach after {rounds} rounds at delta "
                f"{delta}: even noise multiplier {LARGEST_NOISE_MULTIPLIER:g} gives "
                f"{epsilon(LARGEST_NOISE_MULTIPLIER):.4g}; allow a larger epsilon or delta"
            )
    for _ in range(BISECTION_STEPS):
        if high - low <= tolerance * high:
            break
        middle = (low + high) / 2
        if epsilon(middle) > target_epsilon:
            low = middle
        else:
            high = middle
    return high


def _log_binomial(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def _log_sum_exp(values: Sequence[float]) -> float:
    top = max(values)
    return top + math.log(math.fsum(math.exp(v - top) for v in values))


def _check_noise(noise_multiplier: float) -> None:
    if not (_is_number(noise_multiplier) and 0 < noise_multiplier < math.inf):
        raise PrivacyError(
            f"noise multiplier must be a positive finite number, got {noise_multiplier!r} "
            "(no noise gives no guarantee to account for)"
        )


def _check_rate(sample_rate: float) -> None:
    if not (_is_number(sample_rate) and 0 < sample_rate <= 1):
        raise PrivacyError(f"sample rate must be in (0, 1], got {sample_rate!r}")


def _check_order(order: float) -> None:
    if not (_is_number(order) and 1 < order < math.inf):
        raise PrivacyError(f"Rényi orders must be finite numbers above 1, got {order!r}")


def _check_delta(delta: float) -> None:
    if not (_is_number(delta) and 0 < delta < 1):
        raise PrivacyError(f"delta must be in (0, 1), got {delta!r}")


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
