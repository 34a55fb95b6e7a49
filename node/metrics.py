"""Scores of model outputs against labels: accuracy, balanced accuracy, Harrell's C-index.

Pure numpy. ``METRICS`` maps each metric name a :class:`~node.data.types.TaskSpec` may use to
a function of ``(outputs, labels)``, where outputs are the model's raw outputs (logits for
binary tasks, log-risk scores for survival) and labels are as in
:class:`~node.data.types.SiteData`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

_PAIR_BLOCK = 1024  # rows of the pair matrix handled at once, to bound memory


def accuracy(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> float:
    """Return the fraction of predictions equal to the labels."""
    truth, pred = _binary_pair(y_true, y_pred)
    return float(np.mean(truth == pred))


def balanced_accuracy(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> float:
    """Return the mean recall over the classes present in ``y_true``.

    With both classes present this is ``(sensitivity + specificity) / 2``. When ``y_true``
    holds a single class (a site whose test split has no positive, say), it is that class's
    recall, i.e. the plain accuracy: a class that is absent has no recall to average, which is
    also scikit-learn's convention.
    """
    truth, pred = _binary_pair(y_true, y_pred)
    return float(np.mean([_recall(truth, pred, bool(level)) for level in np.unique(truth)]))


def _recall(truth: npt.NDArray[np.bool_], pred: npt.NDArray[np.bool_], level: bool) -> float:
    members = truth == level
    return float(np.mean(pred[members] == level))


def _binary_pair(
    y_true: npt.ArrayLike, y_pred: npt.ArrayLike
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    truth, pred = np.asarray(y_true), np.asarray(y_pred)
    if truth.ndim != 1 or truth.shape != pred.shape or len(truth) == 0:
        raise ValueError(
            f"labels and predictions must be non-empty vectors of one length, got shapes "
            f"{truth.shape} and {pred.shape}"
        )
    return truth.astype(bool), pred.astype(bool)


def concordance_index(event: npt.ArrayLike, time: npt.ArrayLike, risk: npt.ArrayLike) -> float:
    """Return Harrell's C-index of ``risk`` scores (higher = earlier event expected).

    A pair of patients ``(i, j)`` is comparable when ``i`` had the event (``event[i] = 1``)
    and ``j`` was still at risk afterwards: ``time[i] < time[j]``, or ``time[i] == time[j]``
    with ``j`` censored (a patient censored at the time of another's death is counted as
    outliving it). It is concordant when ``risk[i] > risk[j]`` and counts 1/2 when the risks
    are equal. Two events at the same time, or two censored patients, are not comparable. The
    result is ``(concordant + ties / 2) / comparable``, the convention of Harrell et al. (1996)
    and of lifelines' ``concordance_index`` (given ``-risk``). NaN when no pair is comparable
    (e.g. no events).
    """
    e = np.asarray(event, dtype=np.float64)
    t = np.asarray(time, dtype=np.float64)
    r = np.asarray(risk, dtype=np.float64)
    if not (e.ndim == t.ndim == r.ndim == 1 and len(e) == len(t) == len(r)):
        raise ValueError(
            f"event, time and risk must be vectors of one length, got {e.shape}, {t.shape}, "
            f"{r.shape}"
        )
    if not (np.isfinite(t).all() and np.isfinite(r).all()):
        raise ValueError("times and risk scores must be finite")
    had_event = e > 0.5
    comparable = concordant = tied = 0.0
    for start in range(0, len(t), _PAIR_BLOCK):
        rows = slice(start, start + _PAIR_BLOCK)
        ti, ri = t[rows, None], r[rows, None]
        outlived = (ti < t[None, :]) | ((ti == t[None, :]) & ~had_event[None, :])
        pairs = had_event[rows, None] & outlived
        comparable += float(pairs.sum())
        concordant += float((pairs & (ri > r[None, :])).sum())
        tied += float((pairs & (ri == r[None, :])).sum())
    if comparable == 0:
        return math.nan
    return (concordant + tied / 2) / comparable


def _accuracy_of_logits(outputs: npt.ArrayLike, labels: npt.ArrayLike) -> float:
    return accuracy(labels, np.asarray(outputs, dtype=np.float64) > 0)


def _balanced_accuracy_of_logits(outputs: npt.ArrayLike, labels: npt.ArrayLike) -> float:
    return balanced_accuracy(labels, np.asarray(outputs, dtype=np.float64) > 0)


def _c_index_of_risks(outputs: npt.ArrayLike, labels: npt.ArrayLike) -> float:
    outcome = np.asarray(labels)
    if outcome.ndim != 2 or outcome.shape[1] != 2:
        raise ValueError(f"survival labels must be (event, time) rows, got shape {outcome.shape}")
    return concordance_index(outcome[:, 0], outcome[:, 1], outputs)


METRICS: dict[str, Callable[[npt.ArrayLike, npt.ArrayLike], float]] = {
    "accuracy": _accuracy_of_logits,
    "balanced_accuracy": _balanced_accuracy_of_logits,
    "c_index": _c_index_of_risks,
}
"""Metric name -> function of ``(model outputs, labels)``; logits are thresholded at 0."""
