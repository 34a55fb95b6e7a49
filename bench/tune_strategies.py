"""Choose each strategy's server hyper-parameters on validation data, never the test split.

Each site's training split is cut into 4 folds (a fixed-seed shuffle); each fold in turn is
the validation set and the other three the training rows, so every training row is validated
once (a single 25% cut, :func:`node.simulate.validation_view`, leaves Switzerland 8 validation
rows, too few to rank anything). Every candidate runs 20 rounds of
:func:`node.strategy_sim.run_strategy` per fold for seeds 0, 1, 2 with the default local
training and is ranked by mean validation accuracy over sites, folds and seeds (ties: lower
mean validation loss). Personalisation (local bias, fine-tuning steps, a fixed count or each
site's own choice by cross-validation inside its training rows, ``finetune_select``, with or
without Ditto's proximal term, ``finetune_mu``) is then
tuned on top of FedAvg and of the best global strategy. The test split is never read.
``--bases fedavg scaffold`` skips the global search and personalises the strategies chosen
earlier (``node.strategy_sim.TUNED_HEART`` / ``TUNED_HEART_POOLED``).
``--standardise federation`` tunes under pooled feature statistics agreed in a first round
(``federation.standardise``, :mod:`node.standardise`), computed from each fold's training rows.
Run from the project root: ``python bench/tune_strategies.py [--data-dir DIR] [--standardise
federation]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import os
import time
from collections.abc import Sequence

import numpy as np
import torch

from node.data import SiteData, load_all_sites, resolve_data_dir
from node.strategies import StrategyConfig
from node.strategy_sim import TUNED_HEART, TUNED_HEART_POOLED, run_strategy
from node.training import TrainingConfig

SERVER_LRS = (0.03, 0.1, 0.3, 1.0)
TAUS = (1e-3, 1e-2, 1e-1)
GLOBAL_CANDIDATES: tuple[StrategyConfig, ...] = (
    *(StrategyConfig("fedavg", server_lr=lr) for lr in (0.5, 1.0, 1.5, 2.0)),
    *(StrategyConfig("fedprox", proximal_mu=mu) for mu in (0.001, 0.01, 0.1, 1.0)),
    *(
        StrategyConfig(name, server_lr=lr, tau=tau)
        for name in ("fedadam", "fedyogi", "fedadagrad")
        for lr, tau in itertools.product(SERVER_LRS, TAUS)
    ),
    *(StrategyConfig("scaffold", server_lr=lr) for lr in (0.5, 1.0, 1.5, 2.0)),
)
LOCAL_LAYERS: tuple[tuple[str, ...], ...] = ((), ("linear.bias",))
FINETUNE_STEPS = (0, 10, 20, 50, 100, 200)
FINETUNE_MUS = (0.0, 0.1, 1.0)
SEEDS = (0, 1, 2)
ROUNDS = 20
FOLDS = 4
FOLD_SEED = 7

Row = tuple[float, float, np.ndarray, float, StrategyConfig]


def validation_fold(site: SiteData, fold: int, folds: int = FOLDS) -> SiteData:
    """Return ``site`` with fold ``fold`` of its training rows in place of its test split."""
    order = np.random.RandomState(FOLD_SEED).permutation(site.n_train)
    held_out = np.sort(np.array_split(order, folds)[fold])
    kept = np.setdiff1d(np.arange(site.n_train), held_out)
    return dataclasses.replace(
        site,
        train_x=site.train_x[kept],
        train_y=site.train_y[kept],
        test_x=site.train_x[held_out],
        test_y=site.train_y[held_out],
    )


def evaluate_candidate(
    folds: Sequence[Sequence[SiteData]],
    strategy: StrategyConfig,
    seeds: Sequence[int],
    rounds: int,
    standardise: str = "site",
) -> Row:
    """Return (mean accuracy, mean loss, per-site accuracy, seconds per run, strategy)."""
    start = time.perf_counter()
    runs = [
        run_strategy(sites, TrainingConfig(), strategy, rounds, seed, standardise)
        for sites in folds
        for seed in seeds
    ]
    scores = [r.personal_scores if strategy.personalised else r.global_scores for r in runs]
    accuracy = np.array([[s.metric for s in run] for run in scores])
    loss = float(np.mean([[s.loss for s in run] for run in scores]))
    seconds = (time.perf_counter() - start) / len(runs)
    return float(accuracy.mean()), loss, accuracy.mean(axis=0), seconds, strategy


def _print(rows: Sequence[Row]) -> None:
    for accuracy, loss, per_site, seconds, strategy in sorted(rows, key=lambda r: (-r[0], r[1])):
        sites_txt = " ".join(f"{a:.3f}" for a in per_site)
        print(f"{accuracy:.4f} loss {loss:.4f} [{sites_txt}] {seconds:5.2f}s/run  {strategy}")


def _global_search(
    folds: Sequence[Sequence[SiteData]], args: argparse.Namespace, rounds: int
) -> list[StrategyConfig]:
    """Rank every global candidate; return FedAvg's best and the best of all."""
    rows = [
        evaluate_candidate(folds, c, args.seeds, rounds, args.standardise)
        for c in GLOBAL_CANDIDATES
    ]
    best: dict[str, Row] = {}
    for name in dict.fromkeys(r[4].name for r in rows):
        print(f"\n## {name}")
        mine = [r for r in rows if r[4].name == name]
        _print(mine)
        best[name] = min(mine, key=lambda r: (-r[0], r[1]))
    top = min(best.values(), key=lambda r: (-r[0], r[1]))[4]
    return [best["fedavg"][4], top]


def main() -> None:
    """Print every candidate's validation accuracy, best first, per strategy."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--standardise", choices=["site", "federation"], default="site")
    parser.add_argument(
        "--bases",
        nargs="+",
        default=None,
        help="personalise these tuned strategies only, without the global search",
    )
    args = parser.parse_args()
    # the statistics round trains nothing, so it comes on top of the training rounds
    rounds = args.rounds + (args.standardise == "federation")
    torch.set_num_threads(1)
    sites = load_all_sites("heart-disease", resolve_data_dir(args.data_dir, os.environ))
    folds = [[validation_fold(s, k) for s in sites] for k in range(FOLDS)]
    print(
        f"{FOLDS} folds, validation sizes {[s.n_test for s in folds[0]]}; seeds {args.seeds}; "
        f"standardise {args.standardise}; rounds {rounds}"
    )
    tuned = TUNED_HEART_POOLED if args.standardise == "federation" else TUNED_HEART
    bases = (
        [tuned[name] for name in args.bases] if args.bases else _global_search(folds, args, rounds)
    )
    for base in dict.fromkeys(bases):
        print(f"\n## personalised {base.name}")
        personal = [
            evaluate_candidate(
                folds,
                dataclasses.replace(
                    base,
                    local_layers=layers,
                    finetune_steps=steps,
                    finetune_select=select,
                    finetune_mu=mu,
                ),
                args.seeds,
                rounds,
                args.standardise,
            )
            for layers, steps, select, mu in itertools.product(
                LOCAL_LAYERS, FINETUNE_STEPS, (False, True), FINETUNE_MUS
            )
            if (layers or steps) and not (steps == 0 and (select or mu))
        ]
        _print(personal)


if __name__ == "__main__":
    main()
