"""MIT-BIH ECG loading: beat windows, PVC labels and the stratified per-site split."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from node.data import ECG_SITES, SiteData, load_all_sites, load_site
from node.data.mitbih_ecg import AFTER_R, BEFORE_R
from node.errors import DataFileMissing, MalformedDataFile

RECORDS = ["100", "102", "104", "105", "106", "108", "114", "116", "119", "121", "123", "200"]
# Per record: beats whose window fits in the recording, and PVC beats among them (counted
# from r_peaks and pvc_peaks; in these recordings no PVC is within a window of either end).
BEATS = [2271, 2187, 2227, 2572, 2027, 1762, 1879, 2411, 1987, 1862, 1517, 2600]
PVCS = [1, 4, 2, 41, 520, 17, 43, 109, 444, 1, 3, 826]


@pytest.fixture(scope="module")
def ecg_sites(data_dir: Path) -> tuple[SiteData, ...]:
    return load_all_sites("mitbih-ecg", data_dir)


def test_one_site_per_record(ecg_sites: tuple[SiteData, ...]) -> None:
    assert [s.display_name for s in ECG_SITES] == RECORDS
    assert [s.site for s in ecg_sites] == [f"record-{r}" for r in RECORDS]


def test_every_fitting_beat_is_kept_and_labelled(
    ecg_sites: tuple[SiteData, ...], data_dir: Path
) -> None:
    for site, beats, pvcs in zip(ecg_sites, BEATS, PVCS, strict=True):
        with np.load(data_dir / "mitbih-ecg" / f"{site.display_name}.npz") as record:
            r_peaks, n = record["r_peaks"], len(record["ecg_mv"])
        assert sum(1 for r in r_peaks if r >= 90 and r + 144 <= n) == beats
        assert site.n_train + site.n_test == beats
        assert int(site.train_y.sum() + site.test_y.sum()) == pvcs
        assert site.n_features == 234 == BEFORE_R + AFTER_R


def test_split_is_thirty_percent_per_class_with_a_lone_pvc_in_test(
    ecg_sites: tuple[SiteData, ...],
) -> None:
    for site, beats, pvcs in zip(ecg_sites, BEATS, PVCS, strict=True):
        test_pvcs = int(site.test_y.sum())
        expected_pvcs = 1 if pvcs == 1 else min(max(int(0.3 * pvcs + 0.5), 1), pvcs - 1)
        assert test_pvcs == expected_pvcs, site.site
        assert site.n_test - test_pvcs == int(0.3 * (beats - pvcs) + 0.5)
    record_100 = ecg_sites[0]
    assert record_100.train_y.sum() == 0 and record_100.test_y.sum() == 1


def test_windows_are_standardised_beat_by_beat(
    ecg_sites: tuple[SiteData, ...], data_dir: Path
) -> None:
    site = ecg_sites[4]
    assert np.allclose(site.train_x.mean(axis=1), 0.0, atol=1e-5)
    assert np.allclose(site.train_x.std(axis=1), 1.0, atol=1e-4)
    with np.load(data_dir / "mitbih-ecg" / "106.npz") as record:
        signal, r_peaks = record["ecg_mv"].astype(np.float64), record["r_peaks"]
    first = next(r for r in r_peaks if r >= 90)
    raw = signal[first - 90 : first + 144]
    expected = (raw - raw.mean()) / (raw.std() + 1e-6)
    beats = np.concatenate([site.train_x, site.test_x])
    assert np.isclose(beats, expected, atol=1e-5).all(axis=1).sum() == 1


def test_loading_is_deterministic(ecg_sites: tuple[SiteData, ...], data_dir: Path) -> None:
    again = load_site("mitbih-ecg", "record-119", data_dir)
    assert np.array_equal(again.test_x, ecg_sites[8].test_x)
    assert np.array_equal(again.train_y, ecg_sites[8].train_y)


def test_missing_record_names_the_file_and_the_source(tmp_path: Path) -> None:
    with pytest.raises(DataFileMissing, match=r"mitbih-ecg/123\.npz.*physionet") as caught:
        load_site("mitbih-ecg", "record-123", tmp_path)
    assert caught.value.paths == (tmp_path / "mitbih-ecg" / "123.npz",)


def _record(tmp_path: Path, **arrays: np.ndarray) -> Path:
    folder = tmp_path / "mitbih-ecg"
    folder.mkdir()
    np.savez(folder / "100.npz", **arrays)
    return tmp_path


def test_other_sampling_rates_and_stray_pvcs_are_refused(tmp_path: Path) -> None:
    signal = np.zeros(2000, dtype=np.float32)
    peaks = np.array([500, 900, 1300])
    data_dir = _record(
        tmp_path, ecg_mv=signal, fs=np.array(250), r_peaks=peaks, pvc_peaks=peaks[:1]
    )
    with pytest.raises(MalformedDataFile, match="250 Hz"):
        load_site("mitbih-ecg", "record-100", data_dir)
    shutil.rmtree(tmp_path / "mitbih-ecg")
    data_dir = _record(
        tmp_path, ecg_mv=signal, fs=np.array(360), r_peaks=peaks, pvc_peaks=np.array([700])
    )
    with pytest.raises(MalformedDataFile, match="not among the r_peaks"):
        load_site("mitbih-ecg", "record-100", data_dir)


def test_record_without_an_array_is_refused(tmp_path: Path) -> None:
    data_dir = _record(tmp_path, ecg_mv=np.zeros(10, np.float32), fs=np.array(360))
    with pytest.raises(MalformedDataFile, match=r"lacks the array\(s\) \['r_peaks', 'pvc_peaks'\]"):
        load_site("mitbih-ecg", "record-100", data_dir)
