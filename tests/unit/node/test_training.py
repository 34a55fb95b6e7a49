"""Model construction, local training and evaluation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from node.data import SiteData
from node.errors import InvalidTrainingConfig, UnknownDataset
from node.model import build_model
from node.training import TrainingConfig, derive_seed, evaluate, train_local
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
