"""Clusters from label shares: exact one-dimensional k-means, checked by brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from node.clustering import clusters_by_share, label_share
from node.data import SiteData


def brute_force_cost(shares: list[float], k: int) -> float:
    """The least within-cluster sum of squares over every assignment to k non-empty clusters."""
    best = np.inf
    for labels in itertools.product(range(k), repeat=len(shares)):
        if len(set(labels)) != k:
            continue
        cost = 0.0
        for c in range(k):
            group = np.array([s for s, g in zip(shares, labels, strict=True) if g == c])
            cost += float(((group - group.mean()) ** 2).sum())
        best = min(best, cost)
    return best


def cost_of(shares: list[float], clusters: list[int]) -> float:
    total = 0.0
    for c in set(clusters):
        group = np.array([s for s, g in zip(shares, clusters, strict=True) if g == c])
        total += float(((group - group.mean()) ** 2).sum())
    return total


def test_a_hand_worked_split() -> None:
    # sorted: 0.1 0.15 | 0.5 0.8 0.9 costs 0.00125 + 0.0867; 0.1 0.15 0.5 | 0.8 0.9 costs more
    assert clusters_by_share([0.1, 0.9, 0.15, 0.8, 0.5], 2) == [0, 1, 0, 1, 1]
    assert clusters_by_share([0.1, 0.9, 0.15, 0.8, 0.5], 3) == [0, 2, 0, 2, 1]
    assert clusters_by_share([0.1, 0.9, 0.15, 0.8, 0.5], 1) == [0] * 5
    assert clusters_by_share([0.1, 0.9, 0.15, 0.8, 0.5], 5) == [0, 4, 1, 3, 2]


@pytest.mark.parametrize("seed", range(6))
def test_the_split_is_optimal(seed: int) -> None:
    shares = list(np.random.default_rng(seed).random(7).round(3))
    for k in (2, 3):
        clusters = clusters_by_share(shares, k)
        assert sorted(set(clusters)) == list(range(k))
        assert cost_of(shares, clusters) == pytest.approx(brute_force_cost(shares, k), abs=1e-12)


def test_clusters_are_numbered_by_ascending_share_and_ties_keep_input_order() -> None:
    assert clusters_by_share([0.9, 0.1], 2) == [1, 0]
    assert clusters_by_share([0.3, 0.3, 0.3], 2) == [0, 1, 1]


@pytest.mark.parametrize(
    ("shares", "k", "message"),
    [([0.1, 0.2], 3, "give 1 to 2"), ([0.1], 0, "give 1 to 1"), ([0.1, 1.5], 2, r"\[0, 1\]")],
)
def test_bad_input_is_refused(shares: list[float], k: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        clusters_by_share(shares, k)


def test_label_share_of_binary_and_survival_sites() -> None:
    x = np.zeros((4, 1), dtype=np.float32)
    binary = SiteData("csv", "a", "a", x, np.array([1, 0, 0, 1], np.float32), x, np.zeros(4))
    assert label_share(binary) == 0.5
    events = np.array([[1, 5.0], [0, 7.0], [0, 2.0], [0, 1.0]], np.float32)
    survival = SiteData("tcga-brca", "b", "b", x, events, x, events)
    assert label_share(survival) == 0.25
