"""Model construction, local training and evaluation."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from node.data import SiteData
from node.errors import InvalidTrainingConfig, UnknownDataset
from node.model import build_model
from node.training import (
    TrainingConfig,
    choose_finetune_steps,
    derive_seed,
    evaluate,
    finetune,
    train_local,
)
from node.weights import state_dict_to_weights, weights_hash


def _initial(seed: int = 0) -> dict[str, np.ndarray]:
    return state_dict_to_weights(build_model("heart-disease", 13, seed))


def test_build_model_is_deterministic_and_leaves_global_rng_alone() -> None:
    before = torch.get_rng_state()
    first = _initial(5)
    assert torch.equal(before, torch.get_rng_state())
    assert weights_hash(first) == weights_hash(_initial(5))
    assert weights_hash(first) != weights_hash(_initial(6))
    assert np.abs(first["linear.weight"]).max() <= 1 / math.sqrt(13)


def test_build_model_rejects_unknown_dataset() -> None:
    with pytest.raises(UnknownDataset, match="heart-disease"):
        build_model("fed-isic2019", 39, 0)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"lr": 0.0}, "lr must be"),
        ({"lr": float("nan")}, "lr must be"),
        ({"local_steps": 0}, "local_steps must be"),
        ({"local_epochs": 2}, "exactly one of local_steps and local_epochs"),
        ({"local_steps": None}, "exactly one of local_steps and local_epochs"),
        ({"batch_size": 0}, "batch_size must be"),
        ({"optimizer": "rmsprop"}, "optimizer must be one of"),
        ({"weight_decay": -1.0}, "weight_decay must be"),
        ({"proximal_mu": -0.1}, "proximal_mu must be"),
        ({"momentum": 1.0}, "momentum must be"),
        ({"optimizer": "adam", "momentum": 0.9}, "sgd optimizer only"),
    ],
)
def test_config_rejects_bad_values(changes: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidTrainingConfig, match=message):
        TrainingConfig(**changes)  # type: ignore[arg-type]


def test_epochs_budget_counts_batches() -> None:
    config = TrainingConfig(local_steps=None, local_epochs=2, batch_size=16)
    assert config.steps_for(199) == 2 * 13  # ceil(199 / 16) = 13 batches per pass


def test_same_seed_same_bytes_different_seed_different(heart_sites: tuple[SiteData, ...]) -> None:
    site = heart_sites[0]
    config = TrainingConfig()
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()
    numpy_next = np.random.random()
    np.random.set_state(numpy_state)
    first = train_local(_initial(), site, config, seed=11)
    again = train_local(_initial(), site, config, seed=11)
    other = train_local(_initial(), site, config, seed=12)
    assert torch.equal(torch_state, torch.get_rng_state())
    assert np.random.random() == numpy_next
    assert weights_hash(first.weights) == weights_hash(again.weights)
    assert first.train_loss == again.train_loss
    assert weights_hash(first.weights) != weights_hash(other.weights)
    assert first.samples == 199


def test_training_lowers_the_training_loss(heart_sites: tuple[SiteData, ...]) -> None:
    site = heart_sites[1]
    start = evaluate(_initial(), site.train_x, site.train_y)
    result = train_local(_initial(), site, TrainingConfig(local_steps=100), seed=0)
    assert evaluate(result.weights, site.train_x, site.train_y).loss < start.loss


def test_proximal_term_keeps_weights_near_the_global_model(
    heart_sites: tuple[SiteData, ...],
) -> None:
    site, start = heart_sites[3], _initial()

    def drift(mu: float) -> float:
        config = TrainingConfig(local_steps=50, proximal_mu=mu)
        weights = train_local(start, site, config, seed=3).weights
        return sum(float(np.sum((weights[k] - start[k]) ** 2)) for k in start)

    assert drift(10.0) < drift(0.0)


def test_adam_runs() -> None:
    x = np.array([[1.0], [-1.0]], dtype=np.float32)
    site = SiteData("heart-disease", "toy", "Toy", x, np.array([1, 0], np.float32), x, x[:, 0])
    start = state_dict_to_weights(build_model("heart-disease", 1, 0))
    result = train_local(start, site, TrainingConfig(optimizer="adam", lr=0.1), seed=0)
    assert evaluate(result.weights, x, np.array([1, 0], np.float32)).accuracy == 1.0


def test_evaluate_against_hand_computed_loss_and_accuracy() -> None:
    weights = {
        "linear.weight": np.array([[1.0]], dtype=np.float32),
        "linear.bias": np.array([0.0], dtype=np.float32),
    }
    x = np.array([[2.0], [-1.0]], dtype=np.float32)
    y = np.array([1.0, 1.0], dtype=np.float32)
    # logits 2 and -1, both labelled 1: BCE = mean(log(1 + e^-2), log(1 + e^1)); one correct.
    expected_loss = (math.log1p(math.exp(-2.0)) + math.log1p(math.exp(1.0))) / 2
    metrics = evaluate(weights, x, y)
    assert metrics.accuracy == 0.5
    assert (metrics.metric_name, metrics.metric) == ("accuracy", 0.5)
    assert metrics.loss == pytest.approx(expected_loss, rel=1e-6)
    assert metrics.samples == 2


def test_derive_seed_is_stable_and_separates_parts() -> None:
    assert derive_seed(1, "train", 0, "va") == derive_seed(1, "train", 0, "va")
    assert derive_seed(1, "train", 0, "va") != derive_seed(1, "train", 1, "va")
    assert derive_seed(1, 2) != derive_seed("1", 2)
    assert 0 <= derive_seed(0) < 2**63


def _constant(bias: float) -> dict[str, np.ndarray]:
    """A logistic model that ignores its features and predicts ``sigmoid(bias)``."""
    weights = _initial()
    return {
        "linear.weight": np.zeros_like(weights["linear.weight"]),
        "linear.bias": np.full_like(weights["linear.bias"], bias),
    }


def test_choose_finetune_steps_repairs_a_model_that_is_wrong_for_the_site(
    heart_sites: tuple[SiteData, ...],
) -> None:
    switzerland = heart_sites[2]  # 29 of its 30 training rows are positive
    wrong = _constant(-2.0)  # says negative for every row
    assert evaluate(wrong, switzerland.test_x, switzerland.test_y).accuracy < 0.1
    steps = choose_finetune_steps(wrong, switzerland, TrainingConfig(), 50, seed=0)
    assert steps in (10, 20, 50)
    tuned = finetune(wrong, switzerland, TrainingConfig(), steps, seed=0)
    assert evaluate(tuned, switzerland.test_x, switzerland.test_y).accuracy > 0.9


def test_choose_finetune_steps_keeps_what_fine_tuning_only_spoils(
    heart_sites: tuple[SiteData, ...],
) -> None:
    cleveland = heart_sites[0]
    fitted = train_local(_initial(), cleveland, TrainingConfig(local_steps=300), seed=0).weights
    # a learning rate that throws the model far off on every step
    wild = TrainingConfig(lr=1000.0)
    assert choose_finetune_steps(fitted, cleveland, wild, 20, seed=0) == 0


def test_choose_finetune_steps_reads_training_rows_only(
    heart_sites: tuple[SiteData, ...],
) -> None:
    site = heart_sites[3]
    blind = dataclasses.replace(site, test_x=np.full_like(site.test_x, np.nan))
    chosen = choose_finetune_steps(_constant(-5.0), site, TrainingConfig(), 20, seed=1)
    assert choose_finetune_steps(_constant(-5.0), blind, TrainingConfig(), 20, seed=1) == chosen
    tiny = dataclasses.replace(site, train_x=site.train_x[:7], train_y=site.train_y[:7])
    assert choose_finetune_steps(_constant(-5.0), tiny, TrainingConfig(), 20, seed=1) == 0
    assert choose_finetune_steps(_constant(-5.0), site, TrainingConfig(), 0, seed=1) == 0


def test_finetune_mu_keeps_the_personal_model_near_its_start(
    heart_sites: tuple[SiteData, ...],
) -> None:
    site, start = heart_sites[0], _initial()

    def drift(mu: float) -> float:
        tuned = finetune(start, site, TrainingConfig(), 50, seed=2, mu=mu)
        return sum(float(np.sum((tuned[k] - start[k]) ** 2)) for k in start)

    assert drift(10.0) < 0.5 * drift(0.0)
