"""The data sets the node can load, looked up by name.

A new data set is a sibling module (like :mod:`node.data.heart_disease`) exposing a
:class:`~node.data.types.DatasetSpec`, added to ``DATASETS`` below.
"""

from __future__ import annotations

from pathlib import Path

from node.data import heart_disease
from node.data.files import check_spec_checksums, require_files
from node.data.types import DatasetSpec, SiteData, SiteInfo
from node.errors import UnknownDataset, UnknownSite

DATASETS: dict[str, DatasetSpec] = {spec.name: spec for spec in (heart_disease.SPEC,)}


def dataset_spec(dataset: str) -> DatasetSpec:
    """Return the spec of ``dataset`` or raise :class:`UnknownDataset` listing the known ones."""
    try:
        return DATASETS[dataset]
    except KeyError:
        raise UnknownDataset(
            f"unknown data set {dataset!r}; known data sets: {', '.join(sorted(DATASETS))}"
        ) from None


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


def load_site(dataset: str, site: str | int, data_dir: Path) -> SiteData:
    """Load one site's preprocessed train/test split from ``data_dir``.

    ``data_dir`` is the folder that holds one sub-folder per data set (see
    :func:`node.data.paths.resolve_data_dir`). Raises :class:`UnknownDataset`,
    :class:`UnknownSite`, :class:`~node.errors.DataFileMissing` (naming the file and where to
    download it) or :class:`~node.errors.MalformedDataFile`.
    """
    spec = dataset_spec(dataset)
    info = site_info(dataset, site)
    require_files(spec, data_dir, [info])
    return spec.load_site(info, data_dir / spec.subdir)


def load_all_sites(dataset: str, data_dir: Path) -> tuple[SiteData, ...]:
    """Load every site of ``dataset`` (each standardised with its own statistics)."""
    spec = dataset_spec(dataset)
    require_files(spec, data_dir, spec.sites)
    return tuple(spec.load_site(info, data_dir / spec.subdir) for info in spec.sites)


def load_pooled(dataset: str, data_dir: Path) -> tuple[SiteData, ...]:
    """Load every site standardised with pooled training statistics (centralised baseline)."""
    spec = dataset_spec(dataset)
    require_files(spec, data_dir, spec.sites)
    return spec.load_pooled(data_dir / spec.subdir)


def verify_checksums(data_dir: Path, dataset: str = heart_disease.NAME) -> list[Path]:
    """Check ``dataset``'s files under ``data_dir`` against the published MD5 checksums.

    Returns the checked paths; raises :class:`~node.errors.DataFileMissing` or
    :class:`~node.errors.ChecksumMismatch` with what to do.
    """
    return check_spec_checksums(dataset_spec(dataset), data_dir)
