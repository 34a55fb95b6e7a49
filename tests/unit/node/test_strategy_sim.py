"""The SCAFFOLD training hook and the in-memory strategy runs over Fed-Heart-Disease."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from node.data import SiteData
from node.errors import InvalidStrategyConfig
from node.simulate import fedavg_round, initial_weights, score_sites
from node.strategies import StrategyConfig, client_variate_update, zero_variate
from node.strategy_sim import main, run_strategy
from node.training import TrainingConfig, site_training_config, train_local
from node.weights import weights_hash

ONE_FULL_BATCH = TrainingConfig(lr=0.1, local_steps=1, batch_size=1000)


def test_no_correction_changes_nothing(heart_sites: tuple[SiteData, ...]) -> None:
    start = initial_weights(heart_sites, 0)
    plain = train_local(start, heart_sites[0], TrainingConfig(), seed=5)
    zero = train_local(
        start, heart_sites[0], TrainingConfig(), seed=5, gradient_correction=zero_variate(start)
    )
    assert weights_hash(plain.weights) == weights_hash(zero.weights)


def test_correction_is_added_to_the_gradient(heart_sites: tuple[SiteData, ...]) -> None:
    # One SGD step: w1 = w0 - lr * (grad + correction), so the correction moves w1 by -lr * it.
    start = initial_weights(heart_sites, 0)
    correction = {
        "linear.weight": np.linspace(-1, 1, 13, dtype=np.float32).reshape(1, 13),
        "linear.bias": np.array([0.5], dtype=np.float32),
    }
    site = heart_sites[1]
    plain = train_local(start, site, ONE_FULL_BATCH, seed=0).weights
    moved = train_local(start, site, ONE_FULL_BATCH, seed=0, gradient_correction=correction)
    for name, term in correction.items():
        shift = moved.weights[name].astype(np.float64) - plain[name]
        assert shift.ravel().tolist() == pytest.approx((-0.1 * term).ravel().tolist(), abs=1e-6)


def test_correction_must_name_every_parameter(heart_sites: tuple[SiteData, ...]) -> None:
    start = initial_weights(heart_sites, 0)
    with pytest.raises(ValueError, match="gradient_correction names"):
        train_local(
            start, heart_sites[0], TrainingConfig(), 0, {"linear.bias": start["linear.bias"]}
        )
    wrong = {**start, "linear.weight": np.zeros(13, dtype=np.float32)}
    with pytest.raises(ValueError, match="has shape"):
        train_local(start, heart_sites[0], TrainingConfig(), 0, wrong)


def test_option_two_variate_after_one_full_batch_step_is_the_gradient(
    heart_sites: tuple[SiteData, ...],
) -> None:
    # With c = c_i = 0 and one full-batch step, (x - y) / lr is the full-batch gradient of the
    # mean logistic loss at x: X^T (sigmoid(X w + b) - y) / n, computed here with numpy.
    site = heart_sites[0]
    x = initial_weights(heart_sites, 3)
    y = train_local(x, site, ONE_FULL_BATCH, seed=0).weights
    zero = zero_variate(x)
    variate = client_variate_update(zero, zero, x, y, steps=1, lr=0.1)
    features = site.train_x.astype(np.float64)
    logits = features @ x["linear.weight"][0].astype(np.float64) + float(x["linear.bias"][0])
    error = 1.0 / (1.0 + np.exp(-logits)) - site.train_y.reshape(-1)
    grad_w = features.T @ error / site.n_train
    assert variate["linear.weight"][0].tolist() == pytest.approx(grad_w.tolist(), abs=2e-5)
    assert float(variate["linear.bias"][0]) == pytest.approx(float(error.mean()), abs=2e-5)


def test_fedavg_strategy_is_node_simulate_bit_for_bit(heart_sites: tuple[SiteData, ...]) -> None:
    config = TrainingConfig()
    run = run_strategy(heart_sites, config, StrategyConfig(), rounds=3, seed=2)
    weights = initial_weights(heart_sites, 2)
    for rnd in range(3):
        weights = fedavg_round(weights, heart_sites, config, 2, rnd)
    assert run.shared_weights_hash == weights_hash(weights)
    assert run.global_scores == score_sites(weights, heart_sites)
    assert run.personal_scores == ()


def test_cluster_aggregates_are_encoded_as_the_nodes_store_them(
    heart_sites: tuple[SiteData, ...],
) -> None:
    # Two clusters, two rounds: four aggregates of the 14-value model (a weight row of 13
    # and a bias). float32: the weights encoding, 138 bytes each. int8: the 10-byte prefix,
    # the header {"block":256,"codec":"int8","tensors":[["linear.bias",[1]],
    # ["linear.weight",[1,13]]]} (85 bytes), a float32 scale per tensor, 14 int8 values.
    clusters = [0, 1, 1, 0]
    runs = {
        codec: run_strategy(
            heart_sites,
            TrainingConfig(),
            StrategyConfig(),
            2,
            0,
            clusters=clusters,
            update_codec=codec,
        )
        for codec in ("fp32", "int8", "topk")
    }
    assert runs["fp32"].aggregate_bytes == 4 * 138
    assert runs["topk"].aggregate_bytes == 4 * 138  # top-k's aggregates stay float32
    assert runs["int8"].aggregate_bytes == 4 * (10 + 85 + 2 * 4 + 14)


@pytest.mark.parametrize(
    "strategy",
    [
        StrategyConfig("fedprox", proximal_mu=0.1),
        StrategyConfig("fedyogi", server_lr=0.03, tau=1e-2),
        StrategyConfig("scaffold"),
    ],
)
def test_strategies_learn_and_repeat(
    heart_sites: tuple[SiteData, ...], strategy: StrategyConfig
) -> None:
    before = np.mean(
        [s.accuracy for s in score_sites(initial_weights(heart_sites, 1), heart_sites)]
    )
    first = run_strategy(heart_sites, TrainingConfig(), strategy, rounds=4, seed=1)
    second = run_strategy(heart_sites, TrainingConfig(), strategy, rounds=4, seed=1)
    assert first.global_metric is not None and first.global_metric > before + 0.1
    assert first.shared_weights_hash == second.shared_weights_hash
    assert first.optimizer_state_hash == second.optimizer_state_hash
    assert len(first.round_metric) == 4


def test_local_layers_give_per_site_scores_only(heart_sites: tuple[SiteData, ...]) -> None:
    strategy = StrategyConfig(local_layers=("linear.bias",), finetune_steps=2)
    run = run_strategy(heart_sites, TrainingConfig(), strategy, rounds=2, seed=0)
    assert run.global_scores == ()
    assert [s.samples for s in run.personal_scores] == [104, 89, 16, 45]
    assert run.personal_metric is not None and run.global_metric is None


def test_local_layers_without_finetuning(heart_sites: tuple[SiteData, ...]) -> None:
    strategy = StrategyConfig("fedyogi", local_layers=("linear.bias",))
    run = run_strategy(heart_sites, TrainingConfig(), strategy, rounds=2, seed=0)
    assert run.personal_metric == run.round_metric[-1]


def test_finetuning_keeps_the_global_scores(heart_sites: tuple[SiteData, ...]) -> None:
    plain = run_strategy(heart_sites, TrainingConfig(), StrategyConfig(), rounds=2, seed=0)
    tuned = run_strategy(
        heart_sites, TrainingConfig(), StrategyConfig(finetune_steps=3), rounds=2, seed=0
    )
    assert tuned.global_scores == plain.global_scores
    assert len(tuned.personal_scores) == 4


def test_strategy_settings_reach_local_training() -> None:
    assert site_training_config(TrainingConfig(), StrategyConfig("fedprox", proximal_mu=0.2)) == (
        dataclasses.replace(TrainingConfig(), proximal_mu=0.2)
    )
    with pytest.raises(InvalidStrategyConfig, match="plain SGD"):
        site_training_config(TrainingConfig(optimizer="adam"), StrategyConfig("scaffold"))


def test_command_line(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--data-dir", str(data_dir), "--rounds", "1", "--seeds", "0", "1"]
    assert main([*argv, "--strategy", "fedadagrad", "--finetune-steps", "1"]) == 0
    out = capsys.readouterr().out
    assert "global model: mean over seeds" in out and "personalised: mean over seeds" in out
    assert main([*argv, "--strategy", "fedavg", "--tau", "-1"]) == 2
    assert "tau must be a positive" in capsys.readouterr().err
