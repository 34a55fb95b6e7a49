"""``medswarm bench``: measurements printed beside a baseline measured in the same run."""

from __future__ import annotations

import argparse
import json
from typing import Any

from testnet.blob_bench import PATHS, measure_blob_throughput

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
