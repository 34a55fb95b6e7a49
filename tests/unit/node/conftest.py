"""Fixtures for the learning-core tests: the shared Fed-Heart-Disease files, loaded once."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from node.data import SiteData, load_all_sites, resolve_data_dir


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real data directory (``$MEDSWARM_DATA`` or ``../shared/data``)."""
    return resolve_data_dir(None, os.environ)


@pytest.fixture(scope="session")
def heart_sites(data_dir: Path) -> tuple[SiteData, ...]:
    """All four Fed-Heart-Disease sites, preprocessed."""
    return load_all_sites("heart-disease", data_dir)


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread() -> Iterator[None]:
    """Train on one thread, as the simulation does: tiny models gain nothing from more."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
