"""Fed-TCGA-BRCA loading: FLamby's regions, split sizes, features and outcome labels."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from node.data import SiteData, dataset_sites, load_all_sites, load_pooled, load_site
from node.data.tcga_brca import tissue_source_site
from node.errors import DataFileMissing, MalformedDataFile

REGIONS = ["northeast", "south", "west", "midwest", "europe", "canada"]
TRAIN_TEST = [(248, 63), (156, 40), (164, 42), (129, 33), (129, 33), (40, 11)]
# Deaths per region in the train / test parts, counted from the files.
EVENTS = [(45, 14), (35, 4), (14, 8), (16, 3), (7, 2), (2, 1)]


@pytest.fixture(scope="module")
def tcga_sites(data_dir: Path) -> tuple[SiteData, ...]:
    return load_all_sites("tcga-brca", data_dir)


def test_regions_in_flamby_order(tcga_sites: tuple[SiteData, ...]) -> None:
    assert dataset_sites("tcga-brca") == REGIONS
    assert [s.site for s in tcga_sites] == REGIONS


def test_split_sizes_events_and_features(tcga_sites: tuple[SiteData, ...]) -> None:
    for site, sizes, events in zip(tcga_sites, TRAIN_TEST, EVENTS, strict=True):
        assert (site.n_train, site.n_test) == sizes
        assert (int(site.train_y[:, 0].sum()), int(site.test_y[:, 0].sum())) == events
        assert site.n_features == 39 == len(site.feature_names)
        assert site.train_y.shape == (site.n_train, 2)
        assert set(np.unique(site.train_y[:, 0])) <= {0.0, 1.0}
        assert (site.train_y[:, 1] >= 0).all()
    assert sum(s.n_train + s.n_test for s in tcga_sites) == 1088


def test_first_patient_is_read_column_for_column(data_dir: Path) -> None:
    # brca.csv's first row, TCGA-E2-A9RU (site E2, Northeast, test fold): age 90, then 38
    # one-hot columns, E = 0, T = 538 days. Age is given in decades.
    site = load_site("tcga-brca", "northeast", data_dir)
    header = (data_dir / "tcga-brca" / "brca.csv").read_text().splitlines()[1].split(",")
    assert header[0] == "TCGA-E2-A9RU"
    row = np.asarray(header[1:], dtype=np.float32)
    expected = np.concatenate([[9.0], row[1:39]])
    matches = np.flatnonzero((site.test_x == expected).all(axis=1))
    assert len(matches) == 1
    assert site.test_y[matches[0]].tolist() == [0.0, 538.0]
    assert site.feature_names[0] == "age_at_index"


def test_loading_is_deterministic_and_pooled_equals_per_region(
    tcga_sites: tuple[SiteData, ...], data_dir: Path
) -> None:
    for again in (load_all_sites("tcga-brca", data_dir), load_pooled("tcga-brca", data_dir)):
        for first, second in zip(tcga_sites, again, strict=True):
            assert np.array_equal(first.train_x, second.train_x)
            assert np.array_equal(first.test_y, second.test_y)


def test_tissue_source_site_is_the_second_barcode_field() -> None:
    assert tissue_source_site("TCGA-E2-A9RU") == "E2"
    with pytest.raises(ValueError, match="TCGA barcode"):
        tissue_source_site("E2-A9RU")


def _copy(data_dir: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "tcga-brca"
    shutil.copytree(data_dir / "tcga-brca", folder)
    for path in folder.iterdir():
        path.chmod(0o644)
    return folder


def test_missing_split_file_is_named(data_dir: Path, tmp_path: Path) -> None:
    folder = _copy(data_dir, tmp_path)
    (folder / "train_test_split.csv").unlink()
    with pytest.raises(DataFileMissing, match=r"train_test_split\.csv") as caught:
        load_site("tcga-brca", "south", tmp_path)
    assert caught.value.paths == (folder / "train_test_split.csv",)
    assert "owkin/FLamby" in str(caught.value)


def test_split_that_disagrees_with_the_barcode_region_is_an_error(
    data_dir: Path, tmp_path: Path
) -> None:
    folder = _copy(data_dir, tmp_path)
    split = folder / "train_test_split.csv"
    lines = split.read_text().splitlines()
    assert lines[1] == "TCGA-AO-A1KO,train,train_0"
    lines[1] = "TCGA-AO-A1KO,train,train_1"
    split.write_text("\n".join(lines) + "\n")
    with pytest.raises(MalformedDataFile, match=r"TCGA-AO-A1KO is in region 0.*'train_1'"):
        load_site("tcga-brca", 0, tmp_path)


def test_other_region_sizes_are_refused(data_dir: Path, tmp_path: Path) -> None:
    folder = _copy(data_dir, tmp_path)
    split = folder / "train_test_split.csv"
    lines = split.read_text().splitlines()
    split.write_text("\n".join(line for line in lines if line != lines[1]) + "\n")
    with pytest.raises(MalformedDataFile, match=r"\(247, 63\).*not FLamby's"):
        load_site("tcga-brca", 0, tmp_path)
