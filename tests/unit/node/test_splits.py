"""Train/test splits compatible with scikit-learn's train_test_split."""

from __future__ import annotations

import numpy as np
import pytest

from node.data.splits import flamby_split, shuffle_split, split_sizes, stratified_shuffle_split


@pytest.mark.parametrize(
    ("n", "expected"), [(303, (199, 104)), (261, (172, 89)), (46, (30, 16)), (130, (85, 45))]
)
def test_sizes_round_test_up_and_train_down(n: int, expected: tuple[int, int]) -> None:
    # 0.34 * 303 = 103.02 -> 104 test; 0.66 * 303 = 199.98 -> 199 train.
    assert split_sizes(n, 0.66) == expected


def test_shuffle_split_is_the_seeded_permutation_cut_in_two() -> None:
    order = np.random.RandomState(43).permutation(10)
    train, test = shuffle_split(10, 0.6, 43)
    assert test.tolist() == order[:4].tolist()
    assert train.tolist() == order[4:].tolist()


def test_stratified_split_keeps_class_shares() -> None:
    labels = np.array([0] * 30 + [1] * 70)
    train, test = stratified_shuffle_split(labels, 0.6, 5)
    assert sorted(train.tolist() + test.tolist()) == list(range(100))
    assert (labels[train] == 0).sum() == 18 and (labels[test] == 0).sum() == 12


def test_flamby_split_matches_scikit_learn_on_a_small_case() -> None:
    # Expected indices from sklearn.model_selection.train_test_split(np.arange(12),
    # test_size=1.0 - 0.66, train_size=0.66, random_state=43, shuffle=True, stratify=labels),
    # scikit-learn 1.9.1.
    labels = np.array([0, 1, 1, 0, 1, 1, 0, 1, 0, 1, 1, 1])
    train, test = flamby_split(labels)
    assert train.tolist() == SKLEARN_TRAIN
    assert test.tolist() == SKLEARN_TEST


def test_single_class_site_falls_back_to_a_plain_split() -> None:
    labels = np.array([1] * 45 + [0])
    train, test = flamby_split(labels)
    plain_train, plain_test = shuffle_split(46, 0.66, 43)
    assert train.tolist() == plain_train.tolist() and test.tolist() == plain_test.tolist()


SKLEARN_TRAIN = [11, 3, 5, 1, 6, 7, 10]
SKLEARN_TEST = [8, 4, 2, 0, 9]
