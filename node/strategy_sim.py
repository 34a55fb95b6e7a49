"""Run one federated strategy (:mod:`node.strategies`) in memory over a data set's sites.

Every site is the node's own :class:`~node.learner.SiteLearner`, so the learning is the
nodes' code: the same training seeds, the same two-tier averaging (``--clusters``; one
cluster by default) and server step, the same statistics round and personalisation. Only
the network and the chain are left out; with a scenario's clusters the result equals the
node processes' per hospital. With ``fedavg`` and ``server_lr = 1`` the run is bit-identical
to :func:`node.simulate.run_fedavg`. A personalised run scores each site's own model (shared
tensors, its local layers, then ``finetune_steps`` local steps) on that site's test split.
Run ``python -m node.strategy_sim --help``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from node.aggregation import cluster_averages
from node.codecs import DEFAULT_TOPK_FRACTION
from node.data import SiteData, load_all_sites, resolve_data_dir
from node.errors import InvalidStrategyConfig
from node.learner import SiteLearner
from node.privacy import ClientPrivacy
from node.simulate import (
    SiteScore,
    initial_weights,
    score_sites,
    site_score,
    validation_view,
    write_json,
)
from node.strategies import (
    STRATEGIES,
    StrategyConfig,
)
from node.training import (
    TrainingConfig,
    default_training_config,
)
from node.update_encoder import UpdateEncoder, encode_aggregate
from node.weights import encoded_size, weights_hash

TUNED_HEART: dict[str, StrategyConfig] = {
    "fedavg": StrategyConfig("fedavg"),
    "fedprox": StrategyConfig("fedprox", proximal_mu=0.1),
    "fedadam": StrategyConfig("fedadam", server_lr=0.03, tau=1e-2),
    "fedyogi": StrategyConfig("fedyogi", server_lr=0.03, tau=1e-2),
    "fedadagrad": StrategyConfig("fedadagrad", server_lr=0.1, tau=1e-1),
    "scaffold": StrategyConfig("scaffold"),
}
"""Server hyper-parameters chosen on Fed-Heart-Disease validation splits (docs/learning.md)."""

TUNED_HEART_POOLED: dict[str, StrategyConfig] = {
    "fedavg": StrategyConfig("fedavg", server_lr=0.5),
    "fedprox": StrategyConfig("fedprox", proximal_mu=1.0),
    "fedadam": StrategyConfig("fedadam", server_lr=0.1, tau=0.1),
    "fedyogi": StrategyConfig("fedyogi", server_lr=0.3, tau=1e-2),
    "fedadagrad": StrategyConfig("fedadagrad", server_lr=0.3, tau=0.1),
    "scaffold": StrategyConfig("scaffold", server_lr=0.5),
}
"""The same choice under ``standardise="federation"`` (``bench/tune_strategies.py
--standardise federation``)."""


@dataclass(frozen=True)
class StrategyRun:
    """The outcome of one strategy for one seed.

    ``global_scores`` score the final global model on every site (empty when sites keep local
    layers, as there is then no single model); ``personal_scores`` score each site's own
    model on its own test split (empty unless the strategy personalises).
    """

    strategy: StrategyConfig
    seed: int
    global_scores: tuple[SiteScore, ...]
    personal_scores: tuple[SiteScore, ...]
    round_metric: tuple[float, ...]
    """Mean metric over sites after each round, before any fine-tuning."""
    update_bytes: int
    """Bytes of every update the sites sent over the run, as encoded with the codec."""
    aggregate_bytes: int
    """Bytes of every cluster aggregate over the run, as the aggregators store them."""
    shared_weights_hash: str
    """:func:`~node.weights.weights_hash` of the final global (shared) weights."""
    optimizer_state_hash: str
    seconds: float

    @property
    def global_metric(self) -> float | None:
        """Unweighted mean over sites of the global model's metric, if there is one."""
        return _mean(self.global_scores)

    @property
    def personal_metric(self) -> float | None:
        """Unweighted mean over sites of the personalised models' metric, if any."""
        return _mean(self.personal_scores)


def _mean(scores: Sequence[SiteScore]) -> float | None:
    return float(np.mean([s.metric for s in scores])) if scores else None


def run_strategy(
    sites: Sequence[SiteData],
    training: TrainingConfig,
    strategy: StrategyConfig,
    rounds: int,
    seed: int,
    standardise: str = "site",
    clusters: Sequence[int] | None = None,
    privacy: ClientPrivacy | None = None,
    noise_keys: Sequence[bytes] = (),
    update_codec: str = "fp32",
    topk_fraction: float = DEFAULT_TOPK_FRACTION,
) -> StrategyRun:
    """Simulate ``rounds`` rounds of ``strategy`` over ``sites`` and score the result.

    Every site is a :class:`~node.learner.SiteLearner`, as on the nodes: each round the sites
    train, their updates are averaged per cluster (``clusters``, a cluster number per site;
    default one cluster) in site order, and the clusters' averages make the next global blob,
    which every site adopts. With ``standardise="federation"`` the first round is the
    statistics round of :mod:`node.standardise` (no training), so ``rounds - 1`` rounds train.
    With ``privacy`` every site clips and noises its updates (:mod:`node.privacy`), its noise
    keyed with its entry of ``noise_keys`` (a key per site, in site order), by default with
    the empty key of simulations. Model updates travel encoded with ``update_codec``
    (:mod:`node.codecs`; top-k keeps ``topk_fraction`` of the values, with each site's error
    feedback), as on the nodes: every cluster's aggregate is made from what its peers decode,
    and is itself encoded and decoded as the nodes' aggregators store it
    (:func:`~node.update_encoder.encode_aggregate`).
    """
    start_time = time.perf_counter()
    genesis = initial_weights(sites, seed)
    keys = list(noise_keys) or [b""] * len(sites)
    if len(keys) != len(sites):
        raise ValueError(f"{len(keys)} noise keys given for {len(sites)} sites")
    learners = [
        SiteLearner(
            site,
            training,
            strategy,
            seed,
            genesis,
            federation_statistics=standardise == "federation",
            privacy=None if privacy is None else dataclasses.replace(privacy, noise_key=key),
        )
        for site, key in zip(sites, keys, strict=True)
    ]
    encoders = [UpdateEncoder(update_codec, seed, site.site, topk_fraction) for site in sites]
    groups = list(clusters) if clusters is not None else [0] * len(sites)
    history = []
    update_bytes = aggregate_bytes = 0
    for round_number in range(1, rounds + 1):
        updates = [learner.train(round_number) for learner in learners]
        encoding = update_codec != "fp32" and not learners[0].statistics_round(round_number)
        if not encoding:
            update_bytes += sum(encoded_size(update) for update, _ in updates)
        else:
            encoded = [
                e.encode(u, round_number) for e, (u, _) in zip(encoders, updates, strict=True)
            ]
            update_bytes += sum(len(e.data) for e in encoded)
            updates = [(e.sent, n) for e, (_, n) in zip(encoded, updates, strict=True)]
        averages = cluster_averages(updates, groups)
        if encoding:  # each cluster's aggregate travels encoded too, as on the nodes
            stored = [(encode_aggregate(a, update_codec), n) for a, n in averages]
            aggregate_bytes += sum(len(e.data) for e, _ in stored)
            averages = [(e.sent, n) for e, n in stored]
        else:
            aggregate_bytes += sum(encoded_size(a) for a, _ in averages)
        blob = learners[0].next_global(averages, len(sites))
        for learner in learners:
            learner.adopt(blob, round_number)
        if not learners[0].statistics_round(round_number):
            history.append(
                float(np.mean([score_sites(x.model(), [x.site])[0].metric for x in learners]))
            )
    own_sites = [learner.site for learner in learners]
    shared = learners[0].shared
    global_scores = () if strategy.local_layers else score_sites(shared, own_sites)
    personal: list[SiteScore] = []
    if strategy.personalised:
        for learner in learners:
            scores = learner.score(blob, rounds)
            assert scores.personal is not None
            personal.append(site_score(learner.site, scores.personal))
    return StrategyRun(
        strategy=strategy,
        seed=seed,
        global_scores=global_scores,
        personal_scores=tuple(personal),
        round_metric=tuple(history),
        update_bytes=update_bytes,
        aggregate_bytes=aggregate_bytes,
        shared_weights_hash=weights_hash(shared),
        optimizer_state_hash=learners[0].optimizer().state_hash(),
        seconds=time.perf_counter() - start_time,
    )


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m node.strategy_sim",
        description="Simulate one federated strategy over a data set's sites in memory and "
        "print each seed's mean metric over sites. Server parameters not given on the "
        "command line take the values tuned on Fed-Heart-Disease validation splits.",
    )
    parser.add_argument("--strategy", choices=STRATEGIES, default="fedavg")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--server-lr", type=float, default=None)
    parser.add_argument("--beta1", type=float, default=None)
    parser.add_argument("--beta2", type=float, default=None)
    parser.add_argument("--tau", type=float, default=None, help="adaptivity epsilon")
    parser.add_argument("--proximal-mu", type=float, default=None, help="FedProx only")
    parser.add_argument(
        "--local-layers",
        nargs="*",
        default=[],
        metavar="TENSOR",
        help="tensors each site keeps local, e.g. linear.bias",
    )
    parser.add_argument(
        "--finetune-steps", type=int, default=0, help="local steps before each site evaluates"
    )
    parser.add_argument(
        "--finetune-select",
        action="store_true",
        help="each site chooses 0 to --finetune-steps steps by cross-validation on its "
        "training rows",
    )
    parser.add_argument(
        "--standardise",
        choices=["site", "federation"],
        default="site",
        help="feature standardisation: each site's own rows (FLamby), or pooled statistics "
        "agreed in a first round without training (federation.standardise)",
    )
    parser.add_argument("--dataset", default="heart-disease")
    parser.add_argument(
        "--clusters",
        type=int,
        nargs="+",
        default=None,
        metavar="C",
        help="a cluster number per site, to average in two tiers as the nodes do "
        "(default: one flat average)",
    )
    parser.add_argument("--data-dir", default=None, help="folder holding the data sets")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument(
        "--validation",
        action="store_true",
        help="score on a validation part of each site's training split instead of its test split",
    )
    parser.add_argument("--json", default=None, help="also write the results to this file")
    return parser.parse_args(argv)


def strategy_from_args(args: argparse.Namespace) -> StrategyConfig:
    """Build the strategy from the tuned defaults and the command line's overrides."""
    overrides = {
        field: getattr(args, field)
        for field in ("server_lr", "beta1", "beta2", "tau", "proximal_mu")
        if getattr(args, field) is not None
    }
    return dataclasses.replace(
        (TUNED_HEART_POOLED if args.standardise == "federation" else TUNED_HEART)[args.strategy],
        **overrides,
        local_layers=tuple(args.local_layers),
        finetune_steps=args.finetune_steps,
        finetune_select=args.finetune_select,
    )


def _table(title: str, runs: Sequence[StrategyRun], personal: bool) -> list[str]:
    rows = [[*(r.personal_scores if personal else r.global_scores)] for r in runs]
    lines = [f"{title}:", " | ".join(["seed", *(s.display_name for s in rows[0]), "mean"])]
    means = []
    for run, scores in zip(runs, rows, strict=True):
        mean = float(np.mean([s.metric for s in scores]))
        means.append(mean)
        cells = [str(run.seed), *(f"{s.metric:.4f}" for s in scores), f"{mean:.4f}"]
        lines.append(" | ".join(cells))
    lines.append(
        f"{title}: mean over seeds {np.mean(means):.4f} ± {np.std(means):.4f} (std over seeds)"
    )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """Run the strategy for each seed and print per-seed and mean metric; exit code 0."""
    args = _parse_args(argv)
    try:
        strategy = strategy_from_args(args)
    except InvalidStrategyConfig as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    sites = load_all_sites(args.dataset, resolve_data_dir(args.data_dir, os.environ))
    if args.validation:
        sites = tuple(validation_view(s) for s in sites)
    training = default_training_config(args.dataset)
    try:
        runs = [
            run_strategy(
                sites, training, strategy, args.rounds, seed, args.standardise, args.clusters
            )
            for seed in args.seeds
        ]
    except InvalidStrategyConfig as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    split = "validation" if args.validation else "test"
    print(f"strategy: {strategy}")
    print(
        f"training: {training}; rounds: {args.rounds}; standardise: {args.standardise}; "
        f"split: {split}"
    )
    lines = []
    if runs[0].global_scores:
        lines += _table("global model", runs, personal=False)
    if runs[0].personal_scores:
        lines += _table("personalised", runs, personal=True)
    print("\n".join(lines))
    if args.json:
        payload = {
            "strategy": dataclasses.asdict(strategy),
            "training": dataclasses.asdict(training),
            "rounds": args.rounds,
            "standardise": args.standardise,
            "split": split,
            "runs": [
                {
                    **dataclasses.asdict(r),
                    "global_metric": r.global_metric,
                    "personal_metric": r.personal_metric,
                }
                for r in runs
            ],
        }
        write_json(args.json, payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
