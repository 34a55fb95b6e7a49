"""Federated standardisation against statistics computed directly from the pooled raw rows."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from node.aggregation import fedavg
from node.data import SiteData
from node.errors import InvalidWeights
from node.standardise import (
    MEAN,
    MEAN_SQUARE,
    federation_standardiser,
    raw_features,
    restandardise,
    site_moments,
)


def pooled_standardised(sites: tuple[SiteData, ...]) -> tuple[SiteData, ...]:
    """Every site standardised as the statistics round makes it, with one flat average."""
    moments = fedavg([(site_moments(site), site.n_train) for site in sites])
    standardiser = federation_standardiser(moments, sites[0].n_features)
    assert standardiser is not None
    return tuple(restandardise(site, *standardiser) for site in sites)


def test_raw_features_undo_the_loaders_standardisation(heart_sites: tuple[SiteData, ...]) -> None:
    cleveland = heart_sites[0]
    raw = raw_features(cleveland.train_x, cleveland)
    # age is the first column: Cleveland's patients are 29 to 77 years old
    assert raw[:, 0].min() > 28.9 and raw[:, 0].max() < 77.1
    np.testing.assert_allclose(raw.mean(axis=0), cleveland.feature_mean, rtol=1e-5, atol=1e-4)


def test_pooled_standardisation_equals_the_statistics_of_all_raw_rows(
    heart_sites: tuple[SiteData, ...],
) -> None:
    raw = np.concatenate([raw_features(s.train_x, s) for s in heart_sites])
    mean, std = raw.mean(axis=0), raw.std(axis=0)  # population std, as documented
    federated = pooled_standardised(heart_sites)
    for before, after in zip(heart_sites, federated, strict=True):
        expected = (raw_features(before.test_x, before) - mean) / (std + 1e-9)
        np.testing.assert_allclose(after.test_x, expected, atol=2e-4)
        expected_train = (raw_features(before.train_x, before) - mean) / (std + 1e-9)
        np.testing.assert_allclose(after.train_x, expected_train, atol=2e-4)
    pooled_train = np.concatenate([s.train_x for s in federated])
    np.testing.assert_allclose(pooled_train.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(pooled_train.std(axis=0), 1.0, atol=1e-4)


def test_moments_averaged_in_two_tiers_equal_the_flat_average(
    heart_sites: tuple[SiteData, ...],
) -> None:
    moments = [(site_moments(s), s.n_train) for s in heart_sites]
    flat = fedavg(moments)
    tiers = [fedavg(moments[:2]), fedavg(moments[2:])]
    two_tier = fedavg(
        [(tiers[0], moments[0][1] + moments[1][1]), (tiers[1], moments[2][1] + moments[3][1])]
    )
    for name in (MEAN, MEAN_SQUARE):
        np.testing.assert_allclose(two_tier[name], flat[name], rtol=1e-6)


def test_restandardised_site_can_be_undone_again(heart_sites: tuple[SiteData, ...]) -> None:
    site = heart_sites[1]
    federated = pooled_standardised(heart_sites)[1]
    np.testing.assert_allclose(
        raw_features(federated.train_x, federated),
        raw_features(site.train_x, site),
        rtol=1e-4,
        atol=1e-3,
    )


def constant_site(name: str, value: float) -> SiteData:
    x = np.array([[value, 1.0], [value, 3.0]], dtype=np.float32)
    y = np.array([0.0, 1.0], dtype=np.float32)
    return SiteData("csv", name, name, x, y, x.copy(), y.copy())


def test_a_feature_constant_at_every_site_maps_to_zero() -> None:
    sites = (constant_site("a", 7.25), constant_site("b", 7.25))
    for site in pooled_standardised(sites):
        assert (site.train_x[:, 0] == 0).all() and (site.test_x[:, 0] == 0).all()
        assert site.train_x[:, 1].tolist() == [-1.0, 1.0]
        # and it can be undone: the constant comes back
        np.testing.assert_allclose(raw_features(site.train_x, site)[:, 0], 7.25)


def test_a_feature_constant_at_one_site_only_is_scaled_by_the_others() -> None:
    # Switzerland's cholesterol is 0 in every row; pooled with a varying site it is informative
    varying = np.array([[2.0, 1.0], [4.0, 3.0]], dtype=np.float32)
    other = dataclasses.replace(constant_site("b", 0.0), train_x=varying, test_x=varying.copy())
    sites = (constant_site("a", 0.0), other)
    first = pooled_standardised(sites)[0]
    # pooled mean 1.5, population std sqrt(mean(0,0,4,16) - 1.5^2) = sqrt(2.75)
    assert first.train_x[0, 0] == pytest.approx(-1.5 / np.sqrt(2.75), rel=1e-6)


@pytest.mark.parametrize(
    ("tensors", "message"),
    [
        ({MEAN: np.zeros(2, np.float32)}, "needs both"),
        ({MEAN: np.zeros(3, np.float32), MEAN_SQUARE: np.ones(3, np.float32)}, "2 features"),
        ({MEAN: np.zeros(2, np.float32), MEAN_SQUARE: -np.ones(2, np.float32)}, "negative"),
    ],
)
def test_malformed_statistics_are_refused(tensors: dict[str, np.ndarray], message: str) -> None:
    with pytest.raises(InvalidWeights, match=message):
        federation_standardiser(tensors, 2)


def test_no_statistics_means_the_loaders_own() -> None:
    assert federation_standardiser({"linear.weight": np.zeros((1, 2), np.float32)}, 2) is None
    site = constant_site("a", 1.0)
    mean, std = np.zeros(2), np.ones(2)
    assert restandardise(site, mean, std).train_x.tolist() == site.train_x.tolist()
