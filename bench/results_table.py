"""The results table of docs/results.md: each strategy through the real network, five seeds.

Every row runs node processes on anvil (``medswarm testnet up`` does the same), built from
``testnet/scenarios/heart-best.toml`` or ``tcga-best.toml`` with the row's strategy and
standardisation, for seeds 0-4; it reads ``summary.json``'s per-hospital metrics. Beside each
run it computes the in-memory shortcut (:func:`node.strategy_sim.run_strategy`, averaging in
the scenario's clusters) and records whether the two give the same per-hospital scores.
Prints a Markdown table and writes every figure to ``bench/results/strategies.json``.
Run from the project root: ``python bench/results_table.py [--seeds 0 1 2 3 4] [--only NAME]``
(about 20 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import statistics
import tempfile
from pathlib import Path
from typing import Any

import torch

from node.config import MedswarmConfig
from node.data import load_all_sites, resolve_data_dir
from node.strategies import StrategyConfig
from node.strategy_sim import run_strategy
from testnet.multiproc import MultiProcessTestnet
from testnet.scenario import Scenario, load_scenario

HEART = Path("testnet/scenarios/heart-best.toml")
TCGA = Path("testnet/scenarios/tcga-best.toml")


@dataclasses.dataclass(frozen=True)
class Row:
    """One line of the table: a scenario file with a strategy and standardisation."""

    name: str
    scenario: Path
    strategy: StrategyConfig
    standardise: str
    personal: bool = False


ROWS = (
    Row("FedAvg, site standardisation (FLamby's)", HEART, StrategyConfig(), "site"),
    Row("FedAvg", HEART, StrategyConfig(server_lr=0.5), "federation"),
    Row("FedProx", HEART, StrategyConfig("fedprox", proximal_mu=1.0), "federation"),
    Row(
        "FedAdam",
        HEART,
        StrategyConfig("fedadam", server_lr=0.1, tau=0.1),
        "federation",
    ),
    Row("FedYogi", HEART, StrategyConfig("fedyogi", server_lr=0.3, tau=0.01), "federation"),
    Row("FedAdagrad", HEART, StrategyConfig("fedadagrad", server_lr=0.3, tau=0.1), "federation"),
    Row("SCAFFOLD (heart-best)", HEART, StrategyConfig("scaffold", server_lr=0.5), "federation"),
    Row(
        "FedAvg + local bias + 200 fine-tuning steps (heart-personal)",
        HEART,
        StrategyConfig(server_lr=0.5, local_layers=("linear.bias",), finetune_steps=200),
        "federation",
        personal=True,
    ),
    Row("FedAvg (tcga-best)", TCGA, StrategyConfig(), "site"),
)


def row_scenario(row: Row, seed: int) -> Scenario:
    scenario = load_scenario(row.scenario)
    federation = scenario.config.federation
    rounds = 20 + (row.standardise == "federation")  # the statistics round trains nothing
    config: MedswarmConfig = dataclasses.replace(
        scenario.config,
        federation=dataclasses.replace(
            federation, seed=seed, rounds=rounds, standardise=row.standardise
        ),
        strategy=row.strategy,
    )
    return dataclasses.replace(scenario, config=config)


def run_row(row: Row, seeds: list[int], data_dir: Path) -> dict[str, Any]:
    runs = []
    for seed in seeds:
        scenario = row_scenario(row, seed)
        out = Path(tempfile.mkdtemp(prefix="medswarm-results-"))
        try:
            summary = MultiProcessTestnet(scenario, out / "run", data_dir).up()
        finally:
            shutil.rmtree(out, ignore_errors=True)
        key = "personal_metric" if row.personal else "metric"
        network = {h["site"]: float(h[key]) for h in summary["hospitals"]}
        config = scenario.config
        sites = load_all_sites(config.federation.dataset, data_dir)
        by_site = {spec.site: spec.cluster for spec in scenario.nodes}
        memory = run_strategy(
            sites,
            config.training,
            config.strategy,
            config.federation.rounds,
            seed,
            row.standardise,
            [by_site[site.site] for site in sites],
        )
        scores = memory.personal_scores if row.personal else memory.global_scores
        shortcut = {s.site: s.metric for s in scores}
        runs.append(
            {
                "seed": seed,
                "network": network,
                "network_mean": statistics.fmean(network.values()),
                "shortcut_mean": statistics.fmean(shortcut.values()),
                "same_as_shortcut": all(
                    abs(network[site] - shortcut[site]) < 1e-9 for site in shortcut
                ),
                "nodes_agree": summary["nodes_agree"],
                "seconds": summary["seconds"],
                "metric_name": summary["metric_name"],
            }
        )
        print(
            f"  seed {seed}: {runs[-1]['network_mean']:.4f} ({summary['seconds']:.0f} s)",
            flush=True,
        )
    means = [r["network_mean"] for r in runs]
    return {
        "name": row.name,
        "scenario": str(row.scenario),
        "strategy": dataclasses.asdict(row.strategy),
        "standardise": row.standardise,
        "personal": row.personal,
        "mean": statistics.fmean(means),
        "std": statistics.pstdev(means),
        "per_site": {
            site: statistics.fmean(r["network"][site] for r in runs) for site in runs[0]["network"]
        },
        "same_as_shortcut": all(r["same_as_shortcut"] for r in runs),
        "runs": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--only", default=None, help="run the rows whose name contains this")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", type=Path, default=Path("bench/results/strategies.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    data_dir = resolve_data_dir(args.data_dir, os.environ)
    results = []
    for row in ROWS:
        if args.only and args.only not in row.name:
            continue
        print(f"{row.name}:", flush=True)
        results.append(run_row(row, args.seeds, data_dir))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"seeds": args.seeds, "rows": results}, indent=2) + "\n")
    print(
        "\n| method | scenario | "
        + " | ".join(results[0]["per_site"])
        + " | mean ± std | same as shortcut |"
    )
    for r in results:
        cells = " | ".join(f"{v:.4f}" for v in r["per_site"].values())
        print(
            f"| {r['name']} | {Path(r['scenario']).stem} | {cells} | "
            f"{r['mean']:.4f} ± {r['std']:.4f} | {'yes' if r['same_as_shortcut'] else 'NO'} |"
        )


if __name__ == "__main__":
    main()
