"""Bring-your-own tabular files (Parquet and CSV) through real libp2p hosts and the real EVM.

Three hospitals hold their Fed-Heart-Disease rows as their own files (two Parquet, one CSV,
columns in different orders), name the label column in the config, and federate: every node
must agree on each global model, and each hospital's score must be the in-memory run's.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import trio

from node.config import config_from_dict
from node.data import load_all_sites, load_site, resolve_data_dir
from node.strategy_sim import run_strategy
from testnet.local import LocalRun, run_local_federation

pytestmark = pytest.mark.integration

ROUNDS = 3


def _columns(site_index: int, data_dir: Path) -> dict[str, np.ndarray]:
    site = load_all_sites("heart-disease", data_dir)[site_index]
    x = np.concatenate([site.train_x, site.test_x])
    y = np.concatenate([site.train_y, site.test_y])
    return {"outcome": y.astype(np.int64), **{f"f{j:02d}": x[:, j] for j in range(x.shape[1])}}


def test_parquet_and_csv_hospitals_federate_as_in_memory(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    data_dir = resolve_data_dir(None, os.environ)
    files = []
    for i, name in enumerate(["cleveland.parquet", "hungary.pq"]):
        columns = _columns(i, data_dir)
        reordered = dict(reversed(list(columns.items())))  # other column order, same names
        pq.write_table(pa.table(reordered if i else columns), tmp_path / name)
        files.append(tmp_path / name)
    columns = _columns(3, data_dir)
    lines = [",".join(columns)] + [
        ",".join(repr(float(columns[c][r])) for c in columns)
        for r in range(len(columns["outcome"]))
    ]
    (tmp_path / "va.csv").write_text("\n".join(lines) + "\n")
    files.append(tmp_path / "va.csv")
    config = config_from_dict(
        {"federation": {"dataset": "csv", "csv_label": "outcome", "rounds": ROUNDS}}
    )
    run = LocalRun(
        config=config,
        nodes=3,
        data_dir=data_dir,
        out_dir=tmp_path / "run",
        site_files=tuple(files),
    )
    summary = trio.run(run_local_federation, run)
    assert summary.nodes_agree
    sites = [load_site("csv", str(f), data_dir, label_column="outcome") for f in files]
    expected = run_strategy(sites, config.training, config.strategy, ROUNDS, config.federation.seed)
    by_site = {h.site: h.metric for h in summary.hospitals}
    assert by_site == {s.site: pytest.approx(s.metric, abs=1e-12) for s in expected.global_scores}
    assert {h.site for h in summary.hospitals} == {"cleveland", "hungary", "va"}
    assert summary.final_mean_metric is not None and summary.final_mean_metric > 0.6
