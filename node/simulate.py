"""In-memory simulation of federated training, with local-only and pooled baselines.

Uses exactly the node's building blocks: every site trains from the same global weights
(:func:`~node.training.train_local`), publishes ``delta(new, global)`` with its sample count,
and the next global model is ``apply_delta(global, fedavg(deltas))`` with the deltas in site
order. Run ``python -m node.simulate --help`` for the command line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from node.aggregation import apply_delta, delta, fedavg
from node.data import (
    TASKS,
    SiteData,
    load_all_sites,
    load_csv_pooled,
    load_csv_sites,
    load_pooled,
    resolve_data_dir,
    task_spec,
)
from node.data.splits import per_class_split, shuffle_split
from node.model import build_model
from node.training import (
    Metrics,
    TrainingConfig,
    default_training_config,
    derive_seed,
    evaluate,
    train_local,
)
from node.weights import Weights, state_dict_to_weights

VALIDATION_FRACTION = 0.25
VALIDATION_SEED = 7


@dataclass(frozen=True)
class SiteScore:
    """The scores of one model on one site's evaluation split.

    ``metric`` is the task's headline score (see :class:`~node.training.Metrics`);
    ``accuracy`` is NaN for survival tasks.
    """

    site: str
    display_name: str
    accuracy: float
    loss: float
    samples: int
    metric: float = math.nan


@dataclass(frozen=True)
class RunResult:
    """The per-site scores of one method for one seed, with its wall-clock time."""

    method: str
    seed: int
    scores: tuple[SiteScore, ...]
    seconds: float
    round_accuracy: tuple[float, ...] = ()
    """Mean accuracy over sites after each round (federated runs only)."""
    metric_name: str = "accuracy"
    round_metric: tuple[float, ...] = ()
    """Mean of the task's metric over sites after each round (federated runs only)."""

    @property
    def mean_accuracy(self) -> float:
        """Unweighted mean of the sites' accuracies (FLamby's metric for heart disease)."""
        return float(np.mean([s.accuracy for s in self.scores]))

    @property
    def mean_metric(self) -> float:
        """Unweighted mean of the sites' metric, over the sites where it is defined.

        FLamby's summary score. A site's C-index is undefined (NaN) when its split holds no
        comparable pair; such a site is left out of the mean (NaN if every site is).
        """
        return _mean_defined([s.metric for s in self.scores])


def _mean_defined(values: Sequence[float]) -> float:
    defined = [v for v in values if not math.isnan(v)]
    return float(np.mean(defined)) if defined else math.nan


def initial_weights(sites: Sequence[SiteData], seed: int, hidden_units: int = 0) -> Weights:
    """Return the shared starting model for ``sites``' data set, built from ``seed``."""
    site = sites[0]
    return state_dict_to_weights(build_model(site.dataset, site.n_features, seed, hidden_units))


def score_sites(weights: Weights, sites: Sequence[SiteData]) -> tuple[SiteScore, ...]:
    """Evaluate ``weights`` on every site's test split."""
    return tuple(
        site_score(site, evaluate(weights, site.test_x, site.test_y, site.dataset))
        for site in sites
    )


def site_score(site: SiteData, metrics: Metrics) -> SiteScore:
    """``metrics`` of a model on ``site``'s evaluation split as a :class:`SiteScore`."""
    return SiteScore(
        site.site,
        site.display_name,
        metrics.accuracy,
        metrics.loss,
        metrics.samples,
        metrics.metric,
    )


def _metric_name(sites: Sequence[SiteData]) -> str:
    return task_spec(sites[0].dataset).metric


def fedavg_round(
    global_weights: Weights, sites: Sequence[SiteData], config: TrainingConfig, seed: int, rnd: int
) -> Weights:
    """Run one FedAvg round: local training from ``global_weights``, then aggregate deltas."""
    updates = []
    for site in sites:
        result = train_local(
            global_weights, site, config, derive_seed(seed, "train", rnd, site.site)
        )
        updates.append((delta(result.weights, global_weights), result.samples))
    return apply_delta(global_weights, fedavg(updates))


def run_fedavg(
    sites: Sequence[SiteData], config: TrainingConfig, rounds: int, seed: int
) -> RunResult:
    """Simulate ``rounds`` FedAvg rounds over ``sites`` and score the final global model."""
    start = time.perf_counter()
    weights = initial_weights(sites, seed)
    accuracy_history, metric_history = [], []
    for rnd in range(rounds):
        weights = fedavg_round(weights, sites, config, seed, rnd)
        scores = score_sites(weights, sites)
        accuracy_history.append(float(np.mean([s.accuracy for s in scores])))
        metric_history.append(_mean_defined([s.metric for s in scores]))
    scores = score_sites(weights, sites)
    return RunResult(
        "FedAvg",
        seed,
        scores,
        time.perf_counter() - start,
        tuple(accuracy_history),
        _metric_name(sites),
        tuple(metric_history),
    )


def run_local_only(
    sites: Sequence[SiteData], config: TrainingConfig, rounds: int, seed: int
) -> RunResult:
    """Train each site alone, as a federation of one, for ``rounds`` rounds.

    Every round is the same local training a node does in the federation (a fresh optimiser
    starting from the site's own model of the previous round), so a site makes exactly the
    updates it makes in the federation, minus the averaging. Each site's model is scored on
    its own test split only.
    """
    start = time.perf_counter()
    initial = initial_weights(sites, seed)
    scores: list[SiteScore] = []
    for site in sites:
        weights = initial
        for rnd in range(rounds):
            seed_of_round = derive_seed(seed, "local", rnd, site.site)
            weights = train_local(weights, site, config, seed_of_round).weights
        scores.extend(score_sites(weights, [site]))
    seconds = time.perf_counter() - start
    return RunResult("Local only", seed, tuple(scores), seconds, metric_name=_metric_name(sites))


def train_pooled(
    pooled_sites: Sequence[SiteData], config: TrainingConfig, rounds: int, seed: int
) -> Weights:
    """Train one model on all sites' training rows together.

    ``pooled_sites`` are standardised with pooled statistics (:func:`node.data.load_pooled`).
    Like a federation of one that holds every site's rows: ``rounds`` rounds, each with a
    fresh optimiser making as many updates as all sites make in one federated round.
    """
    union = SiteData(
        dataset=pooled_sites[0].dataset,
        site="pooled",
        display_name="Pooled",
        train_x=np.concatenate([s.train_x for s in pooled_sites]),
        train_y=np.concatenate([s.train_y for s in pooled_sites]),
        test_x=np.concatenate([s.test_x for s in pooled_sites]),
        test_y=np.concatenate([s.test_y for s in pooled_sites]),
    )
    steps = sum(config.steps_for(s.n_train) for s in pooled_sites)
    solo = dataclasses.replace(config, local_steps=steps, local_epochs=None)
    weights = initial_weights(pooled_sites, seed)
    for rnd in range(rounds):
        weights = train_local(weights, union, solo, derive_seed(seed, "pooled", rnd)).weights
    return weights


def run_pooled(
    pooled_sites: Sequence[SiteData],
    config: TrainingConfig,
    rounds: int,
    seed: int,
    flamby_eval_sites: Sequence[SiteData] = (),
) -> list[RunResult]:
    """Train the pooled baseline and score it on every site's test split.

    The first result scores test rows standardised with the pooled statistics, as the model
    was trained. If ``flamby_eval_sites`` (the sites standardised with their own statistics)
    are given, a second result scores those test rows instead, which is how FLamby's benchmark
    evaluates its pooled model.
    """
    start = time.perf_counter()
    weights = train_pooled(pooled_sites, config, rounds, seed)
    seconds = time.perf_counter() - start
    metric_name = _metric_name(pooled_sites)
    scores = score_sites(weights, pooled_sites)
    results = [RunResult("Pooled", seed, scores, seconds, metric_name=metric_name)]
    if flamby_eval_sites:
        scores = score_sites(weights, flamby_eval_sites)
        results.append(
            RunResult("Pooled (FLamby eval)", seed, scores, seconds, metric_name=metric_name)
        )
    return results


def validation_view(
    site: SiteData,
    fraction: float = VALIDATION_FRACTION,
    *,
    stratify: bool = False,
    seed: int = VALIDATION_SEED,
) -> SiteData:
    """Return ``site`` with a validation part of its training rows in place of its test split.

    For choosing hyper-parameters without looking at the test split. The rows are picked by a
    fixed-seed shuffle, or with ``stratify`` per class (binary label, or the event indicator
    for survival; :func:`node.data.splits.per_class_split`), which keeps rare classes in
    both parts. ``seed`` picks another validation part. The features keep the site's
    standardisation.
    """
    if stratify:
        classes = site.train_y if site.train_y.ndim == 1 else site.train_y[:, 0]
        train_idx, val_idx = per_class_split(classes, fraction, seed)
    else:
        train_idx, val_idx = shuffle_split(site.n_train, 1.0 - fraction, seed)
    train_idx, val_idx = np.sort(train_idx), np.sort(val_idx)
    return dataclasses.replace(
        site,
        train_x=site.train_x[train_idx],
        train_y=site.train_y[train_idx],
        test_x=site.train_x[val_idx],
        test_y=site.train_y[val_idx],
    )


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m node.simulate",
        description="Simulate FedAvg over a data set's sites in memory and compare it with "
        "local-only and pooled training, printing the data set's metric per site.",
    )
    parser.add_argument(
        "--dataset", default="heart-disease", choices=sorted(TASKS), help="default heart-disease"
    )
    parser.add_argument("--data-dir", default=None, help="folder holding the data sets")
    parser.add_argument(
        "--csv", nargs="+", type=Path, default=[], help="one CSV file per hospital (--dataset csv)"
    )
    parser.add_argument("--csv-label", default="", help="the label column of the CSV files")
    parser.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="default: the rounds the data set's hyper-parameters were chosen for",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument(
        "--validation",
        action="store_true",
        help="score on a validation part of each site's training split instead of its test split",
    )
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args(argv)
    if (args.dataset == "csv") != bool(args.csv):
        parser.error("--csv FILE... is required with --dataset csv and only allowed with it")
    if args.dataset == "csv" and not args.csv_label:
        parser.error("--csv-label names the label column of the CSV files")
    return args


def _table(results: Sequence[RunResult]) -> str:
    names = [s.display_name for s in results[0].scores]
    lines = [" | ".join(["method", "seed", *names, "mean", "seconds"])]
    for r in results:
        cells = [r.method, str(r.seed), *(f"{s.metric:.4f}" for s in r.scores)]
        lines.append(" | ".join([*cells, f"{r.mean_metric:.4f}", f"{r.seconds:.2f}"]))
    for method in dict.fromkeys(r.method for r in results):
        means = [r.mean_metric for r in results if r.method == method]
        lines.append(f"{method}: mean over seeds {np.mean(means):.4f} (std {np.std(means):.4f})")
    return "\n".join(lines)


def _load(args: argparse.Namespace) -> tuple[tuple[SiteData, ...], tuple[SiteData, ...]]:
    """Return each site as a hospital sees it, and the sites as the pooled baseline sees them."""
    if args.dataset == "csv":
        return load_csv_sites(args.csv, args.csv_label), load_csv_pooled(args.csv, args.csv_label)
    data_dir = resolve_data_dir(args.data_dir, os.environ)
    return load_all_sites(args.dataset, data_dir), load_pooled(args.dataset, data_dir)


def _same_test_data(first: Sequence[SiteData], second: Sequence[SiteData]) -> bool:
    return all(np.array_equal(a.test_x, b.test_x) for a, b in zip(first, second, strict=True))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the simulation and baselines for each seed, print a table; return an exit code."""
    args = _parse_args(argv)
    torch.set_num_threads(args.threads)
    sites, pooled = _load(args)
    if args.validation:
        # Fed-Heart-Disease keeps the plain split its documented selection used.
        stratify = args.dataset != "heart-disease"
        sites = tuple(validation_view(s, stratify=stratify) for s in sites)
        pooled = tuple(validation_view(s, stratify=stratify) for s in pooled)
    config = default_training_config(args.dataset)
    rounds = args.rounds if args.rounds is not None else task_spec(args.dataset).rounds
    # The pooled model is also scored on the sites' own standardisation when that differs.
    own_view = () if _same_test_data(sites, pooled) else sites
    results: list[RunResult] = []
    for seed in args.seeds:
        results.append(run_fedavg(sites, config, rounds, seed))
        results.append(run_local_only(sites, config, rounds, seed))
        results.extend(run_pooled(pooled, config, rounds, seed, own_view))
    split = "validation" if args.validation else "test"
    print(f"data set: {args.dataset}; metric: {results[0].metric_name} on the {split} split")
    print(f"config: {config}; rounds: {rounds}")
    print(_table(sorted(results, key=lambda r: (r.method, r.seed))))
    if args.json:
        payload = {
            "dataset": args.dataset,
            "config": dataclasses.asdict(config),
            "rounds": rounds,
            "split": split,
            "metric": results[0].metric_name,
            "results": [
                {
                    **dataclasses.asdict(r),
                    "mean_accuracy": r.mean_accuracy,
                    "mean_metric": r.mean_metric,
                }
                for r in results
            ],
        }
        write_json(args.json, payload)
    return 0


def write_json(path: str, payload: dict[str, Any]) -> None:
    """Write a run's results (the ``--json`` file of the simulators)."""
    with open(path, "w", encoding="utf-8") as stream:
        json.dump(payload, stream, indent=2)


if __name__ == "__main__":
    sys.exit(main())
