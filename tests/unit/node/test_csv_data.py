"""Bring-your-own CSV files: loading, the split, and errors that say what to fix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from node.data import load_csv_pooled, load_csv_sites, load_site
from node.errors import DataError, DataFileMissing, MalformedDataFile

HEADER = "outcome,bmi,age"
ROWS = [
    "0,22.5,40",
    "1,31.0,65",
    "0,24.1,38",
    "1,29.3,70",
    "0,21.9,45",
    "0,26.0,52",
    "1,33.2,61",
    "0,23.3,35",
]


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_file_loads_with_sorted_features_a_split_and_standardisation(tmp_path: Path) -> None:
    path = _write(tmp_path / "st-marys.csv", [HEADER, *ROWS])
    site = load_site("csv", str(path), tmp_path, label_column="outcome")
    assert (site.dataset, site.site) == ("csv", "st-marys")
    assert site.feature_names == ("age", "bmi")
    # 5 negatives -> round(1.25) = 1 to test; 3 positives -> round(0.75) = 1 to test.
    assert (site.n_train, site.n_test) == (6, 2)
    assert site.train_y.sum() == 2 and site.test_y.sum() == 1
    assert np.allclose(site.train_x.mean(axis=0), 0.0, atol=1e-6)
    assert np.allclose(site.train_x.std(axis=0, ddof=1), 1.0, atol=1e-5)


def test_pooled_files_share_one_standardisation(tmp_path: Path) -> None:
    first = _write(tmp_path / "a.csv", [HEADER, *ROWS])
    second = _write(
        tmp_path / "b.csv", ["age,bmi,outcome", "50,20,0", "60,40,1", "55,30,0", "65,35,1"]
    )
    own = load_csv_sites([first, second], "outcome")
    pooled = load_csv_pooled([first, second], "outcome")
    assert [s.site for s in own] == ["a", "b"]
    union = np.concatenate([s.train_x for s in pooled])
    assert np.allclose(union.mean(axis=0), 0.0, atol=1e-6)
    assert not np.allclose(own[1].train_x, pooled[1].train_x)


def test_missing_file_says_how_to_name_it(tmp_path: Path) -> None:
    with pytest.raises(DataFileMissing, match=r"absent\.csv not found.*\[node\] site") as caught:
        load_site("csv", str(tmp_path / "absent.csv"), tmp_path, label_column="outcome")
    assert isinstance(caught.value, FileNotFoundError)


def test_missing_label_column_lists_the_columns(tmp_path: Path) -> None:
    path = _write(tmp_path / "h.csv", [HEADER, *ROWS])
    with pytest.raises(MalformedDataFile, match=r"no column 'label'.*\['outcome', 'bmi', 'age'\]"):
        load_site("csv", str(path), tmp_path, label_column="label")


def test_label_column_must_be_named(tmp_path: Path) -> None:
    path = _write(tmp_path / "h.csv", [HEADER, *ROWS])
    with pytest.raises(MalformedDataFile, match=r"set federation\.csv_label"):
        load_site("csv", str(path), tmp_path)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("0,heavy,40", r"line 3, column 'bmi': 'heavy' is not a number; .*encode categories"),
        ("0,,40", r"line 3, column 'bmi': the value is missing; .*fill in or drop"),
        ("0,nan,40", r"line 3, column 'bmi': 'nan' is not a finite number"),
        ("2,22.0,40", r"line 3: the label column 'outcome' holds '2'; labels must be 0 or 1"),
        ("0,22.0", r"line 3: expected 3 comma-separated fields as in the header, found 2"),
    ],
)
def test_bad_values_name_line_column_and_fix(tmp_path: Path, row: str, message: str) -> None:
    path = _write(tmp_path / "h.csv", [HEADER, ROWS[0], row, *ROWS[1:]])
    with pytest.raises(MalformedDataFile, match=message):
        load_site("csv", str(path), tmp_path, label_column="outcome")


def test_empty_and_header_only_files_are_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(MalformedDataFile, match=r"empty\.csv is empty: expected a header row"):
        load_site("csv", str(empty), tmp_path, label_column="outcome")
    header_only = _write(tmp_path / "header.csv", [HEADER])
    with pytest.raises(MalformedDataFile, match=r"holds 0 data row\(s\); at least 4"):
        load_site("csv", str(header_only), tmp_path, label_column="outcome")


def test_sites_must_share_feature_names(tmp_path: Path) -> None:
    first = _write(tmp_path / "a.csv", [HEADER, *ROWS])
    second = _write(tmp_path / "b.csv", ["outcome,bmi,weight", *ROWS])
    with pytest.raises(MalformedDataFile, match=r"every hospital's file needs the same column"):
        load_csv_sites([first, second], "outcome")


def test_a_label_column_is_refused_for_other_data_sets(data_dir: Path) -> None:
    with pytest.raises(DataError, match="only for the csv data set"):
        load_site("heart-disease", "va", data_dir, label_column="num")


def _parquet(path: Path, columns: dict[str, list[object]]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table(columns), path)
    return path


def _columns() -> dict[str, list[object]]:
    cells = [row.split(",") for row in ROWS]
    return {
        "outcome": [int(c[0]) for c in cells],
        "bmi": [float(c[1]) for c in cells],
        "age": [int(c[2]) for c in cells],
    }


def test_a_parquet_file_loads_as_the_same_table_in_csv_would(tmp_path: Path) -> None:
    from_csv = load_site(
        "csv", str(_write(tmp_path / "h.csv", [HEADER, *ROWS])), tmp_path, label_column="outcome"
    )
    from_parquet = load_site(
        "csv", str(_parquet(tmp_path / "h.parquet", _columns())), tmp_path, label_column="outcome"
    )
    assert from_parquet.feature_names == ("age", "bmi")
    for part in ("train_x", "train_y", "test_x", "test_y"):
        np.testing.assert_array_equal(getattr(from_parquet, part), getattr(from_csv, part))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"bmi": ["high"] * 8}, "column 'bmi': type string is not numeric"),
        ({"bmi": [22.5, None, 24.1, 29.3, 21.9, 26.0, 33.2, 23.3]}, "1 missing value"),
        ({"bmi": [22.5, float("inf"), 24.1, 29.3, 21.9, 26.0, 33.2, 23.3]}, "row 2, column 'bmi'"),
        ({"outcome": [0, 2, 0, 1, 0, 0, 1, 0]}, "row 2: the label column 'outcome' holds 2"),
    ],
)
def test_bad_parquet_columns_name_the_column_and_fix(
    tmp_path: Path, change: dict[str, list[object]], message: str
) -> None:
    path = _parquet(tmp_path / "h.parquet", {**_columns(), **change})
    with pytest.raises(MalformedDataFile, match=message):
        load_site("csv", str(path), tmp_path, label_column="outcome")


def test_a_damaged_or_unlabelled_parquet_file_is_refused(tmp_path: Path) -> None:
    damaged = tmp_path / "damaged.parquet"
    damaged.write_bytes(b"PAR1 not really")
    with pytest.raises(MalformedDataFile, match="not a readable Parquet file"):
        load_site("csv", str(damaged), tmp_path, label_column="outcome")
    path = _parquet(tmp_path / "h.pq", _columns())
    with pytest.raises(MalformedDataFile, match="its columns are"):
        load_site("csv", str(path), tmp_path, label_column="label")
