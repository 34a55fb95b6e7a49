"""Scenario files: the nodes of a testnet, their data and clusters, and a timeline of faults.

A scenario is TOML::

    name = "crash-restart"
    description = "..."
    rounds = 20
    seed = 0
    timeout = 600                     # seconds for the whole run
    auto_clusters = 2                 # optional: form 2 clusters from the nodes' label shares
                                      # (node/clustering.py) instead of their cluster keys

    [federation]                      # any [federation] key of the node config
    update_timeout = 6.0
    [training]                        # any [training] key of the node config
    lr = 0.1

    [[nodes]]
    name = "cleveland-a"              # unique; also the node's directory name
    site = "cleveland"                # a site of the data set
    shard = 0                         # this node's share of the site's training rows
    shards = 2
    cluster = 0

    [[faults]]
    kind = "crash"                    # crash | crash-aggregator | straggler | join | partition
                                      # | chain-restart
    node = "hungary-a"                # target node (not for crash-aggregator, chain-restart)
    cluster = 0                       # crash-aggregator: whose first aggregator candidate
    round = 5                         # fires while this round is in progress
    restart_after = 2.0               # crash: restart after this many seconds (omit: stay down)
    duration = 10.0                   # straggler: paused this long; chain-restart: downtime;
                                      # partition: healed after this long
    sides = [["a", "b"], ["c", "d"]]  # partition: nodes that can reach only their own side

A ``join`` fault admits its node on chain and starts it when ``round`` begins; such a node is
not started with the others. A node with ``attack = "outsider"`` is never admitted: it runs
with valid keys but no membership (testnet/attacks.py, ``trespass``). A scenario with a
``partition`` runs every node in its own network namespace (see :mod:`testnet.netns`), which
needs root or CAP_NET_ADMIN.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from node.clustering import clusters_by_share, label_share
from node.config import MedswarmConfig, config_from_dict, read_toml
from node.data import load_site, shard
from testnet.attacks import ATTACKS, OUTSIDER
from testnet.errors import TestnetError

FAULT_KINDS = ("crash", "crash-aggregator", "straggler", "join", "partition", "chain-restart")
NODELESS_FAULTS = ("crash-aggregator", "partition", "chain-restart")


@dataclass(frozen=True)
class NodeSpec:
    """One node of a scenario."""

    name: str
    site: str
    cluster: int = 0
    shard: int = 0
    shards: int = 1
    label_share: float | None = None  # set when the launcher formed the clusters from labels
    attack: str = ""  # a hostile node: what it does (testnet/attacks.py ATTACKS)

    @property
    def admitted(self) -> bool:
        """Whether the launcher admits the node on chain (an ``outsider`` never is)."""
        return self.attack != OUTSIDER


@dataclass(frozen=True)
class FaultSpec:
    """One fault on the scenario's timeline."""

    kind: str
    round: int
    node: str = ""
    restart_after: float | None = None
    duration: float = 5.0
    cluster: int = 0
    sides: tuple[tuple[str, ...], ...] = ()


@dataclass(frozen=True)
class Scenario:
    """A parsed, checked scenario."""

    name: str
    config: MedswarmConfig
    nodes: tuple[NodeSpec, ...]
    faults: tuple[FaultSpec, ...] = ()
    description: str = ""
    timeout: float = 600.0
    auto_clusters: int = 0  # 0: clusters as the nodes give them

    @property
    def needs_namespaces(self) -> bool:
        """Whether a fault cuts links between nodes (so each node needs its own namespace)."""
        return any(f.kind == "partition" for f in self.faults)

    @property
    def late_joiners(self) -> set[str]:
        return {f.node for f in self.faults if f.kind == "join"}


def load_scenario(path: Path) -> Scenario:
    """Read and check a scenario file."""
    return scenario_from_dict(read_toml(path, "scenario file"), source=str(path))


def scenario_from_dict(raw: dict[str, Any], source: str = "scenario") -> Scenario:
    """Build a scenario from parsed TOML, with errors that name the offending entry."""
    known = {
        "name",
        "description",
        "rounds",
        "seed",
        "dataset",
        "timeout",
        "auto_clusters",
        "federation",
        "training",
        "strategy",
        "network",
        "nodes",
        "faults",
    }
    unknown = sorted(set(raw) - known)
    if unknown:
        raise TestnetError(f"{source}: unknown key {unknown[0]!r}; valid keys: {sorted(known)}")
    federation = dict(raw.get("federation", {}))
    for key in ("rounds", "seed", "dataset"):
        if key in raw:
            federation[key] = raw[key]
    config = config_from_dict(
        {
            "federation": federation,
            "training": raw.get("training", {}),
            "strategy": raw.get("strategy", {}),
            "network": raw.get("network", {}),
        },
        source=source,
    )
    nodes = tuple(_node(item, i, source) for i, item in enumerate(raw.get("nodes", [])))
    if not nodes:
        raise TestnetError(f"{source}: a scenario needs at least one [[nodes]] entry")
    names = [n.name for n in nodes]
    if len(set(names)) != len(names):
        raise TestnetError(f"{source}: node names must be unique, got {names}")
    faults = tuple(
        _fault(item, i, source, set(names)) for i, item in enumerate(raw.get("faults", []))
    )
    auto = raw.get("auto_clusters", 0)
    if not isinstance(auto, int) or isinstance(auto, bool) or not 0 <= auto <= len(nodes):
        raise TestnetError(
            f"{source}: auto_clusters must be a number of clusters from 1 to the number of "
            f"nodes ({len(nodes)}), or 0 to take each node's cluster key; got {auto!r}"
        )
    given = [item.get("name", item.get("site")) for item in raw["nodes"] if "cluster" in item]
    if auto and given:
        raise TestnetError(
            f"{source}: auto_clusters forms the clusters, so drop the cluster key of {given}"
        )
    clusters = sorted({n.cluster for n in nodes})
    if clusters != list(range(len(clusters))):
        raise TestnetError(
            f"{source}: clusters must be numbered 0, 1, ... without gaps: {clusters}"
        )
    return Scenario(
        name=str(raw.get("name", Path(source).stem)),
        config=config,
        nodes=nodes,
        faults=faults,
        description=str(raw.get("description", "")),
        timeout=float(raw.get("timeout", 600.0)),
        auto_clusters=auto,
    )


def with_label_clusters(scenario: Scenario, data_dir: Path) -> Scenario:
    """``scenario`` with its nodes in ``auto_clusters`` clusters by the share of positive
    labels in each node's training rows (:func:`node.clustering.clusters_by_share`).

    The launcher plays the consortium's part here: each hospital reports one number, its
    label share, and the clusters follow from those numbers alone.
    """
    if not scenario.auto_clusters:
        return scenario
    dataset = scenario.config.federation.dataset
    shares = [
        label_share(shard(load_site(dataset, n.site, data_dir), n.shard, n.shards))
        for n in scenario.nodes
    ]
    clusters = clusters_by_share(shares, scenario.auto_clusters)
    nodes = tuple(
        dataclasses.replace(node, cluster=cluster, label_share=share)
        for node, cluster, share in zip(scenario.nodes, clusters, shares, strict=True)
    )
    return dataclasses.replace(scenario, nodes=nodes)


def _node(item: Any, index: int, source: str) -> NodeSpec:
    if not isinstance(item, dict):
        raise TestnetError(f"{source}: nodes[{index}] must be a table")
    allowed = {"name", "site", "cluster", "shard", "shards", "attack"}
    unknown = sorted(set(item) - allowed)
    if unknown or "site" not in item:
        raise TestnetError(
            f"{source}: nodes[{index}] needs 'site' and takes only {sorted(allowed)}; got "
            f"{sorted(item)}"
        )
    spec = NodeSpec(
        name=str(item.get("name", item["site"])),
        site=str(item["site"]),
        cluster=int(item.get("cluster", 0)),
        shard=int(item.get("shard", 0)),
        shards=int(item.get("shards", 1)),
        attack=str(item.get("attack", "")),
    )
    if not 0 <= spec.shard < spec.shards:
        raise TestnetError(f"{source}: nodes[{index}] shard must be in 0..shards-1")
    if spec.attack and spec.attack not in ATTACKS:
        raise TestnetError(
            f"{source}: nodes[{index}] attack {spec.attack!r} is not one of {list(ATTACKS)}"
        )
    return spec


def _fault(item: Any, index: int, source: str, names: set[str]) -> FaultSpec:
    if not isinstance(item, dict):
        raise TestnetError(f"{source}: faults[{index}] must be a table")
    allowed = {"kind", "node", "round", "restart_after", "duration", "cluster", "sides"}
    unknown = sorted(set(item) - allowed)
    if unknown:
        raise TestnetError(f"{source}: faults[{index}]: unknown key(s) {unknown}")
    kind = item.get("kind")
    if kind not in FAULT_KINDS:
        raise TestnetError(f"{source}: faults[{index}].kind must be one of {FAULT_KINDS}")
    node = str(item.get("node", ""))
    if kind not in NODELESS_FAULTS and node not in names:
        raise TestnetError(f"{source}: faults[{index}] names unknown node {node!r}")
    round_number = item.get("round")
    if not isinstance(round_number, int) or round_number < 1:
        raise TestnetError(f"{source}: faults[{index}].round must be a round number >= 1")
    restart = item.get("restart_after")
    sides = _sides(item.get("sides"), f"{source}: faults[{index}]", names, kind == "partition")
    return FaultSpec(
        kind=kind,
        round=round_number,
        node=node,
        restart_after=None if restart is None else float(restart),
        duration=float(item.get("duration", 5.0)),
        cluster=int(item.get("cluster", 0)),
        sides=sides,
    )


def _sides(raw: Any, where: str, names: set[str], wanted: bool) -> tuple[tuple[str, ...], ...]:
    if not wanted:
        if raw is not None:
            raise TestnetError(f"{where}: 'sides' belongs to partition faults only")
        return ()
    shape = (
        isinstance(raw, list)
        and len(raw) >= 2
        and all(isinstance(side, list) and side for side in raw)
    )
    if not shape:
        raise TestnetError(
            f'{where}: a partition needs sides = [["node", ...], ["node", ...]] '
            "(two or more non-empty lists of node names)"
        )
    listed = [str(n) for side in raw for n in side]
    unknown = sorted(set(listed) - names)
    if unknown:
        raise TestnetError(f"{where}: sides name unknown node(s) {unknown}")
    if len(set(listed)) != len(listed):
        raise TestnetError(f"{where}: a node may stand on one side of a partition only")
    return tuple(tuple(str(n) for n in side) for side in raw)
