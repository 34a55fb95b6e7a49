"""MIT-BIH ECG: premature ventricular contraction (PVC) beats of 12 patients, one per site.

Each site is one 30-minute recording (``<record>.npz``: lead MLII in millivolts at 360 Hz,
the sample index of every beat's R peak, and the R peaks of the PVC beats). Per site:

1. one sample per beat: the window from 0.25 s before to 0.4 s after its R peak (90 + 144 =
   234 samples at 360 Hz, the R peak at index 90), which holds the QRS complex, the T wave and
   part of the preceding interval; beats too close to either end of the recording for a whole
   window are left out;
2. each window is standardised on its own: ``(w - mean(w)) / (std(w) + 1e-6)``, so amplitude
   and baseline differences between patients and electrodes do not matter and no statistics
   are shared between beats or sites;
3. label 1 for a PVC beat (its R peak is in ``pvc_peaks``), 0 for every other beat;
4. a stratified 70/30 train/test split per site with seed 0
   (:func:`node.data.splits.per_class_split`): each class is shuffled and 30% of it, rounded,
   goes to test, at least one beat of every class that has two or more; a lone PVC beat goes
   to the test split. Beats keep their time order inside each part.

Train and test beats of a site come from the same recording, so scores measure how well a
model recognises a patient's beats it has seen others of, not a new patient.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import numpy.typing as npt

from node.data.splits import per_class_split
from node.data.types import DatasetSpec, FloatArray, SiteData, SiteInfo, TaskSpec
from node.errors import MalformedDataFile

NAME = "mitbih-ecg"
DOWNLOAD_URL = "https://physionet.org/content/mitdb/1.0.0/"

SAMPLING_HZ = 360
BEFORE_R = 90  # samples (0.25 s) before the R peak
AFTER_R = 144  # samples (0.4 s) from the R peak on
WINDOW = BEFORE_R + AFTER_R
STD_EPSILON = 1e-6
TEST_FRACTION = 0.3
SPLIT_SEED = 0

_RECORDS = (
    ("100", "2a4732e222ddc488bef9ad8dd0a10085"),
    ("102", "6ea7f65f6b83523d38140873cc9c8d6a"),
    ("104", "e9a4eaa49521f757113427b60f6a1cf4"),
    ("105", "c6ed88d69329827a73e750fad6629840"),
    ("106", "007bbb2a94363accddbf338818dfdd8e"),
    ("108", "3ea309847d63870bfe537d589b75d2b3"),
    ("114", "feb9e43dd00dbff56e77779c4b5020b7"),
    ("116", "8de7b08ed359cf234ee9f2462a4b1563"),
    ("119", "b435717453c61a1642630088fede911d"),
    ("121", "c8b53e5af8c62bf3463470b98a986740"),
    ("123", "c8a06c7244ce531f9e5bfbacdc89e388"),
    ("200", "48a3a27bcd07660dfb4915d1d8cf28da"),
)
ECG_SITES: tuple[SiteInfo, ...] = tuple(
    SiteInfo(f"record-{record}", record, f"{record}.npz", md5) for record, md5 in _RECORDS
)
"""The twelve recordings (one patient each) in record order."""

_KEYS = ("ecg_mv", "fs", "r_peaks", "pvc_peaks")


def read_record(
    path: Path,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Return ``(signal in mV, R peak indices, PVC R peak indices)`` of one ``.npz`` record."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [key for key in _KEYS if key not in archive.files]
            if missing:
                raise MalformedDataFile(
                    f"{path} lacks the array(s) {missing}; a record holds {list(_KEYS)}"
                )
            signal = np.asarray(archive["ecg_mv"], dtype=np.float32)
            fs = archive["fs"]
            r_peaks = np.asarray(archive["r_peaks"])
            pvc_peaks = np.asarray(archive["pvc_peaks"])
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise MalformedDataFile(f"{path} is not a readable .npz record: {exc}") from None
    if fs.shape != () or int(fs) != SAMPLING_HZ:
        raise MalformedDataFile(
            f"{path}: sampled at {fs} Hz; beat windows are defined at {SAMPLING_HZ} Hz, so "
            "resample the recording first"
        )
    for name, array in (("ecg_mv", signal), ("r_peaks", r_peaks), ("pvc_peaks", pvc_peaks)):
        if array.ndim != 1:
            raise MalformedDataFile(f"{path}: {name} must be one-dimensional")
    if not all(np.issubdtype(a.dtype, np.integer) for a in (r_peaks, pvc_peaks)):
        raise MalformedDataFile(f"{path}: r_peaks and pvc_peaks must hold sample indices")
    if not np.isin(pvc_peaks, r_peaks).all():
        raise MalformedDataFile(f"{path}: some pvc_peaks are not among the r_peaks")
    if not np.isfinite(signal).all():
        raise MalformedDataFile(f"{path}: ecg_mv holds NaN or infinite values")
    return signal, r_peaks.astype(np.int64), pvc_peaks.astype(np.int64)


def beat_windows(
    signal: npt.NDArray[np.float32], r_peaks: npt.NDArray[np.int64]
) -> tuple[FloatArray, npt.NDArray[np.int64]]:
    """Return the standardised window of every beat that fits, and the R peaks kept."""
    kept = r_peaks[(r_peaks >= BEFORE_R) & (r_peaks + AFTER_R <= len(signal))]
    offsets = np.arange(-BEFORE_R, AFTER_R, dtype=np.int64)
    windows = signal[kept[:, None] + offsets[None, :]].astype(np.float64)
    mean = windows.mean(axis=1, keepdims=True)
    std = windows.std(axis=1, keepdims=True)
    return ((windows - mean) / (std + STD_EPSILON)).astype(np.float32), kept


def load_site(site: SiteInfo, dataset_dir: Path) -> SiteData:
    """Load one recording as beat windows, labels and its stratified train/test split."""
    signal, r_peaks, pvc_peaks = read_record(dataset_dir / site.filename)
    windows, kept = beat_windows(signal, r_peaks)
    labels = np.isin(kept, pvc_peaks).astype(np.float32)
    train, test = per_class_split(labels, TEST_FRACTION, SPLIT_SEED)
    if len(train) == 0:
        raise MalformedDataFile(f"{dataset_dir / site.filename}: too few beats to train on")
    return SiteData(
        dataset=NAME,
        site=site.name,
        display_name=site.display_name,
        train_x=windows[train],
        train_y=labels[train],
        test_x=windows[test],
        test_y=labels[test],
    )


def load_pooled(dataset_dir: Path) -> tuple[SiteData, ...]:
    """Load every site (beats are standardised one by one, so pooling changes nothing)."""
    return tuple(load_site(site, dataset_dir) for site in ECG_SITES)


TASK = TaskSpec(
    kind="binary",
    model="ecg-cnn",
    loss="balanced-bce",
    metric="balanced_accuracy",
    # Chosen on validation splits (docs/learning.md, bench/select_hparams.py).
    training={"lr": 0.05, "momentum": 0.9, "local_steps": 10, "batch_size": 64},
    rounds=100,
)

SPEC = DatasetSpec(
    name=NAME,
    title="MIT-BIH ECG",
    subdir=NAME,
    sites=ECG_SITES,
    download_url=DOWNLOAD_URL,
    download_note=(
        "records 100 102 104 105 106 108 114 116 119 121 123 200, lead MLII, converted to "
        "<record>.npz with ecg_mv, fs, r_peaks (every beat annotation) and pvc_peaks "
        "(annotation V)"
    ),
    load_site=load_site,
    load_pooled=load_pooled,
    task=TASK,
)
