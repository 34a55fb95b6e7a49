"""Shapley and leave-one-out values of one real Fed-Heart-Disease round with a noisy member.

The four hospitals train one round of the default local training from a common initial model;
a fifth member sends Gaussian noise ten times the norm of the largest honest update and claims
the hospitals' mean sample count. Every hospital evaluates every coalition's FedAvg model on
its own validation part (the rows :func:`node.simulate.validation_view` holds out, which no
member trains on), and the values are the median over the four evaluators.

The utility is the negative validation loss. Accuracy on validation parts of 8 to 50 rows
moves in steps of 2 to 12.5 points, so removing one member of five often leaves it unchanged and
a random update can gain accuracy by chance; the loss moves with every update.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import torch

from incentive.shapley import (
    chain_scores,
    leave_one_out,
    median_over_evaluators,
    memoised,
    monte_carlo_shapley,
)
from node.aggregation import delta
from node.coalitions import Update, aggregate_utility
from node.data import SiteData, load_all_sites, resolve_data_dir
from node.simulate import initial_weights, validation_view
from node.training import TrainingConfig, derive_seed, evaluate, train_local
from node.weights import WeightArray, Weights

pytestmark = pytest.mark.integration

SEED = 0
NOISY = "noisy"


@pytest.fixture(scope="module")
def heart_sites() -> Iterator[tuple[SiteData, ...]]:
    """All four Fed-Heart-Disease sites, preprocessed; trained on one torch thread."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield load_all_sites("heart-disease", resolve_data_dir(None, os.environ))
    torch.set_num_threads(previous)


def norm(weights: Mapping[str, npt.NDArray[np.floating[Any]]]) -> float:
    return float(np.sqrt(sum((a.astype(np.float64) ** 2).sum() for a in weights.values())))


def one_round(sites: tuple[SiteData, ...]) -> tuple[Weights, dict[str, Update], list[SiteData]]:
    """The initial model, every member's update for round 1, and the hospitals' views."""
    views = [validation_view(site) for site in sites]
    start = initial_weights(sites, SEED)
    updates: dict[str, Update] = {}
    for view in views:
        local = train_local(start, view, TrainingConfig(), derive_seed(SEED, 1, view.site))
        updates[view.site] = (delta(local.weights, start), local.samples)
    largest = max(norm(update) for update, _ in updates.values())
    draw = np.random.default_rng(SEED)
    noise = {name: draw.standard_normal(array.shape) for name, array in start.items()}
    scale = 10 * largest / norm(noise)
    mean_samples = sum(samples for _, samples in updates.values()) // len(updates)
    updates[NOISY] = ({n: (a * scale).astype(np.float32) for n, a in noise.items()}, mean_samples)
    return start, updates, views


def measure(
    sites: tuple[SiteData, ...], permutations: int
) -> tuple[dict[str, float], dict[str, float]]:
    """The median over the four evaluators of each member's Shapley and leave-one-out value."""
    start, updates, views = one_round(sites)
    shapley, loo = [], []
    for view in views:

        def validation_score(weights: Mapping[str, WeightArray], view: SiteData = view) -> float:
            return -evaluate(weights, view.test_x, view.test_y, view.dataset).loss

        utility = memoised(aggregate_utility(start, updates, validation_score))
        shapley.append(monte_carlo_shapley(updates, utility, permutations, SEED))
        loo.append(leave_one_out(updates, utility))
    return median_over_evaluators(shapley), median_over_evaluators(loo)


def test_the_noisy_member_scores_lowest_and_the_hospitals_positive(
    heart_sites: tuple[SiteData, ...],
) -> None:
    shapley, loo = measure(heart_sites, permutations=120)  # 5! = 120: exact
    hospitals = [site.site for site in heart_sites]
    for values in (shapley, loo):
        assert min(values, key=values.__getitem__) == NOISY
        assert values[NOISY] < 0
        assert all(values[hospital] > 0 for hospital in hospitals)
    scores = chain_scores(shapley)
    assert scores[NOISY] == 0
    assert sum(scores.values()) == 1_000_000


def test_sampled_orders_single_out_the_noisy_member_too(
    heart_sites: tuple[SiteData, ...],
) -> None:
    shapley, _ = measure(heart_sites, permutations=20)
    assert min(shapley, key=shapley.__getitem__) == NOISY
    assert all(value > 0 for member, value in shapley.items() if member != NOISY)
