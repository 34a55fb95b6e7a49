"""The data sets the node can load, looked up by name.

A data set with fixed sites is a sibling module (like :mod:`node.data.heart_disease`)
exposing a :class:`~node.data.types.DatasetSpec`, added to ``DATASETS`` below. ``"csv"`` has
no fixed sites: each hospital names its own file (:mod:`node.data.csv_table`). Every data set's
:class:`~node.data.types.TaskSpec` (model, loss, metric) is in ``TASKS``.
"""

from __future__ import annotations

from pathlib import Path

from node.data import csv_table, heart_disease, mitbih_ecg, tcga_brca
from node.data.files import check_spec_checksums, require_files
from node.data.types import DatasetSpec, SiteData, SiteInfo, TaskSpec
from node.errors import DataError, UnknownDataset, UnknownSite

DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec for spec in (heart_disease.SPEC, tcga_brca.SPEC, mitbih_ecg.SPEC)
}
"""The data sets with a fixed list of sites and files."""

TASKS: dict[str, TaskSpec] = {
    **{name: spec.task for name, spec in DATASETS.items()},
    csv_table.NAME: csv_table.TASK,
}
"""The task of every data set name the node accepts, ``"csv"`` included."""


def _unknown(dataset: str) -> UnknownDataset:
    return UnknownDataset(
        f"unknown data set {dataset!r}; known data sets: {', '.join(sorted(TASKS))}"
    )


def task_spec(dataset: str) -> TaskSpec:
    """Return the task (model, loss, metric) of ``dataset`` or raise :class:`UnknownDataset`."""
    try:
        return TASKS[dataset]
    except KeyError:
        raise _unknown(dataset) from None


def dataset_spec(dataset: str) -> DatasetSpec:
    """Return the spec of a data set with fixed sites, or raise :class:`UnknownDataset`.

    ``"csv"`` raises :class:`~node.errors.DataError`: its sites are whatever files are named.
    """
    if dataset == csv_table.NAME:
        raise DataError(
            "the csv data set has no fixed sites: each hospital names its own file "
            '([node] site = "path/to/file.csv", or --csv in the simulator)'
        )
    try:
        return DATASETS[dataset]
    except KeyError:
        raise _unknown(dataset) from None


def dataset_sites(dataset: str) -> list[str]:
    """Return the site names of ``dataset`` in their canonical order."""
    return [site.name for site in dataset_spec(dataset).sites]


def site_info(dataset: str, site: str | int) -> SiteInfo:
    """Return the site of ``dataset`` named ``site`` or at index ``site`` (0-based)."""
    spec = dataset_spec(dataset)
    valid = ", ".join(f"{i}={s.name}" for i, s in enumerate(spec.sites))
    if isinstance(site, bool) or not isinstance(site, str | int):
        raise UnknownSite(f"site must be a name or an index, got {site!r}; valid sites: {valid}")
    if isinstance(site, int):
        if 0 <= site < len(spec.sites):
            return spec.sites[site]
    else:
        for info in spec.sites:
            if info.name == site:
                return info
    raise UnknownSite(f"data set {dataset!r} has no site {site!r}; valid sites: {valid}")


def load_site(
    dataset: str, site: str | int, data_dir: Path, *, label_column: str | None = None
) -> SiteData:
    """Load one site's preprocessed train/test split.

    ``data_dir`` is the folder that holds one sub-folder per data set (see
    :func:`node.data.paths.resolve_data_dir`). For ``"csv"``, ``site`` is the path of the
    hospital's file instead (``data_dir`` is not used) and ``label_column`` names its label
    column; other data sets take no ``label_column``. Raises :class:`UnknownDataset`,
    :class:`UnknownSite`, :class:`~node.errors.DataFileMissing` (naming the file and where to
    get it) or :class:`~node.errors.MalformedDataFile`.
    """
    if dataset == csv_table.NAME:
        return csv_table.load_csv_site(Path(str(site)), label_column or "")
    if label_column is not None:
        raise DataError(
            f"a label column is chosen only for the csv data set; {dataset!r} defines its own"
        )
    spec = dataset_spec(dataset)
    info = site_info(dataset, site)
    require_files(spec, data_dir, [info])
    return spec.load_site(info, data_dir / spec.subdir)


def load_all_sites(dataset: str, data_dir: Path) -> tuple[SiteData, ...]:
    """Load every site of ``dataset`` (each standardised with its own statistics, if any)."""
    spec = dataset_spec(dataset)
    require_files(spec, data_dir, spec.sites)
    return tuple(spec.load_site(info, data_dir / spec.subdir) for info in spec.sites)


def load_pooled(dataset: str, data_dir: Path) -> tuple[SiteData, ...]:
    """Load every site as the centralised baseline sees it (pooled standardisation, if any)."""
    spec = dataset_spec(dataset)
    require_files(spec, data_dir, spec.sites)
    return spec.load_pooled(data_dir / spec.subdir)


def verify_checksums(data_dir: Path, dataset: str = heart_disease.NAME) -> list[Path]:
    """Check ``dataset``'s files under ``data_dir`` against the published MD5 checksums.

    Returns the checked paths; raises :class:`~node.errors.DataFileMissing` or
    :class:`~node.errors.ChecksumMismatch` with what to do.
    """
    return check_spec_checksums(dataset_spec(dataset), data_dir)
