"""The Rényi-DP accountant: values worked out by hand, closed forms, a second method for the
sampled Gaussian, monotonicity, calibration and bad arguments."""

from __future__ import annotations

import math

import numpy as np
import pytest

from node.accountant import (
    DEFAULT_ORDERS,
    RdpAccountant,
    epsilon_after,
    gaussian_rdp,
    noise_multiplier_for,
    rdp_to_epsilon,
    sampled_gaussian_rdp,
)
from node.errors import PrivacyError

DELTA = 1e-5


def conversion(rdp: float, order: float, delta: float) -> float:
    """eps = rdp + log((a-1)/a) - (log delta + log a)/(a-1), written out again."""
    return rdp + math.log((order - 1) / order) - (math.log(delta) + math.log(order)) / (order - 1)


def test_one_round_at_chosen_orders_matches_the_hand_computation() -> None:
    # sigma = 1, one round, delta = 1e-5; RDP(a) = a/2, log(1e-5) = -11.512925:
    #   a = 2: 1   + log(1/2) - (-11.512925 + 0.693147)/1 = 1 - 0.693147 + 10.819778 = 11.126631
    #   a = 5: 2.5 + log(4/5) - (-11.512925 + 1.609438)/4 = 2.5 - 0.223144 + 2.475872 = 4.752728
    #   a = 6: 3   + log(5/6) - (-11.512925 + 1.791759)/5 = 3 - 0.182322 + 1.944233 = 4.761911
    spent = RdpAccountant(1.0, orders=(2, 5, 6)).step().spent(DELTA)
    assert spent.epsilon == pytest.approx(4.752728, abs=1e-6)
    assert spent.order == 5.0 and spent.delta == DELTA and spent.rounds == 1


def test_full_participation_is_the_closed_form_minimum_over_the_orders() -> None:
    for sigma, rounds, delta in [(0.8, 1, 1e-5), (2.0, 20, 1e-5), (6.0, 100, 1e-6), (20, 3, 0.01)]:
        values = [conversion(rounds * a / (2 * sigma**2), a, delta) for a in DEFAULT_ORDERS]
        expected = max(0.0, min(values))
        spent = RdpAccountant(sigma).step(rounds).spent(delta)
        assert spent.epsilon == pytest.approx(expected, rel=1e-12)
        assert spent.order == DEFAULT_ORDERS[int(np.argmin(values))]


def test_the_tighter_conversion_never_loses_to_mironovs() -> None:
    rdp = [3 * a / (2 * 1.5**2) for a in DEFAULT_ORDERS]
    epsilon, _ = rdp_to_epsilon(rdp, DEFAULT_ORDERS, DELTA)
    classic = min(
        r + math.log(1 / DELTA) / (a - 1) for r, a in zip(rdp, DEFAULT_ORDERS, strict=True)
    )
    assert epsilon < classic


def test_four_times_the_rounds_at_twice_the_noise_spend_the_same() -> None:
    # RDP per order is rounds * a / (2 sigma^2): (4R, 2 sigma) and (R, sigma) are equal.
    assert epsilon_after(2.4, 40, DELTA) == pytest.approx(epsilon_after(1.2, 10, DELTA), rel=1e-12)


def test_epsilon_grows_with_rounds_and_falls_with_noise_and_delta() -> None:
    by_rounds = [epsilon_after(3.0, r, DELTA) for r in (1, 2, 5, 10, 50)]
    assert by_rounds == sorted(by_rounds) and len(set(by_rounds)) == 5
    by_noise = [epsilon_after(s, 10, DELTA) for s in (0.5, 1.0, 2.0, 5.0, 20.0)]
    assert by_noise == sorted(by_noise, reverse=True) and len(set(by_noise)) == 5
    assert epsilon_after(3.0, 10, 1e-3) < epsilon_after(3.0, 10, 1e-8)


def test_no_release_spends_nothing_and_steps_add_up() -> None:
    accountant = RdpAccountant(2.0)
    assert accountant.spent(DELTA).epsilon == 0.0 and accountant.spent(DELTA).order is None
    accountant.step().step(2).step(0)
    assert accountant.rounds == 3
    assert accountant.epsilon(DELTA) == epsilon_after(2.0, 3, DELTA)
    assert accountant.rdp() == tuple(3 * gaussian_rdp(2.0, a) for a in DEFAULT_ORDERS)


def test_sampled_gaussian_at_orders_two_and_three_by_hand() -> None:
    # a = 2: A = (1-q)^2 + 2q(1-q) + q^2 e^(1/sigma^2) = 1 + q^2 (e^(1/sigma^2) - 1);
    #   q = 0.5, sigma = 1: 1 + 0.25 * 1.718282 = 1.429570, log = 0.357374.
    assert sampled_gaussian_rdp(0.5, 1.0, 2) == pytest.approx(0.357374, abs=1e-6)
    # a = 3: A = (1-q)^3 + 3(1-q)^2 q + 3(1-q) q^2 e^(1/s^2) + q^3 e^(3/s^2);
    #   q = 0.5, sigma = 1: 0.125 + 0.375 + 0.375 * 2.718282 + 0.125 * 20.085537
    #   = 0.5 + 1.019356 + 2.510692 = 4.030048, log / 2 = 1.393777 / 2 = 0.696889.
    assert sampled_gaussian_rdp(0.5, 1.0, 3) == pytest.approx(0.696889, abs=1e-6)


def test_sampled_gaussian_equals_numerical_integration_of_the_divergence() -> None:
    # A_a = E_{z ~ N(0, s^2)} [((1-q) + q exp((2z - 1) / (2 s^2)))^a], on a fine grid.
    q, sigma = 0.1, 1.5
    z = np.linspace(-40.0, 40.0, 400_001)
    density = np.exp(-(z**2) / (2 * sigma**2)) / (sigma * math.sqrt(2 * math.pi))
    ratio = (1 - q) + q * np.exp((2 * z - 1) / (2 * sigma**2))
    for order in (2, 4, 8, 16):
        integral = float(np.trapezoid(density * ratio**order, z))
        expected = math.log(integral) / (order - 1)
        assert sampled_gaussian_rdp(q, sigma, order) == pytest.approx(expected, rel=1e-6)


def test_sampling_only_lowers_the_cost() -> None:
    rates = [sampled_gaussian_rdp(q, 1.0, 8) for q in (0.01, 0.1, 0.5, 0.9, 1.0)]
    assert rates == sorted(rates) and rates[-1] == gaussian_rdp(1.0, 8) == 4.0
    sampled = RdpAccountant(1.0, sample_rate=0.1).step(10)
    assert sampled.epsilon(DELTA) < epsilon_after(1.0, 10, DELTA)
    assert all(order.is_integer() for order in sampled.orders)


def test_the_calibrated_noise_reaches_the_target_and_no_less_noise_does() -> None:
    for target in (1.0, 3.0, 8.0):
        sigma = noise_multiplier_for(target, 20, DELTA)
        assert epsilon_after(sigma, 20, DELTA) <= target
        assert epsilon_after(sigma * (1 - 1e-5), 20, DELTA) > target
    assert noise_multiplier_for(1.0, 20, DELTA) > noise_multiplier_for(3.0, 20, DELTA)
    # the rough rule sigma ~ sqrt(2 R log(1/delta)) / eps is within a factor of 2
    rough = math.sqrt(2 * 20 * math.log(1 / DELTA)) / 1.0
    assert rough / 2 < noise_multiplier_for(1.0, 20, DELTA) < rough * 2


def test_an_infinite_target_or_no_rounds_needs_no_noise() -> None:
    assert noise_multiplier_for(math.inf, 20, DELTA) == 0.0
    assert noise_multiplier_for(1.0, 0, DELTA) == 0.0


def test_an_epsilon_no_noise_reaches_is_refused() -> None:
    with pytest.raises(PrivacyError, match="out of reach"):
        noise_multiplier_for(1e-4, 20, DELTA)


@pytest.mark.parametrize("sigma", [0.0, -1.0, math.nan, math.inf, True])
def test_a_noise_multiplier_that_is_not_positive_is_refused(sigma: float) -> None:
    with pytest.raises(PrivacyError, match="noise multiplier must be a positive"):
        RdpAccountant(sigma)


@pytest.mark.parametrize("delta", [0.0, 1.0, -0.1, math.nan])
def test_a_delta_outside_zero_one_is_refused(delta: float) -> None:
    with pytest.raises(PrivacyError, match=r"delta must be in \(0, 1\)"):
        RdpAccountant(1.0).step().epsilon(delta)
    with pytest.raises(PrivacyError, match="delta"):
        noise_multiplier_for(1.0, 10, delta)


def test_other_bad_arguments_are_refused_clearly() -> None:
    with pytest.raises(PrivacyError, match=r"sample rate must be in \(0, 1\]"):
        RdpAccountant(1.0, sample_rate=0.0)
    with pytest.raises(PrivacyError, match="above 1"):
        RdpAccountant(1.0, orders=(1.0, 2.0))
    with pytest.raises(PrivacyError, match="at least one"):
        RdpAccountant(1.0, orders=())
    with pytest.raises(PrivacyError, match="integer orders"):
        RdpAccountant(1.0, sample_rate=0.5, orders=(1.5, 2.5))
    with pytest.raises(PrivacyError, match="integer orders"):
        sampled_gaussian_rdp(0.5, 1.0, 2.5)
    with pytest.raises(PrivacyError, match="rounds must be an integer >= 0"):
        RdpAccountant(1.0).step(-1)
    with pytest.raises(PrivacyError, match="rounds must be an integer"):
        RdpAccountant(1.0).step(1.5)  # type: ignore[arg-type]
    with pytest.raises(PrivacyError, match="target epsilon must be positive"):
        noise_multiplier_for(math.nan, 10, DELTA)
    with pytest.raises(PrivacyError, match="target epsilon must be positive"):
        noise_multiplier_for(0.0, 10, DELTA)
