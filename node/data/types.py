"""Value types shared by the data set loaders."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class SiteInfo:
    """One site (hospital) of a data set: its key, its display name and its source file."""

    name: str
    display_name: str
    filename: str
    md5: str


@dataclass(frozen=True, eq=False)
class SiteData:
    """The preprocessed train and test split of one site, ready for training.

    ``*_x`` are float32 matrices of shape ``(n, n_features)``, ``*_y`` float32 vectors of 0/1
    labels. The arrays are read-only.
    """

    dataset: str
    site: str
    display_name: str
    train_x: FloatArray
    train_y: FloatArray
    test_x: FloatArray
    test_y: FloatArray

    def __post_init__(self) -> None:
        for field in ("train_x", "train_y", "test_x", "test_y"):
            getattr(self, field).setflags(write=False)

    @property
    def n_features(self) -> int:
        """Number of input features per sample."""
        return int(self.train_x.shape[1])

    @property
    def n_train(self) -> int:
        """Number of training samples (the weight of this site's update in FedAvg)."""
        return int(self.train_x.shape[0])

    @property
    def n_test(self) -> int:
        """Number of test samples."""
        return int(self.test_x.shape[0])


@dataclass(frozen=True)
class DatasetSpec:
    """What the registry knows about one data set: where its files are and how to load them.

    ``load_pooled`` returns every site standardised with pooled training statistics (the
    centralised baseline). ``load_site`` and ``load_pooled`` receive the data set's own folder
    (``<data dir>/<subdir>``) and may assume every site file exists.
    """

    name: str
    title: str
    subdir: str
    sites: tuple[SiteInfo, ...]
    download_url: str
    download_note: str
    load_site: Callable[[SiteInfo, Path], SiteData]
    load_pooled: Callable[[Path], tuple[SiteData, ...]]


def shard(site: SiteData, index: int, count: int) -> SiteData:
    """Training rows ``index, index + count, ...`` of ``site`` (the test split is kept whole).

    Lets several nodes share one site's data without sharing rows, e.g. two nodes per
    hospital in a larger testnet. ``shard(site, 0, 1)`` is ``site``'s data unchanged.
    """
    if not 0 <= index < count:
        raise ValueError(f"shard index {index} is not in 0..{count - 1}")
    if count == 1:
        return site
    return SiteData(
        dataset=site.dataset,
        site=site.site,
        display_name=f"{site.display_name} {index + 1}/{count}",
        train_x=site.train_x[index::count].copy(),
        train_y=site.train_y[index::count].copy(),
        test_x=site.test_x,
        test_y=site.test_y,
    )
