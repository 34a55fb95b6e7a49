"""Fed-TCGA-BRCA: breast cancer survival of 1,088 TCGA patients in 6 regions, as FLamby splits it.

Three files (FLamby's copies; see :data:`SPEC` for where to get them):

- ``brca.csv``: one row per patient, ``pid`` (a TCGA barcode ``TCGA-<TSS>-<participant>``),
  39 clinical features (age at diagnosis and 38 one-hot columns) and the outcome ``E`` (1 =
  death observed, 0 = censored) and ``T`` (days);
- ``centers.csv``: tissue-source-site code -> region;
- ``train_test_split.csv``: ``pid`` -> ``fold`` (train/test) and ``fold2`` (``<fold>_<region>``).

A patient's site is the region of the tissue-source site inside its barcode, numbered as
FLamby does (Northeast 0, South 1, West 2, Midwest 3, Europe 4, Canada 5); patients of other
sources have no region and are not used. The train/test split is the given one, and the
``fold2`` column must agree with the region derived from the barcode. Per region train/test
sizes are checked against FLamby's: 248/63, 156/40, 164/42, 129/33, 129/33, 40/11.

Features are the 39 columns in file order, as FLamby feeds them, except that age is given in
decades (``age / 10``) instead of years. A linear Cox model computes the same function either
way (its age weight just scales by 10); the smaller range keeps plain gradient steps stable.
There is no other standardisation, so every region and the pooled baseline see the same
features. Labels are ``(E, T)`` rows.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from node.data.types import DataFile, DatasetSpec, FloatArray, SiteData, SiteInfo, TaskSpec
from node.errors import MalformedDataFile

NAME = "tcga-brca"
DOWNLOAD_URL = "https://github.com/owkin/FLamby/tree/main/flamby/datasets/fed_tcga_brca"

PATIENTS_FILE = DataFile("brca.csv", "989df4ddec084f749d9593146d7ba92f")
CENTERS_FILE = DataFile("centers.csv", "03f23a40c35dfb8460b910d090e98dd5")
SPLIT_FILE = DataFile("train_test_split.csv", "e648057e47463ee7763924d779cd7f2d")

REGIONS: tuple[str, ...] = ("Northeast", "South", "West", "Midwest", "Europe", "Canada")
"""Region names of ``centers.csv`` in FLamby's center order (center id = index)."""

EXPECTED_SIZES: tuple[tuple[int, int], ...] = (
    (248, 63), (156, 40), (164, 42), (129, 33), (129, 33), (40, 11),
)  # fmt: skip
"""FLamby's (train, test) patient counts per region."""

N_FEATURES = 39
AGE_COLUMN = "age_at_index"
AGE_SCALE = np.float32(10.0)

TCGA_SITES: tuple[SiteInfo, ...] = tuple(
    SiteInfo(region.lower(), region, PATIENTS_FILE.filename, PATIENTS_FILE.md5)
    for region in REGIONS
)
"""The six regions in FLamby's order (its center ids 0..5)."""


@dataclass(frozen=True, eq=False)
class Patients:
    """Every patient of ``brca.csv`` that has a region and a fold, in file order."""

    feature_names: tuple[str, ...]
    features: FloatArray
    outcomes: FloatArray  # (n, 2): event, time
    region: npt.NDArray[np.int64]
    is_test: npt.NDArray[np.bool_]


def _read_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(newline="", encoding="utf-8") as stream:
        rows = list(csv.reader(stream))
    if not rows:
        raise MalformedDataFile(f"{path} is empty; expected a CSV file with a header row")
    return rows[0], [row for row in rows[1:] if row]


def _column(header: list[str], name: str, path: Path) -> int:
    if name not in header:
        raise MalformedDataFile(f"{path} has no column {name!r}; its columns are {header}")
    return header.index(name)


def read_regions(path: Path) -> dict[str, int]:
    """Map each tissue-source-site code of ``centers.csv`` to its region id (others omitted)."""
    header, rows = _read_rows(path)
    code, region = _column(header, "TSS Code", path), _column(header, "Region", path)
    return {row[code]: REGIONS.index(row[region]) for row in rows if row[region] in REGIONS}


def read_folds(path: Path) -> dict[str, tuple[str, str]]:
    """Map each patient id of ``train_test_split.csv`` to its ``(fold, fold2)``."""
    header, rows = _read_rows(path)
    pid, fold, fold2 = (_column(header, c, path) for c in ("pid", "fold", "fold2"))
    folds = {row[pid]: (row[fold], row[fold2]) for row in rows}
    bad = sorted({f for f, _ in folds.values()} - {"train", "test"})
    if bad:
        raise MalformedDataFile(f"{path}: fold must be 'train' or 'test', found {bad}")
    return folds


def tissue_source_site(pid: str) -> str:
    """Return the tissue-source-site code of a TCGA barcode (``TCGA-E2-A9RU`` -> ``E2``)."""
    parts = pid.split("-")
    if len(parts) < 3 or parts[0] != "TCGA":
        raise ValueError(f"{pid!r} is not a TCGA barcode (TCGA-<site>-<participant>)")
    return parts[1]


def read_patients(dataset_dir: Path) -> Patients:
    """Read the three files and return the patients that belong to a region and a fold."""
    path = dataset_dir / PATIENTS_FILE.filename
    header, rows = _read_rows(path)
    if len(header) != N_FEATURES + 3 or header[0] != "pid" or header[-2:] != ["E", "T"]:
        raise MalformedDataFile(
            f"{path}: expected the columns pid, {N_FEATURES} features, E, T; "
            f"found {len(header)} columns starting {header[:2]} and ending {header[-2:]}"
        )
    regions = read_regions(dataset_dir / CENTERS_FILE.filename)
    folds = read_folds(dataset_dir / SPLIT_FILE.filename)
    kept: list[list[float]] = []
    region_of: list[int] = []
    test_flags: list[bool] = []
    for line_no, row in enumerate(rows, start=2):
        pid = row[0]
        try:
            region = regions.get(tissue_source_site(pid))
            values = [float(v) for v in row[1:]]
        except ValueError as exc:
            raise MalformedDataFile(f"{path}, line {line_no}: {exc}") from None
        if len(values) != N_FEATURES + 2:
            raise MalformedDataFile(
                f"{path}, line {line_no}: expected {N_FEATURES + 3} fields, found {len(row)}"
            )
        if region is None or pid not in folds:
            continue
        fold, fold2 = folds[pid]
        if fold2 != f"{fold}_{region}":
            raise MalformedDataFile(
                f"{path}, line {line_no}: patient {pid} is in region {region} by its "
                f"tissue-source site but in {fold2!r} by {SPLIT_FILE.filename}"
            )
        kept.append(values)
        region_of.append(region)
        test_flags.append(fold == "test")
    table = np.asarray(kept, dtype=np.float64).reshape(-1, N_FEATURES + 2)
    features = table[:, :N_FEATURES].astype(np.float32)
    features[:, _column(header, AGE_COLUMN, path) - 1] /= AGE_SCALE
    patients = Patients(
        feature_names=tuple(header[1 : N_FEATURES + 1]),
        features=features,
        outcomes=table[:, N_FEATURES:].astype(np.float32),
        region=np.asarray(region_of, dtype=np.int64),
        is_test=np.asarray(test_flags, dtype=bool),
    )
    _check_sizes(patients, path)
    return patients


def _check_sizes(patients: Patients, path: Path) -> None:
    found = tuple(
        (
            int(np.sum((patients.region == r) & ~patients.is_test)),
            int(np.sum((patients.region == r) & patients.is_test)),
        )
        for r in range(len(REGIONS))
    )
    if found != EXPECTED_SIZES:
        raise MalformedDataFile(
            f"{path.parent}: train/test patients per region are {list(found)}, FLamby's are "
            f"{list(EXPECTED_SIZES)}; the files are not FLamby's Fed-TCGA-BRCA files"
        )


def _site(site: SiteInfo, patients: Patients) -> SiteData:
    in_region = patients.region == REGIONS.index(site.display_name)
    train, test = in_region & ~patients.is_test, in_region & patients.is_test
    return SiteData(
        dataset=NAME,
        site=site.name,
        display_name=site.display_name,
        train_x=patients.features[train],
        train_y=patients.outcomes[train],
        test_x=patients.features[test],
        test_y=patients.outcomes[test],
        feature_names=patients.feature_names,
    )


def load_site(site: SiteInfo, dataset_dir: Path) -> SiteData:
    """Load one region's train and test patients."""
    return _site(site, read_patients(dataset_dir))


def load_pooled(dataset_dir: Path) -> tuple[SiteData, ...]:
    """Load every region (there are no site statistics, so pooled equals per-region data)."""
    patients = read_patients(dataset_dir)
    return tuple(_site(site, patients) for site in TCGA_SITES)


TASK = TaskSpec(
    kind="survival",
    model="cox-linear",
    loss="cox-breslow",
    metric="c_index",
    # Chosen on validation splits (docs/learning.md, bench/select_hparams.py).
    training={"optimizer": "adam", "lr": 0.003, "local_steps": 20, "batch_size": 16},
    rounds=20,
)

SPEC = DatasetSpec(
    name=NAME,
    title="Fed-TCGA-BRCA",
    subdir=NAME,
    sites=TCGA_SITES,
    download_url=DOWNLOAD_URL,
    download_note=(
        "FLamby's brca.csv and centers.csv, and train_test_split.csv from its "
        "dataset_creation_scripts/ folder"
    ),
    load_site=load_site,
    load_pooled=load_pooled,
    task=TASK,
    shared_files=(CENTERS_FILE, SPLIT_FILE),
)
