"""Run a whole federation in one process: an embedded chain and N hospital nodes.

Every piece is real: each node is its own libp2p host on 127.0.0.1 with its own key, the
ledger is the contracts on an in-process EVM, and training is PyTorch on each site's data.
What one process adds is only convenience: the chain is created here and dies with the run,
so its deployment and every event are written into the run directory for the auditor.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio
from eth_account import Account

from gossip.blobs import BlobStore
from incentive.chain import EmbeddedChain
from medswarm.errors import MedswarmError, leaf_errors
from node.config import MedswarmConfig, to_toml_dict
from node.data import SiteData, dataset_sites, load_site, shard
from node.hospital import HospitalNode
from node.simulate import initial_weights, run_local_only
from node.weights import encode_weights, weights_hash
from testnet.attacks import (
    ATTACKS,
    OUTSIDER,
    announce_nan_updates,
    flip_labels,
    inflate_own_evaluation,
    inject,
    longest_run_seconds,
    record_false_aggregates,
    serve_forged_blobs,
    trespass,
    withhold_updates,
)
from testnet.errors import TestnetError
from testnet.html_report import write_report
from testnet.keepers import make_keeper
from testnet.report import HospitalSummary, RoundLog, RunSummary, write_summary

log = logging.getLogger(__name__)

RoundCallback = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class LocalRun:
    """What to run: the config, how many hospitals, where the data is and where results go."""

    config: MedswarmConfig
    nodes: int
    data_dir: Path
    out_dir: Path
    connect_timeout: float = 30.0
    forged_blob_sites: tuple[str, ...] = ()  # sites whose nodes serve corrupted blobs
    silent_sites: tuple[str, ...] = ()  # sites whose nodes never announce their updates
    lying_aggregator_sites: tuple[str, ...] = ()  # sites whose nodes record false aggregates
    nan_update_sites: tuple[str, ...] = ()  # sites whose nodes announce updates holding NaN
    lying_evaluator_sites: tuple[str, ...] = ()  # sites whose nodes claim all contribution
    clusters: tuple[int, ...] = ()  # cluster of each node, in site order (default: all in 0)
    site_files: tuple[Path, ...] = ()  # dataset "csv": each hospital's CSV or Parquet file
    shards: int = 1  # nodes per site, each with its share of the site's training rows
    attack: str = ""  # what the attackers do (testnet/attacks.py ATTACKS)
    attackers: tuple[str, ...] = ()  # the attacking nodes' site names ("<site>-<k>" if sharded)

    @property
    def outsiders(self) -> tuple[str, ...]:
        """Attackers that are never admitted (attack ``outsider``)."""
        return self.attackers if self.attack == OUTSIDER else ()


async def _run_nodes(
    nodes: list[HospitalNode],
    outsiders: list[HospitalNode],
    run: LocalRun,
    local_only: dict[str, float],
) -> None:
    """Start the nodes, connect them, run every round on each, and stop them; the outsiders
    trespass (:func:`testnet.attacks.trespass`) until the rounds are done."""
    federation = run.config.federation
    async with trio.open_nursery() as nursery:
        for node in (*nodes, *outsiders):
            await node.start(nursery)
        for node in nodes:
            await node.register()
        # The first hospital is everyone's bootstrap peer; the rest come from the registry.
        seed_peer = tuple(nodes[0].gossip.listen_addrs[:1])
        for node in nodes:
            bootstrap = () if node is nodes[0] else seed_peer
            await node.connect_to_members(run.connect_timeout, bootstrap)
        bound = longest_run_seconds(run.config)
        for outsider in outsiders:
            nursery.start_soon(
                trespass, outsider, federation.rounds, bound, seed_peer, federation.seed
            )
        async with trio.open_nursery() as rounds:
            for node in nodes:
                rounds.start_soon(node.run, federation.rounds)
            every_site = [n.site for n in (*nodes, *outsiders)]
            rounds.start_soon(_baselines, every_site, run.config, local_only)
        nursery.cancel_scope.cancel()


def shard_sites(sites: list[SiteData], shards: int) -> list[SiteData]:
    """Each site split into ``shards`` nodes' sites ``<site>-1``, ``<site>-2``, ... (every
    row of the training split in exactly one; the test split whole in each)."""
    if shards < 1:
        raise TestnetError(f"shards must be at least 1, got {shards}")
    if shards == 1:
        return sites
    return [
        dataclasses.replace(shard(site, index, shards), site=f"{site.site}-{index + 1}")
        for site in sites
        for index in range(shards)
    ]


def load_sites(dataset: str, nodes: int, data_dir: Path) -> list[SiteData]:
    """The first ``nodes`` sites of a data set (fails before anything starts if data is missing)."""
    sites = dataset_sites(dataset)
    if not 1 <= nodes <= len(sites):
        raise TestnetError(
            f"{dataset} has {len(sites)} sites ({', '.join(sites)}); --nodes must be 1 to "
            f"{len(sites)}, got {nodes}"
        )
    return [load_site(dataset, site, data_dir) for site in sites[:nodes]]


async def run_local_federation(run: LocalRun, on_round: RoundCallback | None = None) -> RunSummary:
    """Launch the chain and the nodes, run every round, pay rewards, write the run directory."""
    started = time.monotonic()
    config = run.config
    federation = config.federation
    if federation.dataset == "csv":
        if len(run.site_files) != run.nodes:
            raise TestnetError(
                f"the csv data set needs one file per hospital: {run.nodes} nodes, "
                f"{len(run.site_files)} files"
            )
        sites = [
            load_site("csv", str(f), run.data_dir, label_column=federation.csv_label)
            for f in run.site_files
        ]
    else:
        sites = load_sites(federation.dataset, -(-run.nodes // run.shards), run.data_dir)
        sites = shard_sites(sites, run.shards)[: run.nodes]
    unknown = sorted(set(run.attackers) - {site.site for site in sites})
    if unknown or (run.attackers and run.attack not in ATTACKS):
        raise TestnetError(
            f"attack {run.attack!r} by {list(run.attackers)}: attacks are {ATTACKS}, and "
            f"attackers must be among {[site.site for site in sites]} (unknown: {unknown})"
        )
    run.out_dir.mkdir(parents=True, exist_ok=True)
    _write_config(run.out_dir / "config.json", config, run)

    chain = EmbeddedChain(num_accounts=run.nodes + 1)
    admin_key, member_keys = chain.private_keys[0], chain.private_keys[1 : run.nodes + 1]
    clusters = run.clusters or (0,) * run.nodes
    if len(clusters) != run.nodes:
        raise TestnetError(f"{len(clusters)} cluster assignments given for {run.nodes} nodes")
    pool_wei = int(federation.reward_pool_eth * 10**18)
    start_weights = initial_weights(sites, federation.seed, run.config.training.hidden_units)
    keeper = make_keeper(federation.ledger, chain.w3, admin_key, pool_wei, chain.lock)
    keeper.deploy(bytes.fromhex(weights_hash(start_weights)))
    for site, key, cluster in zip(sites, member_keys, clusters, strict=True):
        if site.site not in run.outsiders:
            keeper.admit(Account.from_key(key).address, site.display_name, cluster)
    books = [keeper.book(key, federation.takeover_timeout) for key in member_keys]
    round_log = RoundLog(
        run.out_dir / "rounds.jsonl",
        run.nodes - len(run.outsiders),
        run.out_dir / "events.jsonl",
    )

    def on_event(event: dict[str, Any]) -> None:
        line = round_log.record(event)
        if line is not None and on_round is not None:
            on_round(line)

    trained_on = [
        flip_labels(site) if run.attack == "label-flip" and site.site in run.attackers else site
        for site in sites
    ]
    nodes = [
        HospitalNode(
            config,
            site,
            book,
            key,
            BlobStore(run.out_dir / "nodes" / site.site / "blobs", config.network.max_blob_bytes),
            start_weights,
            name=site.site,
            on_event=on_event,
        )
        for site, book, key in zip(trained_on, books, member_keys, strict=True)
    ]
    for node in nodes:
        if node.site.site in run.forged_blob_sites:
            serve_forged_blobs(node)
        if node.site.site in run.silent_sites:
            withhold_updates(node)
        if node.site.site in run.lying_aggregator_sites:
            record_false_aggregates(node)
        if node.site.site in run.nan_update_sites:
            announce_nan_updates(node)
        if node.site.site in run.lying_evaluator_sites:
            inflate_own_evaluation(node)
        if node.site.site in run.attackers:
            inject(node, run.attack, federation.seed)
    local_only: dict[str, float] = {}
    outsiders = [node for node in nodes if node.site.site in run.outsiders]
    members = [node for node in nodes if node.site.site not in run.outsiders]
    try:
        await _run_nodes(members, outsiders, run, local_only)
    except* MedswarmError as group:
        keeper.write_record(run.out_dir)  # what happened, for the audit
        reasons = sorted({str(error) for error in leaf_errors(group)})
        raise TestnetError("the federation stopped: " + "; ".join(reasons)) from None

    staying = [node for node in members if node.left is None]  # excluded nodes left early
    final_hashes = {node.global_hash for node in staying}
    final = staying[0]
    model_path = run.out_dir / "model-final.bin"
    model_path.write_bytes(encode_weights(final.global_weights))
    keys = [key for node, key in zip(nodes, member_keys, strict=True) if node in members]
    credits = {a.lower(): wei for a, wei in keeper.pay_out(keys).items()}
    last_round = round_log.completed[-1]
    hospitals = []
    for node in nodes:
        # an outsider has no federated model: it took part in no round
        seen = _last_seen(round_log, node.name) if node in members else {}
        hospitals.append(
            HospitalSummary(
                name=node.site.display_name,
                site=node.site.site,
                address=node.address,
                samples=len(node.site.train_y),
                local_only_accuracy=local_only[node.site.site],
                federated_accuracy=seen.get("test_accuracy"),
                contribution=keeper.contribution(node.address),
                reward_wei=credits.get(node.address.lower(), 0),
                metric=seen.get("test_metric"),
                personal_metric=seen.get("personal_metric"),
            )
        )
    keeper.write_record(run.out_dir)
    summary = RunSummary(
        dataset=federation.dataset,
        federation=federation.name,
        seed=federation.seed,
        rounds=federation.rounds,
        nodes_agree=len(final_hashes) == 1 and all(r["nodes_agree"] for r in round_log.completed),
        final_global_hash=weights_hash(final.global_weights),
        final_model=str(model_path),
        final_mean_accuracy=float(last_round["mean_test_accuracy"]),
        mean_local_only_accuracy=statistics.fmean(local_only.values()),
        seconds=round(time.monotonic() - started, 2),
        hospitals=hospitals,
        chain={"kind": "embedded", **keeper.addresses(), "reward_pool_wei": pool_wei},
        metric_name=str(last_round["metric_name"]),
        final_mean_metric=float(last_round["mean_test_metric"]),
        final_mean_personal_metric=last_round["mean_personal_metric"],
        epsilon=last_round["epsilon"],
        delta=last_round["delta"],
    )
    write_summary(run.out_dir / "summary.json", summary)
    write_report(run.out_dir)
    return summary


def _last_seen(round_log: RoundLog, node: str) -> dict[str, Any]:
    """The node's results in the last round it took part in."""
    for line in reversed(round_log.completed):
        if node in line["nodes"]:
            return dict(line["nodes"][node])
    raise TestnetError(f"node {node} completed no round")


async def _baselines(sites: list[SiteData], config: MedswarmConfig, out: dict[str, float]) -> None:
    """Each site's local-only test accuracy with the same training budget (for comparison)."""
    federation = config.federation
    result = await trio.to_thread.run_sync(
        run_local_only, sites, config.training, federation.rounds, federation.seed
    )
    out.update({score.site: score.accuracy for score in result.scores})


def _write_config(path: Path, config: MedswarmConfig, run: LocalRun) -> None:
    document = to_toml_dict(config)
    document["run"] = {"nodes": run.nodes, "data_dir": str(run.data_dir)}
    path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
