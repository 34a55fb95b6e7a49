"""Accuracy, balanced accuracy and Harrell's C-index against hand-computed cases."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from node import metrics
from node.metrics import METRICS, accuracy, balanced_accuracy, concordance_index


def test_accuracy_counts_matches() -> None:
    assert accuracy([0, 1, 1, 0], [0, 1, 0, 0]) == 0.75


def test_balanced_accuracy_averages_the_recall_of_each_class() -> None:
    # negatives: 2 of 3 right; positives: 1 of 1 right -> (2/3 + 1) / 2.
    assert balanced_accuracy([0, 0, 0, 1], [0, 0, 1, 1]) == pytest.approx(5 / 6)


def test_balanced_accuracy_of_one_class_is_its_recall() -> None:
    assert balanced_accuracy([0, 0, 0, 0], [0, 1, 0, 0]) == 0.75
    assert balanced_accuracy([1, 1], [1, 0]) == 0.5


def test_balanced_accuracy_rejects_mismatched_or_empty_input() -> None:
    with pytest.raises(ValueError, match="one length"):
        balanced_accuracy([0, 1], [0])
    with pytest.raises(ValueError, match="non-empty"):
        balanced_accuracy([], [])


def test_c_index_perfect_and_reversed_without_censoring() -> None:
    time, event = [1.0, 2.0, 3.0], [1, 1, 1]
    assert concordance_index(event, time, [3.0, 2.0, 1.0]) == 1.0
    assert concordance_index(event, time, [1.0, 2.0, 3.0]) == 0.0


def test_c_index_with_censoring() -> None:
    # Comparable pairs: (0,1) (0,2) (0,3) from the event at t=1, (2,3) from the event at t=3;
    # patient 1 is censored and starts no pair. Only (2,3) is ranked wrongly (1.5 < 2).
    time, event = [1.0, 2.0, 3.0, 4.0], [1, 0, 1, 0]
    assert concordance_index(event, time, [4.0, 1.0, 3.0, 2.0]) == 1.0
    assert concordance_index(event, time, [4.0, 1.0, 1.5, 2.0]) == 0.75


def test_c_index_censored_at_the_time_of_a_death_outlives_it() -> None:
    # Pairs: (0,1) censored at the same time as 0's death, discordant; (0,2) concordant.
    assert concordance_index([1, 0, 1], [2.0, 2.0, 5.0], [1.0, 2.0, 0.0]) == 0.5


def test_c_index_skips_deaths_at_the_same_time() -> None:
    # (0,1) died at the same time: not comparable. (0,2) and (1,2) are both concordant.
    assert concordance_index([1, 1, 0], [2.0, 2.0, 5.0], [1.0, 2.0, 0.0]) == 1.0


def test_c_index_counts_tied_risks_as_half() -> None:
    assert concordance_index([1, 1], [1.0, 2.0], [5.0, 5.0]) == 0.5
    # Pairs (0,1) tied, (0,2) concordant, (1,2) concordant -> (2 + 0.5) / 3.
    assert concordance_index([1, 1, 1], [1.0, 2.0, 3.0], [2.0, 2.0, 1.0]) == pytest.approx(2.5 / 3)


def test_c_index_without_comparable_pairs_is_nan() -> None:
    assert math.isnan(concordance_index([0, 0, 0], [1.0, 2.0, 3.0], [1.0, 2.0, 3.0]))
    # The only event is the last to leave: nobody is known to outlive it.
    assert math.isnan(concordance_index([0, 0, 1], [1.0, 2.0, 3.0], [1.0, 2.0, 3.0]))


def _c_index_by_pairs(event: np.ndarray, time: np.ndarray, risk: np.ndarray) -> float:
    """Harrell's C-index pair by pair, straight from its definition."""
    comparable = score = 0.0
    for i, j in itertools.permutations(range(len(time)), 2):
        if not event[i]:
            continue
        if time[i] < time[j] or (time[i] == time[j] and not event[j]):
            comparable += 1
            score += 1.0 if risk[i] > risk[j] else 0.5 if risk[i] == risk[j] else 0.0
    return score / comparable


def test_c_index_matches_the_pairwise_definition_across_blocks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(metrics, "_PAIR_BLOCK", 7)  # several row blocks
    rng = np.random.default_rng(3)
    time = rng.integers(1, 15, 60).astype(float)  # many tied times
    event = rng.random(60) < 0.4
    risk = rng.integers(0, 6, 60).astype(float)  # many tied risks
    assert concordance_index(event, time, risk) == pytest.approx(
        _c_index_by_pairs(event, time, risk), abs=1e-12
    )


def test_metric_table_scores_raw_outputs() -> None:
    logits = np.array([2.0, -1.0, 0.5, -3.0])
    assert METRICS["accuracy"](logits, np.array([1.0, 0.0, 0.0, 0.0])) == 0.75
    assert METRICS["balanced_accuracy"](logits, np.array([1.0, 0.0, 0.0, 0.0])) == pytest.approx(
        (1 + 2 / 3) / 2
    )
    outcomes = np.array([[1.0, 1.0], [1.0, 2.0], [0.0, 3.0]])
    assert METRICS["c_index"](np.array([3.0, 2.0, 1.0]), outcomes) == 1.0
    with pytest.raises(ValueError, match="event, time"):
        METRICS["c_index"](logits, np.array([1.0, 0.0, 0.0, 0.0]))
