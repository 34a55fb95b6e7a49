"""Data sets for the hospital node: per-site loading, preprocessing and train/test splits.

Fed-Heart-Disease (``"heart-disease"``), Fed-TCGA-BRCA (``"tcga-brca"``), MIT-BIH ECG
(``"mitbih-ecg"``) and bring-your-own CSV files (``"csv"``). Data sets with fixed sites are
sibling modules registered in :mod:`node.data.registry`.
"""

from node.data.csv_table import load_csv_pooled, load_csv_site, load_csv_sites
from node.data.heart_disease import FEATURE_NAMES as HEART_FEATURE_NAMES
from node.data.heart_disease import HEART_SITES
from node.data.mitbih_ecg import ECG_SITES
from node.data.paths import DATA_DIR_ENV, DATA_DIR_FLAG, default_data_dir, resolve_data_dir
from node.data.registry import (
    DATASETS,
    TASKS,
    dataset_sites,
    dataset_spec,
    load_all_sites,
    load_pooled,
    load_site,
    site_info,
    task_spec,
    verify_checksums,
)
from node.data.tcga_brca import TCGA_SITES
from node.data.types import DatasetSpec, SiteData, SiteInfo, TaskSpec, shard

__all__ = [
    "DATASETS",
    "DATA_DIR_ENV",
    "DATA_DIR_FLAG",
    "ECG_SITES",
    "HEART_FEATURE_NAMES",
    "HEART_SITES",
    "TASKS",
    "TCGA_SITES",
    "DatasetSpec",
    "SiteData",
    "SiteInfo",
    "TaskSpec",
    "dataset_sites",
    "dataset_spec",
    "default_data_dir",
    "load_all_sites",
    "load_csv_pooled",
    "load_csv_site",
    "load_csv_sites",
    "load_pooled",
    "load_site",
    "resolve_data_dir",
    "shard",
    "site_info",
    "task_spec",
    "verify_checksums",
]
