"""The strategy menu through real libp2p hosts and the real in-process EVM.

An adaptive server step, federated standardisation, a local layer and fine-tuning (each
hospital choosing its step count), in two
clusters: every node must agree on each global blob, and each hospital's scores must be those
of the in-memory run that averages in the same two tiers.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch
import trio

from node.config import config_from_dict
from node.data import load_all_sites, resolve_data_dir
from node.strategy_sim import StrategyRun, run_strategy
from node.weights import decode_weights
from testnet.local import LocalRun, run_local_federation
from testnet.report import RunSummary

pytestmark = pytest.mark.integration

CLUSTERS = (0, 1, 1, 0)  # US: Cleveland, VA Long Beach; Europe: Hungary, Switzerland


def federate(strategy: dict[str, Any], out: Path) -> tuple[RunSummary, set[str], StrategyRun]:
    """Four hospitals in CLUSTERS, a statistics round and three training rounds of
    ``strategy``; the run's summary, its final blob's tensor names, the in-memory run."""
    torch.set_num_threads(1)
    config = config_from_dict(
        {
            "federation": {"rounds": 4, "standardise": "federation", "update_timeout": 10.0},
            "strategy": strategy,
        }
    )
    data_dir = resolve_data_dir(None, os.environ)
    local = LocalRun(config=config, nodes=4, data_dir=data_dir, out_dir=out, clusters=CLUSTERS)
    summary = trio.run(run_local_federation, local)
    assert summary.nodes_agree
    blob = decode_weights(Path(summary.final_model).read_bytes())
    sites = load_all_sites("heart-disease", data_dir)
    expected = run_strategy(
        sites, config.training, config.strategy, 4, config.federation.seed, "federation", CLUSTERS
    )
    return summary, set(blob), expected


def test_adaptive_personalised_federation_matches_the_in_memory_run(tmp_path: Path) -> None:
    strategy = {
        "name": "fedyogi",
        "server_lr": 0.03,
        "tau": 0.01,
        "local_layers": ["linear.bias"],
        "finetune_steps": 10,
        "finetune_select": True,
    }
    summary, tensors, expected = federate(strategy, tmp_path)
    # the shared weight, the optimizer's moments and the pooled statistics; no local bias
    assert tensors == {
        "data/mean",
        "data/mean_square",
        "linear.weight",
        "server/m/linear.weight",
        "server/v/linear.weight",
    }
    by_site = {h.site: h for h in summary.hospitals}
    for score in expected.personal_scores:
        assert by_site[score.site].personal_metric == pytest.approx(score.metric, abs=1e-12)
    assert summary.final_mean_personal_metric == pytest.approx(expected.personal_metric)
    assert summary.metric_name == "accuracy"


def test_scaffold_on_the_network_matches_the_in_memory_run(tmp_path: Path) -> None:
    summary, tensors, expected = federate({"name": "scaffold", "server_lr": 0.5}, tmp_path)
    assert tensors == {
        "data/mean",
        "data/mean_square",
        "linear.bias",
        "linear.weight",
        "scaffold/c/linear.bias",
        "scaffold/c/linear.weight",
    }
    by_site = {h.site: h for h in summary.hospitals}
    for score in expected.global_scores:
        assert by_site[score.site].metric == pytest.approx(score.metric, abs=1e-12)
