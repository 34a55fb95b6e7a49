"""Scoring updates from the losses members measure on their own rows (node/validation.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gossip.messages import AggregateInput, Announcement, AnnouncementKind
from node.config import ConfigError, FederationConfig
from node.data import SiteData
from node.inbox import RoundInbox
from node.learner import SiteLearner
from node.simulate import initial_weights
from node.strategies import StrategyConfig
from node.training import default_training_config
from node.validation import (
    LOSS_SCALE,
    loss_score,
    robust_z,
    update_losses,
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


def honest_losses(rng: np.random.Generator, senders: list[str]) -> dict[str, float]:
    scale = rng.uniform(0.3, 3.0)  # every hospital's loss has its own level
    return {s: scale * (1 + 0.02 * rng.standard_normal()) for s in senders}


def test_the_update_that_raises_most_evaluators_loss_is_rejected() -> None:
    rng = np.random.default_rng(0)
    senders = [f"s{i}" for i in range(8)]
    measured = {}
    for evaluator in senders:
        losses = honest_losses(rng, senders)
        losses["s3"] *= 1.3  # the poisoned update: worse for everyone
        measured[evaluator] = losses
    # its sender calls its own update the best and another's the worst
    measured["s3"]["s3"] = 0.0
    measured["s3"]["s5"] = 99.0
    scores, rejected = validation_outliers(measured, ["s2", "s3", "s5"], threshold=1.5)
    assert set(rejected) == {"s3"}
    assert "median robust z-score" in rejected["s3"] and "7 evaluators" in rejected["s3"]
    assert scores["s3"] > 5 and abs(scores["s5"]) < 1.5 and abs(scores["s2"]) < 1.5


def test_a_minority_of_lying_evaluators_cannot_get_an_honest_update_rejected() -> None:
    rng = np.random.default_rng(1)
    senders = [f"s{i}" for i in range(8)]
    measured = {e: honest_losses(rng, senders) for e in senders}
    for liar in ("s6", "s7"):
        measured[liar]["s0"] = 1e6
    _, rejected = validation_outliers(measured, senders, threshold=1.5)
    assert rejected == {}


def test_no_verdict_without_three_evaluators_besides_the_sender() -> None:
    senders = ["a", "b", "c", "d"]
    measured = {e: {s: 1.0 + (s == "a") for s in senders} for e in ("b", "c", "d")}
    scores, rejected = validation_outliers(measured, ["a", "b"], threshold=1.5)
    assert "a" in scores and "b" not in scores  # b has two evaluators besides itself
    assert list(rejected) == ["a"]


def test_losses_travel_as_bounded_integers() -> None:
    assert loss_score(0.6931) == 693_100
    assert loss_score(-1.0) == 0
    assert loss_score(math.nan) == loss_score(math.inf) == 2**64 - 1
    assert loss_score(1e20) == 2**64 - 1
    assert loss_score(0.25) / LOSS_SCALE == 0.25


def test_update_losses_score_the_model_each_update_makes(heart_sites: tuple[SiteData, ...]) -> None:
    site = heart_sites[0]
    genesis = initial_weights([site], 0)
    training = default_training_config("heart-disease")
    learner = SiteLearner(site, training, StrategyConfig(name="fedavg"), 0, genesis)
    update, _ = learner.train(1)
    zero = {name: np.zeros_like(values) for name, values in update.items()}
    losses = update_losses(learner, 1, {"trained": update, "nothing": zero})
    assert losses["trained"] < losses["nothing"]  # training lowered the loss on its own rows


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


def test_the_threshold_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="validation_threshold must be positive"):
        FederationConfig(validation_threshold=0)
