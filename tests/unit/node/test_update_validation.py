"""Scoring updates from the losses members measure on their own rows (node/validation.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gossip.messages import AggregateInput, Announcement, AnnouncementKind
from node.config import ConfigError, FederationConfig
from node.data import SiteData
from node.inbox import RoundInbox
from node.learner import VARIATE, SiteLearner
from node.simulate import initial_weights
from node.strategies import StrategyConfig
from node.training import default_training_config
from node.validation import (
    RATIO_SCALE,
    VariateHistory,
    loss_ratios,
    own_step,
    ratio_score,
    robust_z,
    validation_outliers,
)


def test_robust_z_puts_each_evaluator_on_its_own_scale() -> None:
    small = robust_z({"a": 0.50, "b": 0.51, "c": 0.49, "d": 0.50, "e": 0.60})
    large = robust_z({"a": 5.0, "b": 5.1, "c": 4.9, "d": 5.0, "e": 6.0})
    assert small == pytest.approx(large)
    assert small["e"] == pytest.approx(0.10 / (1.4826 * 0.01))
    assert small["a"] == 0.0


def test_robust_z_needs_enough_updates_and_survives_equal_losses() -> None:
    assert robust_z({"a": 1.0, "b": 2.0, "c": 3.0}) == {}
    equal = robust_z({"a": 0.7, "b": 0.7, "c": 0.7, "d": 0.7})
    assert equal == {"a": 0.0, "b": 0.0, "c": 0.0, "d": 0.0}


def honest_ratios(rng: np.random.Generator, senders: list[str]) -> dict[str, float]:
    return {s: 0.9 + 0.02 * rng.standard_normal() for s in senders}


def test_a_step_that_raises_most_evaluators_loss_clearly_is_rejected() -> None:
    rng = np.random.default_rng(0)
    senders = [f"s{i}" for i in range(8)]
    measured = {}
    for evaluator in senders:
        ratios = honest_ratios(rng, senders)
        ratios["s3"] = 1.7  # the poisoned step: 70% worse for everyone
        measured[evaluator] = ratios
    # its sender calls its own step the best and another's the worst
    measured["s3"]["s3"] = 0.0
    measured["s3"]["s5"] = 99.0
    scores, rejected = validation_outliers(measured, ["s2", "s3", "s5"], 1.5, 0.4)
    assert set(rejected) == {"s3"}
    assert "by 70% at the median" in rejected["s3"] and "7 evaluators" in rejected["s3"]
    z, increase = scores["s3"]
    assert z > 5 and increase == pytest.approx(0.7)
    assert abs(scores["s5"][0]) < 1.5 and abs(scores["s2"][0]) < 1.5


def test_standing_out_is_not_enough_the_loss_must_rise_clearly() -> None:
    rng = np.random.default_rng(2)
    senders = [f"s{i}" for i in range(8)]
    measured = {e: {**honest_ratios(rng, senders), "s1": 1.2} for e in senders}
    scores, rejected = validation_outliers(measured, senders, 1.5, 0.4)
    assert scores["s1"][0] > 1.5 and rejected == {}  # unlike the others, but 20% < 40%
    _, rejected = validation_outliers(measured, senders, 1.5, 0.1)
    assert list(rejected) == ["s1"]


def test_a_minority_of_lying_evaluators_cannot_get_an_honest_update_rejected() -> None:
    rng = np.random.default_rng(1)
    senders = [f"s{i}" for i in range(8)]
    measured = {e: honest_ratios(rng, senders) for e in senders}
    for liar in ("s6", "s7"):
        measured[liar]["s0"] = 1e6
    _, rejected = validation_outliers(measured, senders, 1.5, 0.4)
    assert rejected == {}


def test_no_verdict_without_three_evaluators_besides_the_sender() -> None:
    senders = ["a", "b", "c", "d"]
    measured = {e: {s: 1.0 + (s == "a") for s in senders} for e in ("b", "c", "d")}
    scores, rejected = validation_outliers(measured, ["a", "b"], 1.5, 0.4)
    assert "a" in scores and "b" not in scores  # b has two evaluators besides itself
    assert list(rejected) == ["a"]


def test_ratios_travel_as_bounded_integers() -> None:
    assert ratio_score(0.6931) == 693_100
    assert ratio_score(-1.0) == 0
    assert ratio_score(math.nan) == ratio_score(math.inf) == 2**64 - 1
    assert ratio_score(1e20) == 2**64 - 1
    assert ratio_score(0.25) / RATIO_SCALE == 0.25


def learner_for(site: SiteData, strategy: str) -> SiteLearner:
    genesis = initial_weights([site], 0)
    training = default_training_config("heart-disease")
    return SiteLearner(site, training, StrategyConfig(name=strategy), 0, genesis)


def test_loss_ratios_compare_with_the_model_the_round_started_from(
    heart_sites: tuple[SiteData, ...],
) -> None:
    learner = learner_for(heart_sites[0], "fedavg")
    update, _ = learner.train(1)
    zero = {name: np.zeros_like(values) for name, values in update.items()}
    ratios = loss_ratios(learner, 1, {"trained": update, "nothing": zero})
    assert ratios["nothing"] == 1.0
    assert ratios["trained"] < 1.0  # training lowered the loss on its own rows


def test_the_step_is_the_update_weighted_and_under_scaffold_without_the_correction(
    heart_sites: tuple[SiteData, ...],
) -> None:
    fedavg = learner_for(heart_sites[0], "fedavg")
    update, samples = fedavg.train(1)
    halved = own_step(fedavg, update, samples, None, 0.5)
    assert all(np.allclose(halved[n], 0.5 * update[n]) for n in update)

    scaffold = learner_for(heart_sites[0], "scaffold")
    update, samples = scaffold.train(1)
    shared = sorted(n for n in update if not n.startswith(VARIATE))
    c_i = {n: np.full(np.shape(update[n]), 0.01) for n in shared}
    step = own_step(scaffold, update, samples, c_i)
    k_lr = scaffold.training.steps_for(samples) * scaffold.training.lr  # c is still 0
    assert all(np.allclose(step[n], update[n] - k_lr * 0.01, atol=1e-6) for n in shared)
    assert all(np.array_equal(step[VARIATE + n], update[VARIATE + n]) for n in shared)


def test_the_variate_history_rebuilds_c_i_and_forgets_what_it_missed() -> None:
    shape = {"w": np.zeros((2,), np.float32)}
    history = VariateHistory(first_model_round=2)
    start = history.before("a", 2, shape)
    assert start is not None and np.array_equal(start["w"], [0.0, 0.0])
    change = {"w": np.array([1.0, 2.0], np.float32), VARIATE + "w": np.array([0.5, -0.5])}
    history.record("a", 2, start, change, samples=4)
    after = history.before("a", 3, shape)
    assert after is not None and np.array_equal(after["w"], [2.0, -2.0])
    assert history.before("a", 4, shape) is None  # round 3's update was missed
    assert history.before("b", 3, shape) is None  # never seen


def test_the_inbox_keeps_validations_per_round_and_sender() -> None:
    inbox = RoundInbox()
    measured = AggregateInput("0x" + "11" * 20, "ab" * 32, 7, score=600_000)
    validation = Announcement(
        AnnouncementKind.VALIDATION,
        "heart",
        2,
        0,
        "cd" * 32,
        0,
        "",
        0,
        "0x" + "22" * 20,
        "peer",
        (measured,),
    )
    inbox.add(validation)
    inbox.add(validation)
    assert inbox.validations(2) == [validation] and inbox.evaluations(2) == []
    inbox.forget_before(3)
    assert inbox.validations(2) == []


def test_the_limits_must_make_sense() -> None:
    with pytest.raises(ConfigError, match="validation_threshold must be positive"):
        FederationConfig(validation_threshold=0)
    with pytest.raises(ConfigError, match="validation_max_loss_increase must not be negative"):
        FederationConfig(validation_max_loss_increase=-0.1)
