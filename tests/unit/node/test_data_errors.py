"""Data directory resolution and the errors of the data loaders."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from node.data import load_site, resolve_data_dir, verify_checksums
from node.data.paths import PROJECT_ROOT
from node.errors import (
    ChecksumMismatch,
    DataError,
    DataFileMissing,
    MalformedDataFile,
    UnknownDataset,
    UnknownSite,
)

URL = "https://archive.ics.uci.edu/static/public/45/heart+disease.zip"


def test_flag_wins_over_environment(tmp_path: Path) -> None:
    env = {"MEDSWARM_DATA": str(tmp_path / "env")}
    assert resolve_data_dir(str(tmp_path / "flag"), env) == tmp_path / "flag"
    assert resolve_data_dir(None, env) == tmp_path / "env"
    assert resolve_data_dir("", env) == tmp_path / "env"


def test_default_is_shared_data_beside_the_project() -> None:
    expected = (PROJECT_ROOT.parent / "shared" / "data").resolve()
    assert resolve_data_dir(None, {}).resolve() == expected
    assert resolve_data_dir(None, {"MEDSWARM_DATA": ""}).resolve() == expected


def test_missing_file_names_the_file_the_url_and_the_setting(tmp_path: Path) -> None:
    with pytest.raises(DataFileMissing) as caught:
        load_site("heart-disease", "va", tmp_path)
    message = str(caught.value)
    expected_path = tmp_path / "heart-disease" / "processed.va.data"
    assert str(expected_path) in message
    assert URL in message
    assert "MEDSWARM_DATA" in message and "--data-dir" in message
    assert "4249d03ca7711e84f4444768c9426170" in message
    assert caught.value.paths == (expected_path,)
    assert isinstance(caught.value, FileNotFoundError)
    assert isinstance(caught.value, DataError)


@pytest.mark.parametrize("site", ["basel", 4, -1, True])
def test_unknown_site_lists_the_valid_ones(data_dir: Path, site: object) -> None:
    with pytest.raises(UnknownSite, match=r"cleveland.*hungarian.*switzerland.*va"):
        load_site("heart-disease", site, data_dir)  # type: ignore[arg-type]


def test_unknown_dataset_lists_the_known_ones(data_dir: Path) -> None:
    with pytest.raises(UnknownDataset, match="known data sets: csv, heart-disease, mitbih-ecg"):
        load_site("heart", 0, data_dir)


def test_checksums_of_the_shared_files_match(data_dir: Path) -> None:
    assert len(verify_checksums(data_dir)) == 4
    assert len(verify_checksums(data_dir, "tcga-brca")) == 3  # brca.csv counted once
    assert len(verify_checksums(data_dir, "mitbih-ecg")) == 12


def _copy_heart(data_dir: Path, tmp_path: Path) -> Path:
    shutil.copytree(data_dir / "heart-disease", tmp_path / "heart-disease")
    for path in (tmp_path / "heart-disease").iterdir():
        path.chmod(0o644)
    return tmp_path / "heart-disease"


def test_checksum_mismatch_names_the_file(data_dir: Path, tmp_path: Path) -> None:
    folder = _copy_heart(data_dir, tmp_path)
    with (folder / "processed.hungarian.data").open("a") as stream:
        stream.write("\n")
    with pytest.raises(ChecksumMismatch, match=r"processed\.hungarian\.data has MD5"):
        verify_checksums(tmp_path)


def test_malformed_row_names_file_and_line(data_dir: Path, tmp_path: Path) -> None:
    folder = _copy_heart(data_dir, tmp_path)
    (folder / "processed.va.data").write_text("63,1,4,140,260,0,1,112,1,3,2,?,?,2\n1,2,3\n")
    with pytest.raises(MalformedDataFile, match=r"processed\.va\.data, line 2: expected 14"):
        load_site("heart-disease", "va", tmp_path)
