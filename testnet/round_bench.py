"""A federation round of node processes with a big model, against the same work in memory.

:func:`measure_round` runs a scenario of ``nodes`` processes (the Fed-Heart-Disease sites
split into shards, two clusters) on anvil whose model is a :class:`~node.model.WideMlp` of
about ``parameters`` parameters, each node training one epoch per round. Each round after the
first (which pays for connections and warm-up) is timed from the previous round's last
``round`` event to its own last one; the result is their median. The baseline, measured in
the same run, is the learning alone: the same local training of every shard and the same
averaging, in this process, with no network and no chain.
"""

from __future__ import annotations

import json
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from node.aggregation import apply_delta, delta, fedavg
from node.codecs import DEFAULT_TOPK_FRACTION
from node.config import MedswarmConfig, config_from_dict
from node.data import load_site, shard
from node.model import hidden_units_for
from node.simulate import initial_weights
from node.training import derive_seed, train_local
from node.weights import encode_weights
from testnet.errors import TestnetError
from testnet.multiproc import MultiProcessTestnet
from testnet.scenario import NodeSpec, Scenario

SITES = ("cleveland", "hungarian", "switzerland", "va")
N_FEATURES = 13


@dataclass(frozen=True)
class RoundBenchResult:
    """What one run measured."""

    nodes: int
    parameters: int
    model_bytes: int
    round_seconds: float
    round_seconds_each: list[float]
    in_memory_round_seconds: float
    peak_rss_mb: float
    rss_mb_each: dict[str, float]
    nodes_agree: bool

    def as_dict(self) -> dict[str, Any]:
        model_mb = self.model_bytes / 2**20
        return {
            "nodes": self.nodes,
            "params": self.parameters,
            "model_mb": round(model_mb, 1),
            "round_seconds": round(self.round_seconds, 3),
            "round_seconds_each": [round(s, 3) for s in self.round_seconds_each],
            "in_memory_round_seconds": round(self.in_memory_round_seconds, 3),
            "ratio_to_in_memory": round(self.round_seconds / self.in_memory_round_seconds, 2),
            "peak_rss_mb": self.peak_rss_mb,
            "peak_rss_mb_each": self.rss_mb_each,
            "memory_budget_mb": round(2 * model_mb + 200, 1),
            "nodes_agree": self.nodes_agree,
        }


def bench_scenario(
    nodes: int,
    parameters: int,
    rounds: int,
    clusters: int = 2,
    update_codec: str = "fp32",
    topk_fraction: float = DEFAULT_TOPK_FRACTION,
) -> Scenario:
    """``nodes`` shards of the four sites in ``clusters`` clusters (1: flat; 2: Cleveland and
    VA, Hungary and Switzerland; 4: one per site), training a wide model, its updates encoded
    with ``update_codec`` (``federation.update_codec``)."""
    if nodes < 2 or (nodes > len(SITES) and nodes % len(SITES)):
        raise TestnetError(f"--nodes must be 2-4 or a multiple of 4, got {nodes}")
    if parameters < 100:
        raise TestnetError(f"--params must be at least 100, got {parameters}")
    if rounds < 2:
        raise TestnetError("--rounds must be at least 2 (the first round is warm-up)")
    if clusters not in (1, 2, 4) or clusters > nodes:
        raise TestnetError(f"clusters must be 1, 2 or 4 and at most --nodes, got {clusters}")
    shards = max(1, nodes // len(SITES))
    specs = []
    for index in range(nodes):
        site, part = SITES[index % len(SITES)], index // len(SITES)
        cluster = {1: 0, 2: int(site not in ("cleveland", "va")), 4: index % len(SITES)}[clusters]
        specs.append(NodeSpec(f"{site}-{part}", site, cluster, part, shards))
    model_bytes = 4 * parameters
    config = config_from_dict(
        {
            "federation": {
                "rounds": rounds,
                "update_timeout": 60.0,
                "takeover_timeout": 30.0,
                "aggregate_timeout": 300.0,
                "chain_timeout": 300.0,
                "update_codec": update_codec,
                **({"topk_fraction": topk_fraction} if update_codec == "topk" else {}),
            },
            "training": {
                "hidden_units": hidden_units_for(N_FEATURES, parameters),
                "local_steps": None,
                "local_epochs": 1,
            },
            "network": {
                "max_blob_bytes": 2 * model_bytes + 2**20,
                "fetch_timeout": 30.0 + model_bytes / 20e6,
            },
        },
        source="round bench",
    )
    return Scenario(
        name=f"bench-round-{nodes}x{parameters}-{clusters}c-{update_codec}",
        config=config,
        nodes=tuple(specs),
        timeout=300.0 + rounds * 120.0,
    )


def measure_round(nodes: int, parameters: int, rounds: int, data_dir: Path) -> RoundBenchResult:
    """Run the scenario and the in-memory baseline; see the module docstring."""
    scenario = bench_scenario(nodes, parameters, rounds)
    baseline = _in_memory_round_seconds(scenario, data_dir)
    out = Path(tempfile.mkdtemp(prefix="medswarm-round-bench-"))
    try:
        summary = MultiProcessTestnet(scenario, out / "run", data_dir).up()
        events = round_events(out / "run" / "events.jsonl")
    except TestnetError as exc:  # the run directory stays, for the logs the error names
        raise TestnetError(f"{exc} (the run directory {out / 'run'} is kept)") from exc
    shutil.rmtree(out, ignore_errors=True)
    ends = {r: max(e["ts"] for e in group) for r, group in events.items()}
    each = [ends[r] - ends[r - 1] for r in sorted(ends) if r > 1 and r - 1 in ends]
    if not each:
        raise TestnetError("the round bench finished without two timed rounds")
    peaks = {str(h["name"]): float(h.get("peak_rss_mb") or 0.0) for h in summary["hospitals"]}
    weights = initial_weights(
        [load_site("heart-disease", "va", data_dir)],
        scenario.config.federation.seed,
        scenario.config.training.hidden_units,
    )
    return RoundBenchResult(
        nodes=nodes,
        parameters=sum(int(v.size) for v in weights.values()),
        model_bytes=len(encode_weights(weights)),
        round_seconds=statistics.median(each),
        round_seconds_each=each,
        in_memory_round_seconds=baseline,
        peak_rss_mb=max(peaks.values()),
        rss_mb_each=peaks,
        nodes_agree=bool(summary["nodes_agree"]),
    )


def _in_memory_round_seconds(scenario: Scenario, data_dir: Path) -> float:
    """One round of the same learning in this process: every shard trains, one average."""
    config: MedswarmConfig = scenario.config
    sites = [
        shard(load_site("heart-disease", spec.site, data_dir), spec.shard, spec.shards)
        for spec in scenario.nodes
    ]
    weights = initial_weights(sites[:1], config.federation.seed, config.training.hidden_units)
    started = time.perf_counter()
    updates = []
    for site in sites:
        seed = derive_seed(config.federation.seed, "train", 0, site.site)
        result = train_local(weights, site, config.training, seed)
        updates.append((delta(result.weights, weights), result.samples))
    apply_delta(weights, fedavg(updates))
    return time.perf_counter() - started


def round_events(path: Path) -> dict[int, list[dict[str, Any]]]:
    rounds: dict[int, list[dict[str, Any]]] = {}
    for line in path.read_text().splitlines():
        event = json.loads(line)
        if event.get("event") == "round":
            rounds.setdefault(int(event["round"]), []).append(event)
    return rounds
