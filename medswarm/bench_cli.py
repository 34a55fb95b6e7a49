"""``medswarm bench``: measurements printed beside a baseline measured in the same run."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from typing import Any

from node.codecs import DEFAULT_TOPK_FRACTION, UPDATE_CODECS
from node.data import resolve_data_dir
from testnet.aggregate_bench import measure_aggregation
from testnet.blob_bench import PATHS, measure_blob_throughput
from testnet.fog_bench import measure_fog_traffic
from testnet.gas_bench import measure_gas, steady_round_gas
from testnet.gossip_bench import check_arguments, measure_dissemination
from testnet.round_bench import measure_round
from testnet.secagg_bench import DEFAULT_PARAMETERS, measure_secagg

_PATH_NAMES = {
    "raw_tcp": "raw TCP socket",
    "yamux": "libp2p Yamux stream",
    "bulk": "bulk channel",
}


def add_bench_parser(subparsers: Any) -> None:
    """Register ``bench`` and its sub-commands on the ``medswarm`` parser."""
    bench = subparsers.add_parser("bench", help="measure parts of medswarm on this machine")
    commands = bench.add_subparsers(dest="bench_command", required=True)
    blob = commands.add_parser(
        "blob",
        help="blob throughput between two node processes",
        description=(
            "Start two node processes on 127.0.0.1 and move a random blob between them over "
            "a raw TCP socket (the baseline), the libp2p Yamux stream and the bulk channel, "
            "REPEAT times each; print the median MB/s (10^6 bytes/s) and the ratio to raw TCP."
        ),
    )
    blob.add_argument("--size-mib", type=int, default=64, help="blob size in MiB (default 64)")
    blob.add_argument("--repeat", type=int, default=5, help="transfers per path (default 5)")
    blob.add_argument("--json", action="store_true", help="print one JSON object instead")
    blob.set_defaults(handler=run_blob_bench)

    gossip = commands.add_parser(
        "gossip",
        help="all-to-all blob dissemination between node processes",
        description=(
            "Start NODES node processes on 127.0.0.1, each with a real libp2p host; every "
            "round each makes a random blob of SIZE_MIB MiB, announces it on GossipSub and "
            "fetches every other node's blob on its announcement. Print the median seconds "
            "and CPU seconds (summed over the processes) per round after the first, over the "
            "bulk channel and over libp2p Yamux streams (the stock path, the baseline, "
            "measured in the same run, rounds interleaved)."
        ),
    )
    gossip.add_argument("--nodes", type=int, default=8, help="node processes (default 8)")
    gossip.add_argument("--size-mib", type=int, default=4, help="blob size in MiB (default 4)")
    gossip.add_argument(
        "--rounds", type=int, default=6, help="rounds per path, the first is warm-up (default 6)"
    )
    gossip.add_argument(
        "--max-concurrent-fetches",
        type=int,
        default=None,
        help="fetches each node runs at once (default: network.max_concurrent_fetches)",
    )
    gossip.add_argument("--json", action="store_true", help="print one JSON object instead")
    gossip.set_defaults(handler=run_gossip_bench)

    round_ = commands.add_parser(
        "round",
        help="federation rounds of node processes with a big model",
        description=(
            "Run NODES node processes on anvil (the Fed-Heart-Disease sites split into shards, "
            "two clusters) whose model is a wide MLP of about PARAMS parameters, each training "
            "one epoch per round; print the median seconds per round after the first, the "
            "same learning in memory (the baseline, measured in this run) and the peak RSS of "
            "the node processes beside the 2 x model + 200 MB budget."
        ),
    )
    round_.add_argument("--nodes", type=int, default=8, help="node processes (default 8)")
    round_.add_argument(
        "--params", type=int, default=10_000_000, help="model parameters (default 10000000)"
    )
    round_.add_argument("--rounds", type=int, default=3, help="rounds, the first is warm-up")
    round_.add_argument("--data-dir", default=None, help="data directory (default as for run)")
    round_.add_argument("--json", action="store_true", help="print one JSON object instead")
    round_.set_defaults(handler=run_round_bench)

    fog = commands.add_parser(
        "fog",
        help="bytes per node and round, flat against fog (two-tier) aggregation",
        description=(
            "For each node count run node processes on anvil (Fed-Heart-Disease shards, a wide "
            "MLP of PARAMS parameters) with all nodes in one cluster (flat, the baseline) and "
            "in clusters (fog: 2, or 4 from 16 nodes on); print the bytes each node sent and "
            "received per round, averaged over nodes and rounds 2..ROUNDS, and fog's ratio "
            "to flat."
        ),
    )
    fog.add_argument(
        "--nodes", type=int, nargs="+", default=[4, 8, 16], help="node counts (default 4 8 16)"
    )
    fog.add_argument(
        "--params", type=int, default=250_000, help="model parameters (default 250000)"
    )
    fog.add_argument("--rounds", type=int, default=3, help="rounds, the first is warm-up")
    fog.add_argument(
        "--codec",
        choices=UPDATE_CODECS,
        default="fp32",
        help="federation.update_codec of the runs (default fp32)",
    )
    fog.add_argument(
        "--topk-fraction",
        type=float,
        default=DEFAULT_TOPK_FRACTION,
        help=f"share of values top-k sends (default {DEFAULT_TOPK_FRACTION})",
    )
    fog.add_argument("--data-dir", default=None, help="data directory (default as for run)")
    fog.add_argument("--json", action="store_true", help="print one JSON object instead")
    fog.set_defaults(handler=run_fog_bench)

    aggregate = commands.add_parser(
        "aggregate",
        help="streaming FedAvg throughput beside numpy.add",
        description=(
            "Average UPDATES float32 updates of VALUES values each with the aggregator's "
            "running sum (float32, in place) and, in the same run, add them with a plain "
            "numpy.add into a float32 total (the memory-bandwidth baseline); print the best "
            "seconds of REPEATS runs, the update bytes per second and the ratio (target "
            ">= 0.5; exit code 1 below it). fedavg of the same updates is timed too."
        ),
    )
    add_aggregate_arguments(aggregate)
    aggregate.set_defaults(handler=run_aggregate_bench)

    gas = commands.add_parser(
        "gas",
        help="gas per hospital and round: the Consortium's one-transaction round vs the Ledger's",
        description=(
            "Run ROUNDS rounds of HOSPITALS hospitals in CLUSTERS clusters on the in-process "
            "EVM twice: through contracts/Consortium.sol (one finalizeRound per round with "
            "Merkle-committed records and a quorum's signatures) and through the Ledger the "
            "nodes use now (a recordCluster per cluster, an attest per hospital); print each "
            "path's gas per hospital per round and their ratio."
        ),
    )
    gas.add_argument("--hospitals", type=int, default=8, help="hospitals (default 8)")
    gas.add_argument("--clusters", type=int, default=2, help="clusters (default 2)")
    gas.add_argument("--rounds", type=int, default=10, help="rounds (default 10)")
    gas.add_argument("--json", action="store_true", help="print one JSON object instead")
    gas.set_defaults(handler=run_gas_bench)

    secagg = commands.add_parser(
        "secagg",
        help="one secure-aggregation round of a cluster against plain summation",
        description=(
            "Run one round of secure aggregation (node/secagg.py) in this process: MEMBERS "
            "members mask updates of PARAMS float32 values, the last DROPOUTS drop after "
            "masking, and the aggregator unmasks the survivors' sum. Print whether the sum is "
            "exactly the plain fixed-point sum, the protocol's seconds and the bytes each "
            "member sends, beside plain summation of the float32 updates (the baseline, "
            "measured in the same run) and the ratios."
        ),
    )
    secagg.add_argument("--members", type=int, default=8, help="members (default 8)")
    secagg.add_argument(
        "--dropouts", type=int, default=1, help="members dropping after masking (default 1)"
    )
    secagg.add_argument(
        "--params",
        type=int,
        default=DEFAULT_PARAMETERS,
        help=f"values per update (default {DEFAULT_PARAMETERS})",
    )
    secagg.add_argument(
        "--threshold", type=int, default=0, help="shares needed to unmask (default: a majority)"
    )
    secagg.add_argument("--json", action="store_true", help="print one JSON object instead")
    secagg.set_defaults(handler=run_secagg_bench)


def run_blob_bench(args: argparse.Namespace) -> int:
    result = measure_blob_throughput(args.size_mib * 2**20, args.repeat).as_dict()
    if args.json:
        print(json.dumps(result))
        return 0
    print(
        f"{args.size_mib} MiB blob between two node processes on 127.0.0.1, median of {args.repeat}"
    )
    print(f"{'path':<22}{'MB/s':>8}{'vs raw TCP':>12}")
    raw = result["raw_tcp_mb_s"]
    for path in PATHS:
        mb_s = result[f"{path}_mb_s"] if path != "bulk" else result["throughput_mb_s"]
        print(f"{_PATH_NAMES[path]:<22}{mb_s:>8.0f}{mb_s / raw:>12.2f}")
    return 0


def run_round_bench(args: argparse.Namespace) -> int:
    data_dir = resolve_data_dir(args.data_dir, os.environ)
    result = measure_round(args.nodes, args.params, args.rounds, data_dir).as_dict()
    if args.json:
        print(json.dumps(result))
        return 0
    print(
        f"{result['nodes']} node processes, {result['params']:,} parameters "
        f"({result['model_mb']} MB model), median of rounds 2..{args.rounds}"
    )
    print(f"  seconds per round        {result['round_seconds']:>8.2f}")
    print(f"  same learning in memory  {result['in_memory_round_seconds']:>8.2f}")
    print(f"  ratio                    {result['ratio_to_in_memory']:>8.1f}")
    print(f"  peak RSS per node (max)  {result['peak_rss_mb']:>8.0f} MB")
    print(f"  budget 2 x model + 200   {result['memory_budget_mb']:>8.0f} MB")
    print(f"  every node on one hash   {result['nodes_agree']!s:>8}")
    return 0


def run_gossip_bench(args: argparse.Namespace) -> int:
    check_arguments(args.nodes, args.size_mib, args.rounds, args.max_concurrent_fetches)
    result = measure_dissemination(
        args.nodes, args.size_mib, args.rounds, args.max_concurrent_fetches
    ).as_dict()
    if args.json:
        print(json.dumps(result))
        return 0
    print(
        f"{args.nodes} node processes, {args.size_mib} MiB blob each, all-to-all, "
        f"median of rounds 2..{args.rounds}, {result['max_concurrent_fetches']} fetches at once"
    )
    before, after = result["load_average_before"][0], result["load_average"][0]
    print(f"load average (1 min) {before:.2f} before the run, {after:.2f} after it")
    print(f"{'path':<30}{'s/round':>9}{'CPU s/round':>13}")
    print(f"{'bulk channel':<30}{result['round_seconds']:>9.2f}{result['cpu_seconds']:>13.2f}")
    print(
        f"{'libp2p Yamux stream (stock)':<30}{result['baseline_round_seconds']:>9.2f}"
        f"{result['baseline_cpu_seconds']:>13.2f}"
    )
    print(f"speed-up over the stock path: {result['speedup']:.1f}x")
    return 0


def add_aggregate_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``medswarm bench aggregate`` (and ``bench/aggregation_throughput.py``)."""
    parser.add_argument("--updates", type=int, default=8, help="updates averaged (default 8)")
    parser.add_argument(
        "--values", type=int, default=10_000_000, help="values per update (default 10000000)"
    )
    parser.add_argument("--repeats", type=int, default=5, help="runs of each; best counts")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")


def run_aggregate_bench(args: argparse.Namespace) -> int:
    result = measure_aggregation(args.updates, args.values, args.repeats)
    passed = result["ratio"] >= result["target_ratio"]
    if args.json:
        print(json.dumps(result, indent=2))
        return 0 if passed else 1
    gb = result["gb_per_second"]
    print(f"{args.updates} updates x {args.values:,} float32 values, best of {args.repeats}")
    for name, seconds in result["seconds"].items():
        print(f"{name:<13} {seconds:8.4f} s  {gb[name]:6.2f} GB/s of updates")
    print(
        f"running mean / numpy.add: {result['ratio']:.3f} (target >= "
        f"{result['target_ratio']}); fedavg / numpy.add: {result['fedavg_ratio']:.3f}; "
        f"float64 numpy.add / numpy.add: {result['float64_add_ratio']:.3f}"
    )
    return 0 if passed else 1


def run_fog_bench(args: argparse.Namespace) -> int:
    data_dir = resolve_data_dir(args.data_dir, os.environ)
    result = measure_fog_traffic(
        args.nodes, args.params, args.rounds, data_dir, args.codec, args.topk_fraction
    )
    if args.json:
        print(json.dumps(result))
        return 0
    update_mb = statistics.fmean(row["update_bytes"] for row in result["runs"]) / 1e6
    print(
        f"{result['params']:,} parameters ({result['model_bytes'] / 1e6:.1f} MB in float32; "
        f"{args.codec} updates {update_mb:.2f} MB), mean per node and round over rounds "
        f"2..{args.rounds}"
    )
    print(
        f"{'nodes':>5} {'mode':<5} {'clusters':>8} {'MB sent':>8} {'vs flat':>8} "
        f"{'MB recv':>8} {'vs flat':>8} {'s/round':>8}"
    )
    for row in result["runs"]:
        print(
            f"{row['nodes']:>5} {row['mode']:<5} {row['clusters']:>8} "
            f"{row['bytes_sent'] / 1e6:>8.2f} {row['sent_vs_flat']:>8.2f} "
            f"{row['bytes_received'] / 1e6:>8.2f} {row['received_vs_flat']:>8.2f} "
            f"{row['round_seconds']:>8.2f}"
        )
    return 0


def run_gas_bench(args: argparse.Namespace) -> int:
    if args.rounds < 1 or args.clusters < 1 or args.hospitals < args.clusters:
        print(
            "medswarm bench gas: need --rounds >= 1, --clusters >= 1 and at least one "
            "hospital per cluster",
            file=sys.stderr,
        )
        return 2
    result = measure_gas(args.hospitals, args.clusters, args.rounds)
    if args.json:
        print(json.dumps(result.as_dict()))
        return 0
    print(
        f"{result.hospitals} hospitals in {result.clusters} clusters, {result.rounds} rounds, "
        f"quorum {result.quorum}"
    )
    print(f"{'path':<44}{'gas/hospital/round':>20}")
    print(f"{'Consortium: one finalizeRound per round':<44}{result.gas_per_hospital_round:>20,.0f}")
    print(
        f"{'Ledger: recordCluster + attest per hospital':<44}"
        f"{result.baseline_gas_per_hospital_round:>20,.0f}"
    )
    print(
        f"ratio {result.ratio_to_baseline:.3f}; Consortium round 1 {result.round_gas[0]:,} gas, "
        f"later rounds (median) {steady_round_gas(result):,.0f}"
    )
    return 0


def run_secagg_bench(args: argparse.Namespace) -> int:
    result = measure_secagg(args.members, args.dropouts, args.params, args.threshold).as_dict()
    if args.json:
        print(json.dumps(result))
        return 0
    print(
        f"secure aggregation, {result['members']} members (threshold {result['threshold']}), "
        f"{result['dropouts']} dropping after masking, {result['params']:,} values per update"
    )
    print(f"  sum exactly the plain fixed-point sum  {result['exact']!s:>12}")
    print(f"  largest error against the float sum    {result['max_abs_error']:>12.2e}")
    print(f"{'':<20}{'seconds':>12}{'bytes/member':>16}")
    print(f"{'secure aggregation':<20}{result['seconds']:>12.3f}{result['bytes_per_member']:>16,}")
    print(f"{'plain float32 sum':<20}{result['plain_seconds']:>12.4f}{result['plain_bytes']:>16,}")
    print(f"{'ratio':<20}{result['seconds_vs_plain']:>12.1f}{result['bytes_vs_plain']:>16.4f}")
    phases = ", ".join(f"{k} {v:.3f}" for k, v in result["phase_seconds"].items())
    print(f"  phases (s): {phases}")
    print(
        f"  slowest member {result['slowest_member_seconds']:.3f} s, "
        f"aggregator {result['aggregator_seconds']:.3f} s"
    )
    return 0
