"""The task registry's models: shapes, parameter counts and deterministic initialisation."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch

from node.data import TASKS, load_site, resolve_data_dir
from node.losses import LOSSES
from node.metrics import METRICS
from node.model import MODEL_BUILDERS, build_model, hidden_units_for
from node.training import TrainingConfig, default_training_config, evaluate, train_local
from node.weights import state_dict_to_weights, weights_hash


@pytest.mark.parametrize("dataset", sorted(TASKS))
def test_every_task_names_a_known_model_loss_metric_and_valid_defaults(dataset: str) -> None:
    task = TASKS[dataset]
    assert task.model in MODEL_BUILDERS
    assert task.loss in LOSSES
    assert task.metric in METRICS
    assert default_training_config(dataset).lr > 0
    assert task.rounds >= 1


def test_ecg_cnn_maps_a_batch_of_windows_to_one_logit_each() -> None:
    model = build_model("mitbih-ecg", 234, seed=0)
    assert model(torch.zeros(5, 234)).shape == (5,)
    # conv 1*16*7+16, conv 16*32*5+32, conv 32*32*5+32, hidden (32*14)*32+32, output 32+1;
    # 14 = the 234 samples halved by the stride-2 convolution (117) and three pools.
    assert sum(p.numel() for p in model.parameters()) == 128 + 2592 + 5152 + 14368 + 33


def test_ecg_cnn_init_is_deterministic_and_leaves_global_rng_alone() -> None:
    before = torch.get_rng_state()
    first = state_dict_to_weights(build_model("mitbih-ecg", 234, seed=3))
    assert torch.equal(before, torch.get_rng_state())
    assert weights_hash(first) == weights_hash(
        state_dict_to_weights(build_model("mitbih-ecg", 234, seed=3))
    )
    assert weights_hash(first) != weights_hash(
        state_dict_to_weights(build_model("mitbih-ecg", 234, seed=4))
    )
    assert np.abs(first["conv1.weight"]).max() <= 1 / math.sqrt(7)
    assert np.abs(first["hidden.weight"]).max() <= 1 / math.sqrt(448)


def test_ecg_cnn_rejects_too_short_windows() -> None:
    with pytest.raises(ValueError, match="at least 15 samples"):
        build_model("mitbih-ecg", 14, seed=0)


def test_cox_model_is_linear_without_bias_and_seeded() -> None:
    model = build_model("tcga-brca", 39, seed=7)
    weights = state_dict_to_weights(model)
    assert list(weights) == ["linear.weight"]
    assert weights["linear.weight"].shape == (1, 39)
    assert np.abs(weights["linear.weight"]).max() <= 1 / math.sqrt(39)
    again = state_dict_to_weights(build_model("tcga-brca", 39, seed=7))
    assert weights_hash(weights) == weights_hash(again)
    x = torch.randn(4, 39)
    assert torch.allclose(model(x), x @ torch.from_numpy(weights["linear.weight"][0]))


def test_a_wide_mlp_has_the_asked_size_and_trains_from_its_own_layout() -> None:
    units = hidden_units_for(13, 100_000)
    weights = state_dict_to_weights(build_model("heart-disease", 13, seed=1, hidden_units=units))
    assert sum(v.size for v in weights.values()) == pytest.approx(100_000, rel=0.01)
    again = state_dict_to_weights(build_model("heart-disease", 13, seed=1, hidden_units=units))
    assert all(np.array_equal(weights[k], again[k]) for k in weights)
    site = load_site("heart-disease", "va", resolve_data_dir(None, os.environ))
    result = train_local(weights, site, TrainingConfig(local_steps=2), seed=0)
    assert set(result.weights) == set(weights)
    assert not np.array_equal(result.weights["hidden.weight"], weights["hidden.weight"])
    assert 0 <= evaluate(result.weights, site.test_x, site.test_y, site.dataset).accuracy <= 1


def test_only_binary_tasks_can_be_widened() -> None:
    with pytest.raises(ValueError, match="hidden_units"):
        build_model("tcga-brca", 39, seed=0, hidden_units=8)
