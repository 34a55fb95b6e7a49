"""Clusters from label distributions: hospitals with similar case mix aggregate together.

Each hospital reveals one number, the share of positive labels among its training rows (for
survival data the share of observed events), and nothing else. :func:`clusters_by_share`
splits the hospitals into ``k`` groups of consecutive shares that minimise the sum of squared
differences from each group's mean share: one-dimensional k-means, solved exactly by dynamic
programming over the sorted shares, so every party that sees the same shares gets the same
clusters. Clusters are numbered by ascending share; equal shares keep the input order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from node.data import SiteData


def label_share(site: SiteData) -> float:
    """The share of positive labels (binary tasks) or observed events (survival) in training."""
    labels = site.train_y[:, 0] if site.train_y.ndim == 2 else site.train_y
    return float(np.mean(labels > 0.5)) if len(labels) else 0.0


def clusters_by_share(shares: Sequence[float], k: int) -> list[int]:
    """A cluster number (0..k-1) for every share: the optimal split of the sorted shares into
    ``k`` non-empty runs by within-run sum of squares. Raises ValueError for bad input."""
    n = len(shares)
    if not 1 <= k <= n:
        raise ValueError(f"cannot make {k} clusters of {n} hospitals: give 1 to {n}")
    if not all(np.isfinite(s) and 0.0 <= s <= 1.0 for s in shares):
        raise ValueError(f"label shares must lie in [0, 1], got {list(shares)}")
    order = sorted(range(n), key=lambda i: (shares[i], i))
    values = np.array([shares[i] for i in order], dtype=np.float64)
    prefix = np.concatenate([[0.0], np.cumsum(values)])
    squares = np.concatenate([[0.0], np.cumsum(values * values)])

    def cost(start: int, end: int) -> float:  # sum of squares of values[start:end] about their mean
        total = prefix[end] - prefix[start]
        return float(squares[end] - squares[start] - total * total / (end - start))

    # best[j][e]: least cost of splitting values[:e] into j + 1 runs;
    # cut[j][e]: where the last of those runs starts
    best = np.full((k, n + 1), np.inf)
    cut = np.zeros((k, n + 1), dtype=int)
    for end in range(1, n + 1):
        best[0][end] = cost(0, end)
    for j in range(1, k):
        for end in range(j + 1, n + 1):
            for start in range(j, end):
                candidate = best[j - 1][start] + cost(start, end)
                if candidate < best[j][end] - 1e-15:
                    best[j][end], cut[j][end] = candidate, start
    clusters = [0] * n
    end = n
    for j in range(k - 1, -1, -1):
        start = cut[j][end] if j else 0
        for position in range(start, end):
            clusters[order[position]] = j
        end = start
    return clusters
