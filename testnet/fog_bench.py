"""Bytes on the wire per node and round: flat aggregation against fog (two-tier) aggregation.

For each node count, :func:`measure_fog_traffic` runs the round bench's scenario
(:func:`~testnet.round_bench.bench_scenario`: Fed-Heart-Disease shards as node processes on
anvil, a wide MLP of ``parameters`` parameters) twice: with every node in one cluster (flat:
one aggregator averages every update, and with ``verify_aggregates`` every member fetches
every update to check the average), the baseline, and with the nodes in clusters (fog: updates
stay in their cluster and only the clusters' aggregates cross). The figures are each node's
``bytes_sent`` and ``bytes_received`` of its round events (libp2p streams and the bulk channel,
payload and framing), averaged over nodes and the rounds after the first. Updates are encoded
with the run's ``update_codec`` (``--codec``, :mod:`node.codecs`), and so are the clusters'
aggregates under fp16 and int8 (:func:`node.update_encoder.encode_aggregate`; float32 under
top-k); ``update_bytes`` is the size of one encoded update; global models stay float32.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from node.codecs import DEFAULT_TOPK_FRACTION
from testnet.errors import TestnetError
from testnet.multiproc import MultiProcessTestnet
from testnet.round_bench import bench_scenario, round_events


@dataclass(frozen=True)
class TrafficRow:
    """One run: how much each node sent and received per round."""

    nodes: int
    clusters: int
    bytes_sent: float
    bytes_received: float
    round_seconds: float
    nodes_agree: bool
    codec: str = "fp32"
    update_bytes: float = 0.0


def fog_clusters(nodes: int) -> int:
    """The clusters of the fog runs: two, or one per site from 16 nodes on."""
    return 4 if nodes >= 16 else 2


def measure_traffic(
    nodes: int,
    clusters: int,
    parameters: int,
    rounds: int,
    data_dir: Path,
    codec: str = "fp32",
    topk_fraction: float = DEFAULT_TOPK_FRACTION,
) -> TrafficRow:
    """Run one scenario and average its nodes' traffic over rounds 2..``rounds``."""
    scenario = bench_scenario(nodes, parameters, rounds, clusters, codec, topk_fraction)
    out = Path(tempfile.mkdtemp(prefix="medswarm-fog-bench-"))
    try:
        summary = MultiProcessTestnet(scenario, out / "run", data_dir).up()
        events = round_events(out / "run" / "events.jsonl")
    except TestnetError as exc:
        raise TestnetError(f"{exc} (the run directory {out / 'run'} is kept)") from exc
    shutil.rmtree(out, ignore_errors=True)
    timed = [e for r, group in events.items() if r > 1 for e in group]
    if not timed:
        raise TestnetError("the traffic bench finished without a round after the first")
    ends = {r: max(e["ts"] for e in group) for r, group in events.items()}
    seconds = [ends[r] - ends[r - 1] for r in sorted(ends) if r > 1 and r - 1 in ends]
    return TrafficRow(
        nodes=nodes,
        clusters=clusters,
        bytes_sent=statistics.fmean(float(e["bytes_sent"]) for e in timed),
        bytes_received=statistics.fmean(float(e["bytes_received"]) for e in timed),
        round_seconds=statistics.median(seconds),
        nodes_agree=bool(summary["nodes_agree"]),
        codec=codec,
        update_bytes=statistics.fmean(float(e.get("update_bytes") or 0) for e in timed),
    )


def measure_fog_traffic(
    node_counts: list[int],
    parameters: int,
    rounds: int,
    data_dir: Path,
    codec: str = "fp32",
    topk_fraction: float = DEFAULT_TOPK_FRACTION,
) -> dict[str, Any]:
    """Flat and fog runs for every node count, updates encoded with ``codec``; the fog rows
    carry their ratio to flat."""
    rows = []
    for nodes in node_counts:
        flat = measure_traffic(nodes, 1, parameters, rounds, data_dir, codec, topk_fraction)
        fog = measure_traffic(
            nodes, fog_clusters(nodes), parameters, rounds, data_dir, codec, topk_fraction
        )
        for row in (flat, fog):
            rows.append(
                {
                    **asdict(row),
                    "mode": "flat" if row.clusters == 1 else "fog",
                    "sent_vs_flat": round(row.bytes_sent / flat.bytes_sent, 3),
                    "received_vs_flat": round(row.bytes_received / flat.bytes_received, 3),
                }
            )
    return {
        "params": parameters,
        "model_bytes": 4 * parameters,
        "rounds": rounds,
        "codec": codec,
        "topk_fraction": topk_fraction if codec == "topk" else None,
        "runs": rows,
    }
