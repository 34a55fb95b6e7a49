"""Bring-your-own tabular data: one CSV or Parquet file per hospital, binary label, numeric
features.

A CSV file has a header row naming its columns; a Parquet file (``.parquet`` or ``.pq``) names
them in its schema and holds numeric (integer, floating or boolean) columns without nulls.
One column is the label (its name is
``federation.csv_label`` in the config), holding 0 or 1 in every row; every other column is a
feature and must hold a number in every row (encode categories as numbers, fill or drop
missing values first). Per file:

1. features are the non-label columns in alphabetical order of their names, so files whose
   columns come in different orders still line up (the federation needs the same names at
   every site; the simulator checks this);
2. a stratified 75/25 train/test split with seed 0 (:func:`node.data.splits.per_class_split`),
   rows keeping their file order inside each part;
3. features standardised with the file's own training rows, as for Fed-Heart-Disease:
   ``(x - mean) / (std + 1e-9)``, std with ``ddof=1``.

The model is logistic regression and the score accuracy, as for Fed-Heart-Disease.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from node.data.heart_disease import standardise, standardiser
from node.data.splits import per_class_split
from node.data.types import FloatArray, SiteData, TaskSpec
from node.errors import DataFileMissing, MalformedDataFile

NAME = "csv"
TEST_FRACTION = 0.25
SPLIT_SEED = 0
MIN_ROWS = 4

TASK = TaskSpec(kind="binary", model="logistic-regression", loss="bce", metric="accuracy")

_NUMBERS_HINT = (
    "every feature must be a number in every row: encode categories as numbers (e.g. one "
    "0/1 column per category) and fill in or drop rows with missing values"
)


@dataclass(frozen=True, eq=False)
class CsvSplit:
    """One file's encoded, split, not yet standardised data."""

    path: Path
    feature_names: tuple[str, ...]
    train_x: FloatArray
    train_y: FloatArray
    test_x: FloatArray
    test_y: FloatArray


def _number(text: str, path: Path, line_no: int, column: str) -> float:
    token = text.strip()
    if not token:
        raise MalformedDataFile(
            f"{path}, line {line_no}, column {column!r}: the value is missing; {_NUMBERS_HINT}"
        )
    try:
        value = float(token)
    except ValueError:
        raise MalformedDataFile(
            f"{path}, line {line_no}, column {column!r}: {token!r} is not a number; {_NUMBERS_HINT}"
        ) from None
    if not math.isfinite(value):
        raise MalformedDataFile(
            f"{path}, line {line_no}, column {column!r}: {token!r} is not a finite number; "
            f"{_NUMBERS_HINT}"
        )
    return value


PARQUET_SUFFIXES = (".parquet", ".pq")


def read_csv_table(path: Path, label: str) -> tuple[tuple[str, ...], FloatArray, FloatArray]:
    """Return ``(feature names, features, labels)`` of one file (CSV, or Parquet by its
    suffix), features sorted by name."""
    if not label:
        raise MalformedDataFile(
            "no label column named: set federation.csv_label (or --csv-label) to the name of "
            "the column holding the 0/1 outcome"
        )
    if not path.is_file():
        raise DataFileMissing(
            f"CSV file {path} not found. Name each hospital's own file with "
            '[node] site = "path/to/file.csv" (relative paths are relative to the config '
            "file) or, in the simulator, with --csv.",
            paths=[path],
            url="",
        )
    if path.suffix.lower() in PARQUET_SUFFIXES:
        return _read_parquet(path, label)
    with path.open(newline="", encoding="utf-8-sig") as stream:
        rows = [row for row in csv.reader(stream) if any(field.strip() for field in row)]
    if not rows:
        raise MalformedDataFile(
            f"{path} is empty: expected a header row naming the columns (one of them the "
            f"label column {label!r}) and one row per patient"
        )
    header = [name.strip() for name in rows[0]]
    _check_columns(path, header, label, len(rows) - 1)
    names = tuple(sorted(name for name in header if name != label))
    order = [header.index(name) for name in names]
    label_at = header.index(label)
    features = np.empty((len(rows) - 1, len(names)), dtype=np.float64)
    labels = np.empty(len(rows) - 1, dtype=np.float32)
    for i, row in enumerate(rows[1:]):
        line_no = i + 2
        if len(row) != len(header):
            raise MalformedDataFile(
                f"{path}, line {line_no}: expected {len(header)} comma-separated fields as in "
                f"the header, found {len(row)}"
            )
        value = _number(row[label_at], path, line_no, label)
        if value not in (0.0, 1.0):
            raise MalformedDataFile(
                f"{path}, line {line_no}: the label column {label!r} holds {row[label_at]!r}; "
                "labels must be 0 or 1"
            )
        labels[i] = value
        features[i] = [_number(row[j], path, line_no, header[j]) for j in order]
    return names, features.astype(np.float32), labels


def _check_columns(path: Path, header: list[str], label: str, rows: int) -> None:
    """The checks every file's columns and row count pass, CSV or Parquet."""
    duplicated = sorted({name for name in header if header.count(name) > 1})
    if duplicated or "" in header:
        raise MalformedDataFile(
            f"{path}: column names must be present and distinct; check the header row "
            f"(duplicated: {duplicated}, empty names: {header.count('')})"
        )
    if label not in header:
        raise MalformedDataFile(
            f"{path} has no column {label!r} (the label column named by federation.csv_label); "
            f"its columns are {header}. Rename the file's label column or set csv_label to "
            "one of these."
        )
    if len(header) < 2:
        raise MalformedDataFile(f"{path} holds only the label column; add feature columns")
    if rows < MIN_ROWS:
        raise MalformedDataFile(
            f"{path} holds {rows} data row(s); at least {MIN_ROWS} are needed to "
            "split it into train and test rows"
        )


def _read_parquet(path: Path, label: str) -> tuple[tuple[str, ...], FloatArray, FloatArray]:
    """The Parquet form of :func:`read_csv_table`, with the same checks and messages."""
    import pyarrow.parquet as pq  # only hospitals with Parquet files pay for the import

    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ... for a bad file
        raise MalformedDataFile(f"{path} is not a readable Parquet file: {exc}") from exc
    header = list(table.column_names)
    _check_columns(path, header, label, table.num_rows)
    columns = {name: _parquet_column(table, name, path) for name in header}
    labels = columns[label]
    bad = np.flatnonzero((labels != 0.0) & (labels != 1.0))
    if bad.size:
        raise MalformedDataFile(
            f"{path}, row {int(bad[0]) + 1}: the label column {label!r} holds "
            f"{float(labels[bad[0]]):g}; labels must be 0 or 1"
        )
    names = tuple(sorted(name for name in header if name != label))
    features = np.stack([columns[name] for name in names], axis=1)
    return names, features.astype(np.float32), labels.astype(np.float32)


def _parquet_column(table: Any, name: str, path: Path) -> np.ndarray:
    import pyarrow as pa

    column = table.column(name)
    kind = column.type
    if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)):
        raise MalformedDataFile(
            f"{path}, column {name!r}: type {kind} is not numeric; {_NUMBERS_HINT}"
        )
    if column.null_count:
        raise MalformedDataFile(
            f"{path}, column {name!r}: {column.null_count} missing value(s); {_NUMBERS_HINT}"
        )
    values: np.ndarray = np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)
    if not np.all(np.isfinite(values)):
        row = int(np.flatnonzero(~np.isfinite(values))[0]) + 1
        raise MalformedDataFile(
            f"{path}, row {row}, column {name!r}: {values[row - 1]} is not finite; {_NUMBERS_HINT}"
        )
    return values


def split_csv(path: Path, label: str) -> CsvSplit:
    """Read one file and split it into train and test rows (not yet standardised)."""
    names, features, labels = read_csv_table(path, label)
    train, test = per_class_split(labels, TEST_FRACTION, SPLIT_SEED)
    if len(train) == 0:
        raise MalformedDataFile(f"{path}: too few rows of each label to keep any for training")
    return CsvSplit(path, names, features[train], labels[train], features[test], labels[test])


def _site_data(part: CsvSplit, mean: FloatArray, std: FloatArray) -> SiteData:
    return SiteData(
        dataset=NAME,
        site=part.path.stem,
        display_name=part.path.stem,
        train_x=standardise(part.train_x, mean, std),
        train_y=part.train_y,
        test_x=standardise(part.test_x, mean, std),
        test_y=part.test_y,
        feature_names=part.feature_names,
        feature_mean=mean,
        feature_std=std,
    )


def load_csv_site(path: Path, label: str) -> SiteData:
    """Load one hospital's CSV file, standardised with its own training rows."""
    part = split_csv(path, label)
    return _site_data(part, *standardiser(part.train_x))


def _require_same_features(parts: Sequence[CsvSplit]) -> None:
    first = parts[0]
    stems = [part.path.stem for part in parts]
    if len(set(stems)) != len(stems):
        raise MalformedDataFile(
            f"the files {[str(p.path) for p in parts]} do not all have different names; a "
            "site is named after its file, so give each hospital's file its own name"
        )
    for part in parts[1:]:
        if part.feature_names != first.feature_names:
            raise MalformedDataFile(
                f"{part.path} has the feature columns {list(part.feature_names)} but "
                f"{first.path} has {list(first.feature_names)}; every hospital's file needs "
                "the same column names"
            )


def load_csv_sites(paths: Sequence[Path], label: str) -> tuple[SiteData, ...]:
    """Load several hospitals' files, each standardised with its own training rows."""
    if not paths:
        raise MalformedDataFile("no CSV files given: name one file per hospital")
    parts = [split_csv(path, label) for path in paths]
    _require_same_features(parts)
    return tuple(_site_data(part, *standardiser(part.train_x)) for part in parts)


def load_csv_pooled(paths: Sequence[Path], label: str) -> tuple[SiteData, ...]:
    """Load several files standardised with the statistics of all their training rows."""
    if not paths:
        raise MalformedDataFile("no CSV files given: name one file per hospital")
    parts = [split_csv(path, label) for path in paths]
    _require_same_features(parts)
    mean, std = standardiser(np.concatenate([p.train_x for p in parts]))
    return tuple(_site_data(part, mean, std) for part in parts)
