"""Fixtures for the learning-core tests: the shared Fed-Heart-Disease files, loaded once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from node.data import SiteData, load_all_sites, resolve_data_dir


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real data directory (``$MEDSWARM_DATA`` or ``../shared/data``)."""
    return resolve_data_dir(None, os.environ)


@pytest.fixture(scope="session")
def heart_sites(data_dir: Path) -> tuple[SiteData, ...]:
    """All four Fed-Heart-Disease sites, preprocessed."""
    return load_all_sites("heart-disease", data_dir)
