"""Value types shared by the data set loaders."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]

TaskKind = Literal["binary", "survival"]
"""``binary``: labels are 0/1 per sample. ``survival``: labels are ``(event, time)`` pairs."""

TrainingDefaults = Mapping[str, float | int | str | None]
"""Keyword arguments of :class:`node.training.TrainingConfig` recommended for a task."""


@dataclass(frozen=True)
class TaskSpec:
    """What a data set's model learns and how it is scored, by name.

    ``model`` names a builder in :data:`node.model.MODEL_BUILDERS`, ``loss`` a loss in
    :data:`node.losses.LOSSES` and ``metric`` a score in :data:`node.metrics.METRICS`.
    ``training`` holds the hyper-parameters chosen for the task on validation data (only those
    that differ from :class:`~node.training.TrainingConfig`'s defaults) and ``rounds`` the
    number of federated rounds they were chosen for.
    """

    kind: TaskKind
    model: str
    loss: str
    metric: str
    training: TrainingDefaults = field(default_factory=dict)
    rounds: int = 20


@dataclass(frozen=True)
class SiteInfo:
    """One site (hospital) of a data set: its key, its display name and its source file."""

    name: str
    display_name: str
    filename: str
    md5: str


@dataclass(frozen=True)
class DataFile:
    """A file every site of a data set reads (e.g. a shared table or split list)."""

    filename: str
    md5: str


@dataclass(frozen=True, eq=False)
class SiteData:
    """The preprocessed train and test split of one site, ready for training.

    ``*_x`` are float32 matrices of shape ``(n, n_features)``. ``*_y`` are float32 labels:
    a vector of 0/1 for binary tasks, or an ``(n, 2)`` matrix of ``(event, time)`` rows for
    survival tasks (event 1 = observed, 0 = censored; time in the data set's unit).
    ``feature_names`` names the columns of ``*_x`` when the loader knows them. The arrays are
    read-only. ``feature_mean`` and ``feature_std`` are the statistics the loader standardised
    the features with, ``(raw - mean) / (std + 1e-9)``, or None if it did not standardise.
    """

    dataset: str
    site: str
    display_name: str
    train_x: FloatArray
    train_y: FloatArray
    test_x: FloatArray
    test_y: FloatArray
    feature_names: tuple[str, ...] = ()
    feature_mean: FloatArray | None = None
    feature_std: FloatArray | None = None

    def __post_init__(self) -> None:
        for part in ("train", "test"):
            x, y = getattr(self, f"{part}_x"), getattr(self, f"{part}_y")
            if x.ndim != 2 or len(x) != len(y) or y.ndim not in (1, 2):
                raise ValueError(
                    f"{self.site}: {part} features of shape {x.shape} do not match labels of "
                    f"shape {y.shape}; expected (n, features) and (n,) or (n, 2)"
                )
        if self.feature_names and len(self.feature_names) != self.train_x.shape[1]:
            raise ValueError(
                f"{self.site}: {len(self.feature_names)} feature names for "
                f"{self.train_x.shape[1]} feature columns"
            )
        for name in ("train_x", "train_y", "test_x", "test_y"):
            getattr(self, name).setflags(write=False)

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
    """What the registry knows about one data set: its files, how to load them, its task.

    ``load_pooled`` returns every site as the centralised baseline sees it (for standardised
    data sets: with pooled training statistics). ``load_site`` and ``load_pooled`` receive the
    data set's own folder (``<data dir>/<subdir>``) and may assume every site file and every
    file of ``shared_files`` exists.
    """

    name: str
    title: str
    subdir: str
    sites: tuple[SiteInfo, ...]
    download_url: str
    download_note: str
    load_site: Callable[[SiteInfo, Path], SiteData]
    load_pooled: Callable[[Path], tuple[SiteData, ...]]
    task: TaskSpec
    shared_files: tuple[DataFile, ...] = ()


def shard(site: SiteData, index: int, count: int) -> SiteData:
    """Training rows ``index, index + count, ...`` of ``site`` (the test split is kept whole).

    Lets several nodes share one site's data without sharing rows, e.g. two nodes per
    hospital in a larger testnet. ``shard(site, 0, 1)`` is ``site``'s data unchanged.
    """
    if not 0 <= index < count:
        raise ValueError(f"shard index {index} is not in 0..{count - 1}")
    if count == 1:
        return site
    return replace(
        site,
        display_name=f"{site.display_name} {index + 1}/{count}",
        train_x=site.train_x[index::count].copy(),
        train_y=site.train_y[index::count].copy(),
    )
