"""The Cox partial likelihood (Breslow ties) and class-balanced cross-entropy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from node.losses import (
    balanced_binary_cross_entropy,
    class_balanced_weights,
    cox_breslow,
    make_loss,
)


def _outcomes(events: list[float], times: list[float]) -> torch.Tensor:
    return torch.tensor(list(zip(events, times, strict=True)), dtype=torch.float32)


def test_cox_loss_of_equal_risks_is_the_log_of_the_risk_set_sizes() -> None:
    # Events at t=1 (risk set of 3) and t=3 (risk set of 1); loss = (log 3 + log 1) / 2.
    loss = cox_breslow(torch.zeros(3), _outcomes([1, 0, 1], [1.0, 2.0, 3.0]))
    assert float(loss) == pytest.approx(math.log(3) / 2, rel=1e-6)


def test_cox_loss_puts_every_tied_patient_in_the_risk_set() -> None:
    # Breslow: both deaths at t=2 share the risk set {0, 1, 2}.
    a, b, c = 1.0, 0.0, -1.0
    log_sum = math.log(math.exp(a) + math.exp(b) + math.exp(c))
    expected = -((a - log_sum) + (b - log_sum)) / 2
    outcomes = _outcomes([1, 1, 0], [2.0, 2.0, 3.0])
    assert float(cox_breslow(torch.tensor([a, b, c]), outcomes)) == pytest.approx(expected)
    order = [2, 0, 1]  # the row order does not matter
    shuffled = cox_breslow(torch.tensor([a, b, c])[order], outcomes[order])
    assert float(shuffled) == pytest.approx(expected)


def _breslow_by_loops(risk: np.ndarray, events: np.ndarray, times: np.ndarray) -> float:
    total = 0.0
    for i in range(len(times)):
        if events[i]:
            at_risk = sum(math.exp(risk[j]) for j in range(len(times)) if times[j] >= times[i])
            total += risk[i] - math.log(at_risk)
    return -total / max(events.sum(), 1)


def test_cox_loss_matches_the_definition_with_many_ties() -> None:
    rng = np.random.default_rng(0)
    times = rng.integers(1, 8, 40).astype(np.float64)
    events = (rng.random(40) < 0.5).astype(np.float64)
    risk = rng.normal(size=40)
    loss = cox_breslow(torch.tensor(risk), torch.tensor(np.stack([events, times], axis=1)))
    assert float(loss) == pytest.approx(_breslow_by_loops(risk, events, times), rel=1e-9)


def test_cox_loss_ignores_a_common_shift_of_the_risks() -> None:
    outcomes = _outcomes([1, 0, 1, 1], [4.0, 1.0, 2.0, 2.0])
    risk = torch.tensor([0.3, -1.2, 2.0, 0.1])
    assert float(cox_breslow(risk + 5.0, outcomes)) == pytest.approx(
        float(cox_breslow(risk, outcomes)), rel=1e-5
    )


def test_cox_loss_without_events_is_zero_with_a_zero_gradient() -> None:
    risk = torch.tensor([0.5, -0.5], requires_grad=True)
    loss = cox_breslow(risk, _outcomes([0, 0], [1.0, 2.0]))
    loss.backward()  # type: ignore[no-untyped-call]
    assert float(loss.detach()) == 0.0
    assert risk.grad is not None and torch.equal(risk.grad, torch.zeros(2))


def test_balanced_weights_make_both_classes_weigh_the_same() -> None:
    # 8 negatives, 2 positives: 10 / (2 * 8) and 10 / (2 * 2).
    assert class_balanced_weights([0] * 8 + [1] * 2) == (0.625, 2.5)
    assert class_balanced_weights([0, 0, 0]) == (1.0, 0.0)
    assert class_balanced_weights([1]) == (0.0, 1.0)


def test_balanced_cross_entropy_is_the_mean_of_the_two_class_means() -> None:
    labels = torch.tensor([0.0, 0.0, 0.0, 1.0])
    logits = torch.tensor([0.0, 1.0, -1.0, 2.0])
    per_sample = [
        math.log(2),
        math.log1p(math.e),
        math.log1p(math.exp(-1)),
        math.log1p(math.exp(-2)),
    ]
    expected = (sum(per_sample[:3]) / 3 + per_sample[3]) / 2
    loss = balanced_binary_cross_entropy(labels.numpy())(logits, labels)
    assert float(loss) == pytest.approx(expected, rel=1e-6)


def test_unknown_loss_lists_the_known_ones() -> None:
    with pytest.raises(KeyError, match="cox-breslow"):
        make_loss("hinge", [0, 1])
