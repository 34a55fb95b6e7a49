"""Data sets for the hospital node: per-site loading, preprocessing and train/test splits.

Only Fed-Heart-Disease (``"heart-disease"``) is implemented; other data sets plug in as
sibling modules registered in :mod:`node.data.registry`.
"""

from node.data.heart_disease import FEATURE_NAMES as HEART_FEATURE_NAMES
from node.data.heart_disease import HEART_SITES
from node.data.paths import DATA_DIR_ENV, DATA_DIR_FLAG, default_data_dir, resolve_data_dir
from node.data.registry import (
    DATASETS,
    dataset_sites,
    dataset_spec,
    load_all_sites,
    load_pooled,
    load_site,
    site_info,
    verify_checksums,
)
from node.data.types import DatasetSpec, SiteData, SiteInfo, shard

__all__ = [
    "DATASETS",
    "DATA_DIR_ENV",
    "DATA_DIR_FLAG",
    "HEART_FEATURE_NAMES",
    "HEART_SITES",
    "DatasetSpec",
    "SiteData",
    "SiteInfo",
    "dataset_sites",
    "dataset_spec",
    "default_data_dir",
    "load_all_sites",
    "load_pooled",
    "load_site",
    "resolve_data_dir",
    "shard",
    "site_info",
    "verify_checksums",
]
