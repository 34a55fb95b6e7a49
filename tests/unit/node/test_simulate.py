"""The in-memory FedAvg simulation built from the node's own functions."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from node.data import SiteData, load_all_sites, load_pooled
from node.simulate import (
    initial_weights,
    run_fedavg,
    run_local_only,
    run_pooled,
    score_sites,
    validation_view,
)
from node.training import TrainingConfig


def test_a_few_fedavg_rounds_beat_the_initial_model(heart_sites: tuple[SiteData, ...]) -> None:
    before = np.mean(
        [s.accuracy for s in score_sites(initial_weights(heart_sites, 0), heart_sites)]
    )
    result = run_fedavg(heart_sites, TrainingConfig(), rounds=3, seed=0)
    assert result.mean_accuracy > before + 0.1
    assert len(result.round_accuracy) == 3
    assert result.round_accuracy[-1] == result.mean_accuracy


def test_simulation_is_reproducible(heart_sites: tuple[SiteData, ...]) -> None:
    first = run_fedavg(heart_sites, TrainingConfig(), rounds=2, seed=4)
    second = run_fedavg(heart_sites, TrainingConfig(), rounds=2, seed=4)
    assert first.scores == second.scores


def test_local_only_scores_each_site_on_its_own_test_split(
    heart_sites: tuple[SiteData, ...],
) -> None:
    result = run_local_only(heart_sites, TrainingConfig(), rounds=1, seed=0)
    assert [s.samples for s in result.scores] == [104, 89, 16, 45]


def test_validation_view_never_touches_the_test_split(heart_sites: tuple[SiteData, ...]) -> None:
    site = heart_sites[0]
    view = validation_view(site)
    assert view.n_train + view.n_test == site.n_train
    rows = {tuple(r) for r in site.train_x.tolist()}
    assert all(tuple(r) in rows for r in view.test_x.tolist())


def test_pooled_baseline_scores_both_normalisations(data_dir: Path) -> None:
    pooled = load_pooled("heart-disease", data_dir)
    own = load_all_sites("heart-disease", data_dir)
    results = run_pooled(pooled, TrainingConfig(), rounds=1, seed=0, flamby_eval_sites=own)
    assert [r.method for r in results] == ["Pooled", "Pooled (FLamby eval)"]
    assert all(r.mean_accuracy > 0.6 for r in results)
