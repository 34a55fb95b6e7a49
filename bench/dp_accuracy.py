"""Fed-Heart-Disease accuracy under client-level differential privacy, in memory.

    python bench/dp_accuracy.py [--rounds 20] [--seeds 0 1 2 3 4] [--epsilons 1 3 8 inf]
                                [--clip 0.5] [--delta 1e-5] [--out bench/results/dp_accuracy.json]

For each target epsilon the accountant (node/accountant.py) finds the smallest noise
multiplier whose epsilon at ``--delta`` after ``--rounds`` rounds is at most the target
(every member takes part in every round: sample rate 1). Every site then clips its update to
``--clip`` and adds Gaussian noise of that multiplier times the clip before it is averaged
(node/privacy.py), in :func:`node.strategy_sim.run_strategy`: the nodes' own learning code,
without network or chain. ``inf`` clips without noise; a run without clipping or noise
(``off``) is always added as the baseline. FedAvg with the data set's default training, each
site standardising its own rows, scored on the test split: the mean accuracy over the four
hospitals of the final global model, then its mean and standard deviation over seeds.

The default clip, 0.5, is about the median update length of a FedAvg run without DP (round 1:
0.68-0.89, later rounds 0.23-0.94), read once from training updates; a federation that wants
its guarantee to hold must fix the clip beforehand, not from its members' updates. The noise
is drawn with the simulations' empty key (public, reproducible), which changes nothing in
what the accuracy measures. Run from the project root.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from node.accountant import epsilon_after, noise_multiplier_for
from node.data import load_all_sites, resolve_data_dir
from node.privacy import ClientPrivacy
from node.strategy_sim import TUNED_HEART, run_strategy
from node.training import default_training_config

DATASET = "heart-disease"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python bench/dp_accuracy.py",
        description="Fed-Heart-Disease accuracy at target client-level epsilons (in memory).",
    )
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument(
        "--epsilons", type=float, nargs="+", default=[1.0, 3.0, 8.0, math.inf], metavar="EPS"
    )
    parser.add_argument("--clip", type=float, default=0.5, help="L2 clipping norm (default 0.5)")
    parser.add_argument("--delta", type=float, default=1e-5, help="default 1e-5")
    parser.add_argument("--data-dir", default=None, help="folder holding the data sets")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/dp_accuracy.json"))
    return parser.parse_args(argv)


def label(epsilon: float | None) -> str:
    """How a setting is named in the table and the JSON: ``off``, ``inf`` or the epsilon."""
    if epsilon is None:
        return "off"
    return "inf" if math.isinf(epsilon) else f"{epsilon:g}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run every setting for every seed, print the table and write the JSON; exit code 0."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    sites = load_all_sites(DATASET, resolve_data_dir(args.data_dir, os.environ))
    training = default_training_config(DATASET)
    strategy = TUNED_HEART["fedavg"]
    rows: list[dict[str, Any]] = []
    started = time.monotonic()
    print(f"FedAvg on {DATASET}: accuracy at each target epsilon (mean ± std over seeds)")
    for target in [None, *args.epsilons]:
        noise = 0.0 if target is None else noise_multiplier_for(target, args.rounds, args.delta)
        privacy = None if target is None else ClientPrivacy(args.clip, noise)
        spent = epsilon_after(noise, args.rounds, args.delta) if noise > 0 else None
        accuracies = []
        for seed in args.seeds:
            run = run_strategy(sites, training, strategy, args.rounds, seed, privacy=privacy)
            assert run.global_metric is not None  # FedAvg has one global model
            accuracies.append(run.global_metric)
        rows.append(
            {
                "epsilon": label(target),
                "noise_multiplier": noise,
                "noise_std": noise * args.clip if privacy else 0.0,
                "epsilon_spent": spent,
                "accuracies": accuracies,
                "mean": statistics.fmean(accuracies),
                "std": statistics.pstdev(accuracies),
            }
        )
        print(row_line(rows[-1]), flush=True)
    payload = {
        "dataset": DATASET,
        "rounds": args.rounds,
        "seeds": args.seeds,
        "clip": args.clip,
        "delta": args.delta,
        "sample_rate": 1.0,
        "training": dataclasses.asdict(training),
        "strategy": dataclasses.asdict(strategy),
        "metric": "accuracy (mean over the hospitals' test splits; std over seeds)",
        "seconds": round(time.monotonic() - started, 1),
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"{len(args.seeds)} seeds, {args.rounds} rounds, clip {args.clip}, delta {args.delta:g}")
    print(f"wrote {args.out}")
    return 0


def row_line(row: dict[str, Any]) -> str:
    spent = "-" if row["epsilon_spent"] is None else f"{row['epsilon_spent']:.3f}"
    return (
        f"epsilon {row['epsilon']:>4}  noise multiplier {row['noise_multiplier']:8.3f}  "
        f"spent {spent:>6}  accuracy {row['mean']:.4f} ± {row['std']:.4f}"
    )


if __name__ == "__main__":
    sys.exit(main())
