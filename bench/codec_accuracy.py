"""Accuracy and bytes per round of each update codec, in memory.

    python bench/codec_accuracy.py [--dataset heart-disease] [--rounds 20] [--seeds 0 1 2 3 4]
                                   [--codecs fp32 fp16 int8 topk] [--topk-fraction 0.01]
                                   [--clusters C ...]
                                   [--out bench/results/codec_accuracy.json]

Each codec runs FedAvg over every site of the data set for ``--rounds`` rounds per seed in
:func:`node.strategy_sim.run_strategy` (the nodes' own learning code, without network or
chain, as ``bench/dp_accuracy.py`` does): every site's model update is encoded with the codec
(:mod:`node.codecs`; top-k with each site's error feedback), each cluster's aggregate is made
from what the peers decode and is itself encoded as the nodes' aggregators store it (fp16 and
int8; :func:`node.update_encoder.encode_aggregate`). The sites form one cluster (flat), or
the clusters of ``--clusters`` (a cluster number per site, in site order: fog, e.g.
``--clusters 0 1 1 0`` pairs Cleveland with VA and Hungary with Switzerland as
``medswarm bench fog`` does). The data set's default training, each site standardising its
own rows, scored on the test split: the mean metric over the sites of the final global model
(accuracy for Fed-Heart-Disease, balanced accuracy for MIT-BIH ECG), then its mean and
standard deviation over seeds. Bytes per round are the encoded updates of all sites in one
round (every round sends the same number of bytes), and apart the clusters' aggregates. The
JSON keeps one entry per data set, so runs on different data sets add up in one file, and a
run with the same setting (rounds, seeds, training) keeps the rows of the codecs and
clusters it did not run. Run from the project root.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from node.codecs import DEFAULT_TOPK_FRACTION, UPDATE_CODECS
from node.data import TASKS, load_all_sites, resolve_data_dir
from node.strategies import StrategyConfig
from node.strategy_sim import TUNED_HEART, run_strategy
from node.training import default_training_config

SETTING = ("dataset", "sites", "rounds", "seeds", "training", "strategy", "metric")
"""What must match for rows of another run of the script to be kept beside this run's."""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python bench/codec_accuracy.py",
        description="Final accuracy and bytes per round of each update codec (in memory).",
    )
    parser.add_argument("--dataset", default="heart-disease")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--codecs", nargs="+", choices=UPDATE_CODECS, default=list(UPDATE_CODECS))
    parser.add_argument("--topk-fraction", type=float, default=DEFAULT_TOPK_FRACTION)
    parser.add_argument(
        "--clusters",
        type=int,
        nargs="+",
        default=None,
        metavar="C",
        help="a cluster number per site, in site order (fog; default: one cluster, flat)",
    )
    parser.add_argument("--data-dir", default=None, help="folder holding the data sets")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/codec_accuracy.json"))
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run every codec for every seed, print the table and write the JSON; exit code 0."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    sites = load_all_sites(args.dataset, resolve_data_dir(args.data_dir, os.environ))
    training = default_training_config(args.dataset)
    strategy = TUNED_HEART["fedavg"] if args.dataset == "heart-disease" else StrategyConfig()
    if args.clusters is not None and len(args.clusters) != len(sites):
        print(f"error: --clusters needs a cluster per site ({len(sites)})", file=sys.stderr)
        return 2
    rows: list[dict[str, Any]] = []
    layout = f"clusters {args.clusters}" if args.clusters else "flat"
    print(f"FedAvg on {args.dataset}, {len(sites)} sites, {layout}: final metric and bytes/round")
    for codec in args.codecs:
        metrics, update_bytes, aggregate_bytes, seconds = [], [], [], []
        for seed in args.seeds:
            run = run_strategy(
                sites,
                training,
                strategy,
                args.rounds,
                seed,
                clusters=args.clusters,
                update_codec=codec,
                topk_fraction=args.topk_fraction,
            )
            assert run.global_metric is not None  # FedAvg has one global model
            metrics.append(run.global_metric)
            update_bytes.append(run.update_bytes)
            aggregate_bytes.append(run.aggregate_bytes)
            seconds.append(run.seconds)
        per_round = statistics.fmean(update_bytes) / args.rounds
        rows.append(
            {
                "codec": codec,
                "topk_fraction": args.topk_fraction if codec == "topk" else None,
                "clusters": args.clusters,
                "metrics": metrics,
                "mean": statistics.fmean(metrics),
                "std": statistics.pstdev(metrics),
                "bytes_per_round": per_round,
                "bytes_per_site_and_round": per_round / len(sites),
                "aggregate_bytes_per_round": statistics.fmean(aggregate_bytes) / args.rounds,
                "seconds_per_seed": statistics.fmean(seconds),
                "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            }
        )
        print(row_line(rows[-1], rows[0]), flush=True)
    payload = {
        "dataset": args.dataset,
        "sites": len(sites),
        "rounds": args.rounds,
        "seeds": args.seeds,
        "training": dataclasses.asdict(training),
        "strategy": dataclasses.asdict(strategy),
        "metric": f"{TASKS[args.dataset].metric} (mean over the sites' test splits; "
        "std over seeds)",
        "rows": rows,
    }
    existing = json.loads(args.out.read_text()) if args.out.exists() else {}
    earlier = existing.get(args.dataset, {})
    if all(earlier.get(key) == json.loads(json.dumps(payload[key])) for key in SETTING):
        # the same setting: keep the rows of codecs and clusters not run again
        kept = [r for r in earlier["rows"] if setting_of(r) not in ran(rows)]
        payload["rows"] = sorted(kept + rows, key=row_order)
    existing[args.dataset] = payload
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(existing, indent=2, sort_keys=True) + "\n")
    print(f"{len(args.seeds)} seeds, {args.rounds} rounds; wrote {args.out}")
    return 0


def setting_of(row: dict[str, Any]) -> tuple[str, float | None, tuple[int, ...] | None]:
    """A row's codec, top-k fraction and clusters (None: flat; rows of earlier runs have
    no clusters)."""
    clusters = row.get("clusters")
    return row["codec"], row["topk_fraction"], tuple(clusters) if clusters else None


def ran(rows: list[dict[str, Any]]) -> set[tuple[str, float | None, tuple[int, ...] | None]]:
    """The settings of ``rows``."""
    return {setting_of(row) for row in rows}


def row_order(row: dict[str, Any]) -> tuple[bool, tuple[int, ...], int]:
    """Flat rows first, then by clusters, then in codec order."""
    clusters = setting_of(row)[2]
    return clusters is not None, clusters or (), UPDATE_CODECS.index(row["codec"])


def row_line(row: dict[str, Any], baseline: dict[str, Any]) -> str:
    """One codec's line: metric, its difference to the first codec, bytes and their ratio,
    and the aggregates' bytes."""
    name = row["codec"] + (f" {row['topk_fraction']:g}" if row["topk_fraction"] else "")
    return (
        f"{name:<12} {row['mean']:.4f} ± {row['std']:.4f} ({row['mean'] - baseline['mean']:+.4f})"
        f"  {row['bytes_per_round']:>12,.0f} bytes/round"
        f" ({row['bytes_per_round'] / baseline['bytes_per_round']:.4f} of {baseline['codec']})"
        f"; aggregates {row['aggregate_bytes_per_round']:,.0f}"
    )


if __name__ == "__main__":
    sys.exit(main())
