"""Federated standardisation: features scaled by the statistics of every site's training rows.

FLamby's protocol standardises each site with its own training rows. That hides differences
between sites that a shared model could use, and the pooled model, standardised with all
sites' rows, scores far higher on Fed-Heart-Disease (docs/learning.md). With
``federation.standardise = "federation"`` the sites agree on pooled statistics without
moving rows: in round 1 each site sends, instead of a model update, the per-feature mean and
mean square of its raw training features (:func:`site_moments`, two vectors). The round's
sample-weighted averaging (cluster, then global: exactly the pooled moments) puts them into
the global blob as the tensors ``data/mean`` and ``data/mean_square``, which every member
attests with the model. From round 2 on every site trains and evaluates on
``(raw - mean) / (std + 1e-9)`` with ``std = sqrt(mean_square - mean^2)``
(:func:`federation_standardiser`, population variance) on train and test rows alike.

What a site reveals is two numbers per feature, far less than one model update. A feature
whose variance is below ``1e-6 * mean_square`` (constant to float32 precision) maps to 0.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

from node.data import SiteData
from node.data.types import FloatArray
from node.errors import InvalidWeights
from node.weights import WeightArray, Weights

DATA_PREFIX = "data/"
MEAN = "data/mean"
MEAN_SQUARE = "data/mean_square"
STD_EPSILON = 1e-9
CONSTANT_RELATIVE_VARIANCE = 1e-6


def raw_features(x: FloatArray, site: SiteData) -> np.ndarray:
    """``x`` of ``site`` undone from the loader's standardisation (float64)."""
    wide = x.astype(np.float64)
    if site.feature_mean is None or site.feature_std is None:
        return wide
    return wide * (site.feature_std.astype(np.float64) + STD_EPSILON) + site.feature_mean


def site_moments(site: SiteData) -> Weights:
    """The site's contribution to the pooled statistics: per-feature mean and mean square of
    its raw training features (float32)."""
    raw = raw_features(site.train_x, site)
    return {
        MEAN: raw.mean(axis=0).astype(np.float32),
        MEAN_SQUARE: (raw * raw).mean(axis=0).astype(np.float32),
    }


def federation_standardiser(
    tensors: Mapping[str, WeightArray], n_features: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """``(mean, std)`` (float64) from a global blob's ``data/`` tensors, or None if it has none.

    Raises :class:`~node.errors.InvalidWeights` if they are not two vectors of
    ``n_features`` values with a non-negative mean square.
    """
    if MEAN not in tensors and MEAN_SQUARE not in tensors:
        return None
    if MEAN not in tensors or MEAN_SQUARE not in tensors:
        raise InvalidWeights(f"the global model needs both {MEAN} and {MEAN_SQUARE}")
    mean = np.asarray(tensors[MEAN], dtype=np.float64)
    square = np.asarray(tensors[MEAN_SQUARE], dtype=np.float64)
    if mean.shape != (n_features,) or square.shape != (n_features,):
        raise InvalidWeights(
            f"federation statistics have shapes {mean.shape} and {square.shape}; "
            f"this site has {n_features} features"
        )
    if (square < 0).any():
        raise InvalidWeights("federation statistics: a mean square is negative")
    variance = np.maximum(square - mean * mean, 0.0)
    constant = variance <= CONSTANT_RELATIVE_VARIANCE * square
    std = np.where(constant, np.inf, np.sqrt(variance))
    return mean, std


def restandardise(site: SiteData, mean: np.ndarray, std: np.ndarray) -> SiteData:
    """``site`` with train and test features scaled by the federation's ``(mean, std)``."""

    def scaled(x: FloatArray) -> FloatArray:
        scaled: FloatArray = ((raw_features(x, site) - mean) / (std + STD_EPSILON)).astype(
            np.float32
        )
        return scaled

    return dataclasses.replace(
        site,
        train_x=scaled(site.train_x),
        test_x=scaled(site.test_x),
        feature_mean=mean.astype(np.float32),
        # a constant feature (std inf above) is its mean again when undone
        feature_std=np.where(np.isfinite(std), std, 0.0).astype(np.float32),
    )


def data_part(tensors: Mapping[str, WeightArray]) -> Weights:
    """The ``data/`` tensors of a blob."""
    return {n: tensors[n] for n in sorted(tensors) if n.startswith(DATA_PREFIX)}


def without_data(tensors: Mapping[str, WeightArray]) -> Weights:
    """A blob's tensors other than ``data/``."""
    return {n: tensors[n] for n in sorted(tensors) if not n.startswith(DATA_PREFIX)}
