"""Seeded train/test splits that give the same partition as scikit-learn's ``train_test_split``.

FLamby splits each Fed-Heart-Disease site with ``train_test_split(..., random_state=43,
shuffle=True, stratify=...)``. These functions draw from ``numpy.random.RandomState`` in the
same order as scikit-learn's ``ShuffleSplit`` and ``StratifiedShuffleSplit`` do, so the
partition is identical without depending on scikit-learn.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

IndexArray = npt.NDArray[np.int64]


def split_sizes(n_samples: int, train_fraction: float) -> tuple[int, int]:
    """Return ``(n_train, n_test)`` for fractions ``train_fraction`` and ``1 - train_fraction``.

    As scikit-learn sizes a float split: the test size is rounded up, the train size down.
    """
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train_fraction must be strictly between 0 and 1, got {train_fraction}")
    test_fraction = 1.0 - train_fraction
    n_test = math.ceil(test_fraction * n_samples)
    n_train = math.floor(train_fraction * n_samples)
    if n_train == 0 or n_test == 0 or n_train + n_test > n_samples:
        raise ValueError(
            f"cannot split {n_samples} samples into train fraction {train_fraction}: "
            f"sizes would be {n_train} train and {n_test} test"
        )
    return n_train, n_test


def shuffle_split(
    n_samples: int, train_fraction: float, seed: int
) -> tuple[IndexArray, IndexArray]:
    """Return ``(train_indices, test_indices)`` of one random, unstratified partition."""
    n_train, n_test = split_sizes(n_samples, train_fraction)
    rng = np.random.RandomState(seed)
    order = rng.permutation(n_samples)
    return order[n_test : n_test + n_train].astype(np.int64), order[:n_test].astype(np.int64)


def _largest_remainder_counts(
    class_counts: npt.NDArray[np.int64], n_draws: int, rng: np.random.RandomState
) -> npt.NDArray[np.int64]:
    """Split ``n_draws`` over classes in proportion to ``class_counts``.

    Each class gets the floor of its proportional share; the draws left over go to the classes
    with the largest fractional parts, ties broken at random with ``rng``.
    """
    share = class_counts / class_counts.sum() * n_draws
    counts = np.floor(share)
    missing = int(n_draws - counts.sum())
    if missing > 0:
        fraction = share - counts
        for level in np.sort(np.unique(fraction))[::-1]:
            (tied,) = np.where(fraction == level)
            take = min(len(tied), missing)
            chosen = rng.choice(tied, size=take, replace=False)
            counts[chosen] += 1
            missing -= take
            if missing == 0:
                break
    result: npt.NDArray[np.int64] = counts.astype(np.int64)
    return result


def stratified_shuffle_split(
    labels: npt.ArrayLike, train_fraction: float, seed: int
) -> tuple[IndexArray, IndexArray]:
    """Return ``(train_indices, test_indices)`` of a random partition that keeps class shares.

    Raises ``ValueError`` when a class has fewer than 2 members or the split is too small to
    hold one sample of every class in both parts.
    """
    y = np.asarray(labels)
    if y.ndim != 1:
        raise ValueError(f"labels must be one-dimensional, got shape {y.shape}")
    n_train, n_test = split_sizes(len(y), train_fraction)
    classes, class_of = np.unique(y, return_inverse=True)
    class_counts = np.bincount(class_of).astype(np.int64)
    if class_counts.min() < 2:
        raise ValueError("every class needs at least 2 members for a stratified split")
    if n_train < len(classes) or n_test < len(classes):
        raise ValueError(
            f"a split of {n_train} train / {n_test} test cannot hold all {len(classes)} classes"
        )
    members = np.split(np.argsort(class_of, kind="mergesort"), np.cumsum(class_counts)[:-1])

    rng = np.random.RandomState(seed)
    train_per_class = _largest_remainder_counts(class_counts, n_train, rng)
    test_per_class = _largest_remainder_counts(class_counts - train_per_class, n_test, rng)
    train: list[int] = []
    test: list[int] = []
    for k in range(len(classes)):
        shuffled = members[k].take(rng.permutation(class_counts[k]), mode="clip")
        train.extend(shuffled[: train_per_class[k]].tolist())
        test.extend(shuffled[train_per_class[k] : train_per_class[k] + test_per_class[k]].tolist())
    train_order = rng.permutation(np.asarray(train, dtype=np.int64))
    test_order = rng.permutation(np.asarray(test, dtype=np.int64))
    return train_order.astype(np.int64), test_order.astype(np.int64)


def flamby_split(
    binary_labels: npt.ArrayLike, train_fraction: float = 0.66, seed: int = 43
) -> tuple[IndexArray, IndexArray]:
    """Split one site as FLamby's Fed-Heart-Disease does.

    Stratified on the binary label when there are two classes and each has more than 2
    members; otherwise a plain shuffled split.
    """
    y = np.asarray(binary_labels)
    levels, counts = np.unique(y, return_counts=True)
    if len(levels) > 1 and bool(np.all(counts > 2)):
        return stratified_shuffle_split(y, train_fraction, seed)
    return shuffle_split(len(y), train_fraction, seed)


def per_class_split(
    labels: npt.ArrayLike, test_fraction: float, seed: int
) -> tuple[IndexArray, IndexArray]:
    """Return sorted ``(train_indices, test_indices)`` holding each class in both parts.

    Each class (in sorted order) is shuffled with one ``numpy.random.RandomState(seed)`` and
    its first ``round(test_fraction * n)`` members go to the test part, at least 1 and at
    most ``n - 1``, so that a class with 2 or more members appears in both parts. A class with
    a single member goes to the test part: then every class a site has is scored, and its
    training part lacks that class (what federation is meant to make up for).
    """
    y = np.asarray(labels)
    if y.ndim != 1 or len(y) == 0:
        raise ValueError(f"labels must be a non-empty vector, got shape {y.shape}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be strictly between 0 and 1, got {test_fraction}")
    rng = np.random.RandomState(seed)
    test: list[int] = []
    for level in np.unique(y):
        (members,) = np.nonzero(y == level)
        shuffled = members[rng.permutation(len(members))]
        wanted = math.floor(test_fraction * len(members) + 0.5)
        n_test = 1 if len(members) == 1 else min(max(wanted, 1), len(members) - 1)
        test.extend(shuffled[:n_test].tolist())
    is_test = np.zeros(len(y), dtype=bool)
    is_test[test] = True
    return np.flatnonzero(~is_test).astype(np.int64), np.flatnonzero(is_test).astype(np.int64)
