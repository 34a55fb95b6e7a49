"""Fed-Heart-Disease loading: FLamby's row counts, splits, features and standardisation."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from node.data import HEART_SITES, SiteData, dataset_sites, load_pooled, load_site
from node.data.heart_disease import FEATURE_NAMES, encode, read_table

SITE_NAMES = ["cleveland", "hungarian", "switzerland", "va"]
ROWS_AFTER_CLEANING = {"cleveland": 303, "hungarian": 261, "switzerland": 46, "va": 130}
TRAIN_TEST = {
    "cleveland": (199, 104),
    "hungarian": (172, 89),
    "switzerland": (30, 16),
    "va": (85, 45),
}

# SHA-256 of train_x, train_y, test_x, test_y (little-endian float32, concatenated) as produced
# by FLamby's own HeartDiseaseRaw/FedHeartDisease code (pandas 3.0.6, scikit-learn 1.9.1,
# torch 2.13) on the same files: an independent check that the preprocessing is identical.
FLAMBY_DIGESTS = {
    "cleveland": "7c30b9441ff5bf5546953fd21e0e9df0f17d494f1ba72604ce1cc0043871b2de",
    "hungarian": "6c6fd60e1bcee4de0c3fccc059f5594fff8ff24ca335002b0bd4684bb6d19e5d",
    "switzerland": "95a2c4f728b55fe2f132d325f3e6183fc39427470a88c1d9789a2cbe3c9c61ca",
    "va": "ad65dc4c2ddf35e63b22abbd67b73c2e9aa76d089486eaa861c1145391a09bb4",
}


def test_sites_are_in_flamby_order_with_display_names() -> None:
    assert dataset_sites("heart-disease") == SITE_NAMES
    assert [s.display_name for s in HEART_SITES] == [
        "Cleveland",
        "Hungary",
        "Switzerland",
        "VA Long Beach",
    ]


@pytest.mark.parametrize("site", SITE_NAMES)
def test_rows_left_after_dropping_incomplete_rows(data_dir: Path, site: str) -> None:
    path = data_dir / "heart-disease" / f"processed.{site}.data"
    features, labels = encode(read_table(path), path)
    assert features.shape == (ROWS_AFTER_CLEANING[site], 13)
    assert labels.shape == (ROWS_AFTER_CLEANING[site],)


def test_split_sizes_and_feature_count(heart_sites: tuple[SiteData, ...]) -> None:
    for site in heart_sites:
        assert (site.n_train, site.n_test) == TRAIN_TEST[site.site]
        assert site.n_features == 13 == len(FEATURE_NAMES)
        assert site.train_y.shape == (site.n_train,)
        for array in (site.train_x, site.train_y, site.test_x, site.test_y):
            assert array.dtype == np.float32
            assert not array.flags.writeable


def test_labels_are_binary_num_greater_than_zero(heart_sites: tuple[SiteData, ...]) -> None:
    for site in heart_sites:
        labels = np.concatenate([site.train_y, site.test_y])
        assert set(np.unique(labels).tolist()) <= {0.0, 1.0}
    # Cleveland: 139 of 303 patients have num > 0 (UCI documentation: 164 without disease).
    cleveland = heart_sites[0]
    assert cleveland.train_y.sum() + cleveland.test_y.sum() == 139


def test_each_site_is_standardised_with_its_own_training_statistics(
    heart_sites: tuple[SiteData, ...],
) -> None:
    for site in heart_sites:
        mean = site.train_x.astype(np.float64).mean(axis=0)
        std = site.train_x.astype(np.float64).std(axis=0, ddof=1)
        constant = std < 1e-6
        np.testing.assert_allclose(mean, 0.0, atol=1e-6)
        np.testing.assert_allclose(std[~constant], 1.0, atol=1e-5)
        if site.site == "switzerland":
            # Every Swiss cholesterol value is recorded as 0: the column standardises to 0.
            assert constant.tolist() == [name == "chol" for name in FEATURE_NAMES]
            assert not site.test_x[:, FEATURE_NAMES.index("chol")].any()
        else:
            assert not constant.any()


def test_one_hot_columns_hold_zero_or_one_before_standardisation(data_dir: Path) -> None:
    path = data_dir / "heart-disease" / "processed.cleveland.data"
    features, _ = encode(read_table(path), path)
    one_hot = features[:, 8:]
    assert set(np.unique(one_hot).tolist()) == {0.0, 1.0}
    # cp=1 (typical angina) rows have all three cp columns at 0; the first row has cp=1.
    assert features[0, 8:11].tolist() == [0.0, 0.0, 0.0]
    assert features[0, :3].tolist() == [63.0, 1.0, 145.0]  # age, sex, trestbps


@pytest.mark.parametrize("site", SITE_NAMES)
def test_arrays_match_flamby_bit_for_bit(heart_sites: tuple[SiteData, ...], site: str) -> None:
    data = heart_sites[SITE_NAMES.index(site)]
    digest = hashlib.sha256()
    for array in (data.train_x, data.train_y, data.test_x, data.test_y):
        digest.update(np.ascontiguousarray(array, dtype="<f4").tobytes())
    assert digest.hexdigest() == FLAMBY_DIGESTS[site]


def test_load_site_by_index_equals_by_name(data_dir: Path) -> None:
    by_index = load_site("heart-disease", 3, data_dir)
    by_name = load_site("heart-disease", "va", data_dir)
    assert by_index.site == "va" and by_index.display_name == "VA Long Beach"
    np.testing.assert_array_equal(by_index.test_x, by_name.test_x)


def test_pooled_view_uses_one_set_of_statistics(data_dir: Path) -> None:
    pooled = load_pooled("heart-disease", data_dir)
    assert [s.n_train for s in pooled] == [199, 172, 30, 85]
    train = np.concatenate([s.train_x for s in pooled]).astype(np.float64)
    np.testing.assert_allclose(train.mean(axis=0), 0.0, atol=1e-6)
    np.testing.assert_allclose(train.std(axis=0, ddof=1), 1.0, atol=1e-5)
