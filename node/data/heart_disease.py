"""Fed-Heart-Disease: the UCI heart disease data of 4 hospitals, preprocessed as FLamby does.

Per site file (``processed.<site>.data``, 14 comma-separated columns, ``?`` = missing):

1. drop the columns slope, ca and thal;
2. drop every row that still has a missing value (303/261/46/130 rows remain);
3. label = ``num > 0``;
4. split 66/34 into train/test with seed 43, stratified on the label when both classes have
   more than 2 rows (as scikit-learn's ``train_test_split``; see :mod:`node.data.splits`);
5. one-hot encode cp (levels 2, 3, 4; level 1 dropped) and restecg (levels 1, 2; level 0
   dropped), appended after the 8 other features, giving 13 features;
6. standardise with the site's own training mean and standard deviation (``ddof=1``):
   ``(x - mean) / (std + 1e-9)``, applied to both the site's train and test rows.

FLamby one-hot encodes all sites together; the levels present across sites are exactly the
ones listed in the data dictionary, so encoding each site alone with those fixed levels gives
the same columns while a hospital needs only its own file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from node.data.splits import flamby_split
from node.data.types import DatasetSpec, FloatArray, SiteData, SiteInfo, TaskSpec
from node.errors import MalformedDataFile

NAME = "heart-disease"
DOWNLOAD_URL = "https://archive.ics.uci.edu/static/public/45/heart+disease.zip"

HEART_SITES: tuple[SiteInfo, ...] = (
    SiteInfo(
        "cleveland", "Cleveland", "processed.cleveland.data", "2d91a8ff69cfd9616aa47b59d6f843db"
    ),
    SiteInfo(
        "hungarian", "Hungary", "processed.hungarian.data", "22e96bee155b5973568101c93b3705f6"
    ),
    SiteInfo(
        "switzerland",
        "Switzerland",
        "processed.switzerland.data",
        "9a87f7577310b3917730d06ba9349e20",
    ),
    SiteInfo("va", "VA Long Beach", "processed.va.data", "4249d03ca7711e84f4444768c9426170"),
)
"""The four sites in FLamby's order (its center ids 0..3)."""

RAW_COLUMNS = (
    "age", "sex", "cp", "trestbps", "chol", "fbs", "restecg",
    "thalach", "exang", "oldpeak", "slope", "ca", "thal", "num",
)  # fmt: skip
DROPPED_COLUMNS = ("slope", "ca", "thal")
ONE_HOT_LEVELS: dict[str, tuple[float, ...]] = {
    "cp": (1.0, 2.0, 3.0, 4.0),
    "restecg": (0.0, 1.0, 2.0),
}
"""All levels of each categorical column; the first one is dropped when encoding."""

KEPT_COLUMNS = tuple(c for c in RAW_COLUMNS[:-1] if c not in DROPPED_COLUMNS)
NUMERIC_COLUMNS = tuple(c for c in KEPT_COLUMNS if c not in ONE_HOT_LEVELS)
FEATURE_NAMES: tuple[str, ...] = NUMERIC_COLUMNS + tuple(
    f"{column}={level:g}" for column, levels in ONE_HOT_LEVELS.items() for level in levels[1:]
)
N_FEATURES = len(FEATURE_NAMES)

TRAIN_FRACTION = 0.66
SPLIT_SEED = 43
STD_EPSILON = np.float32(1e-9)


@dataclass(frozen=True, eq=False)
class RawSplit:
    """One site's encoded but not yet standardised train/test split (float32)."""

    train_x: FloatArray
    train_y: FloatArray
    test_x: FloatArray
    test_y: FloatArray


def read_table(path: Path) -> npt.NDArray[np.float64]:
    """Read a ``processed.*.data`` file into an ``(n, 14)`` float64 array, NaN where missing.

    ``?`` and empty fields are missing; anything else that is not a number is an error.
    """
    rows: list[list[float]] = []
    text = path.read_text(encoding="ascii", errors="replace")
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split(",")
        if len(fields) != len(RAW_COLUMNS):
            raise MalformedDataFile(
                f"{path}, line {line_no}: expected {len(RAW_COLUMNS)} comma-separated fields, "
                f"found {len(fields)}; the file is not a UCI processed.*.data file"
            )
        row: list[float] = []
        for column, field in zip(RAW_COLUMNS, fields, strict=True):
            token = field.strip()
            if token in ("?", ""):
                row.append(math.nan)
                continue
            try:
                row.append(float(token))
            except ValueError:
                raise MalformedDataFile(
                    f"{path}, line {line_no}: column {column} holds {token!r}, expected a "
                    "number or '?'"
                ) from None
        rows.append(row)
    if not rows:
        raise MalformedDataFile(f"{path} holds no rows")
    return np.asarray(rows, dtype=np.float64)


def encode(table: npt.NDArray[np.float64], path: Path) -> tuple[FloatArray, FloatArray]:
    """Drop columns and incomplete rows, one-hot encode; return ``(features, labels)``."""
    kept_idx = [RAW_COLUMNS.index(c) for c in KEPT_COLUMNS] + [RAW_COLUMNS.index("num")]
    kept = table[:, kept_idx]
    kept = kept[~np.isnan(kept).any(axis=1)]
    column = {name: kept[:, i] for i, name in enumerate((*KEPT_COLUMNS, "num"))}
    parts = [column[name] for name in NUMERIC_COLUMNS]
    for name, levels in ONE_HOT_LEVELS.items():
        unknown = sorted(set(np.unique(column[name]).tolist()) - set(levels))
        if unknown:
            raise MalformedDataFile(
                f"{path}: column {name} holds level(s) {unknown}, expected only {list(levels)}"
            )
        parts.extend((column[name] == level).astype(np.float64) for level in levels[1:])
    features = np.stack(parts, axis=1).astype(np.float32)
    labels = (column["num"] > 0).astype(np.float32)
    return features, labels


def split_site(features: FloatArray, labels: FloatArray) -> RawSplit:
    """Split one site into train and test, keeping the rows' original order within each part."""
    _, test_idx = flamby_split(labels.astype(np.int64), TRAIN_FRACTION, SPLIT_SEED)
    is_test = np.zeros(len(labels), dtype=bool)
    is_test[test_idx] = True
    return RawSplit(
        train_x=features[~is_test],
        train_y=labels[~is_test],
        test_x=features[is_test],
        test_y=labels[is_test],
    )


def load_raw_split(dataset_dir: Path, site: SiteInfo) -> RawSplit:
    """Read, clean, encode and split one site's file (no standardisation yet)."""
    path = dataset_dir / site.filename
    features, labels = encode(read_table(path), path)
    return split_site(features, labels)


def standardiser(train_x: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Return the float32 ``(mean, std)`` per feature of ``train_x`` (std with ``ddof=1``).

    The mean is accumulated in float32 and the standard deviation in float64 then rounded,
    which reproduces FLamby's torch statistics bit for bit on this data.
    """
    mean = train_x.mean(axis=0, dtype=np.float32)
    std = train_x.astype(np.float64).std(axis=0, ddof=1).astype(np.float32)
    return mean.astype(np.float32), std


def standardise(x: FloatArray, mean: FloatArray, std: FloatArray) -> FloatArray:
    """Return ``(x - mean) / (std + 1e-9)`` in float32 (a constant feature becomes 0)."""
    return ((x - mean) / (std + STD_EPSILON)).astype(np.float32)


def _standardised(site: SiteInfo, raw: RawSplit, mean: FloatArray, std: FloatArray) -> SiteData:
    return SiteData(
        dataset=NAME,
        site=site.name,
        display_name=site.display_name,
        train_x=standardise(raw.train_x, mean, std),
        train_y=raw.train_y,
        test_x=standardise(raw.test_x, mean, std),
        test_y=raw.test_y,
        feature_mean=mean,
        feature_std=std,
    )


def load_site(site: SiteInfo, dataset_dir: Path) -> SiteData:
    """Load one site, standardised with its own training statistics."""
    raw = load_raw_split(dataset_dir, site)
    return _standardised(site, raw, *standardiser(raw.train_x))


def load_pooled(dataset_dir: Path) -> tuple[SiteData, ...]:
    """Load every site standardised with the statistics of all sites' training rows together.

    This is the centralised baseline's view (FLamby's ``pooled=True``): train on the union of
    the train parts, evaluate on each site's test part.
    """
    raws = [load_raw_split(dataset_dir, site) for site in HEART_SITES]
    mean, std = standardiser(np.concatenate([r.train_x for r in raws]))
    return tuple(
        _standardised(site, raw, mean, std) for site, raw in zip(HEART_SITES, raws, strict=True)
    )


TASK = TaskSpec(kind="binary", model="logistic-regression", loss="bce", metric="accuracy")

SPEC = DatasetSpec(
    name=NAME,
    title="Fed-Heart-Disease",
    subdir=NAME,
    sites=HEART_SITES,
    download_url=DOWNLOAD_URL,
    download_note="unzip it and keep the four processed.*.data files",
    load_site=load_site,
    load_pooled=load_pooled,
    task=TASK,
)
