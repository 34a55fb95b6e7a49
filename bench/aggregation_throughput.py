"""Throughput of the streaming FedAvg beside a plain ``numpy.add``, measured in one run.

    python bench/aggregation_throughput.py [--updates 8] [--values 10000000] [--repeats 5]
                                           [--json]

The baseline is the least any running sum can do: ``numpy.add(total, update, out=total)``
over the same float32 updates into a float32 total, which reads each update and reads and
writes the total once (memory bandwidth). The aggregation is
:class:`node.running_mean.RunningMean`: each update added as ``float64(u) * n`` into a
float64 running sum, in place and in cache-sized chunks, then divided and cast to float32
(the bytes :func:`node.aggregation.fedavg` gives). Throughput is update bytes per second
(``updates x values x 4`` over the time); the ratio is the aggregation's over the baseline's
(target at least 0.5). :func:`~node.aggregation.fedavg` of the same updates (all at once, a
tensor at a time) is timed too, for reference. Best of ``--repeats`` runs each, interleaved.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from node.aggregation import fedavg
from node.running_mean import RunningMean
from node.weights import Weights


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python bench/aggregation_throughput.py",
        description="Streaming FedAvg throughput beside numpy.add, in one run.",
    )
    parser.add_argument("--updates", type=int, default=8, help="updates averaged (default 8)")
    parser.add_argument("--values", type=int, default=10_000_000, help="values per update")
    parser.add_argument("--repeats", type=int, default=5, help="runs of each; best counts")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    return parser.parse_args(argv)


def made_updates(count: int, values: int) -> list[tuple[Weights, int]]:
    """``count`` updates of one tensor of ``values`` float32 values, with sample counts."""
    rng = np.random.default_rng(0)
    return [
        ({"w": rng.standard_normal(values, dtype=np.float32)}, 100 + index)
        for index in range(count)
    ]


def numpy_add(updates: list[tuple[Weights, int]]) -> None:
    total = np.zeros_like(updates[0][0]["w"])
    for update, _ in updates:
        np.add(total, update["w"], out=total)


def running_mean(updates: list[tuple[Weights, int]]) -> None:
    running = RunningMean()
    for update, samples in updates:
        running.add(update, samples)
    running.mean()


def whole_fedavg(updates: list[tuple[Weights, int]]) -> None:
    fedavg(updates)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Time every method ``repeats`` times, interleaved; best seconds and throughput."""
    updates = made_updates(args.updates, args.values)
    methods: dict[str, Callable[[list[tuple[Weights, int]]], None]] = {
        "numpy_add": numpy_add,
        "running_mean": running_mean,
        "fedavg": whole_fedavg,
    }
    best = dict.fromkeys(methods, float("inf"))
    for _ in range(args.repeats):
        for name, method in methods.items():
            started = time.perf_counter()
            method(updates)
            best[name] = min(best[name], time.perf_counter() - started)
    update_bytes = args.updates * args.values * 4
    return {
        "updates": args.updates,
        "values_per_update": args.values,
        "update_bytes": update_bytes,
        "repeats": args.repeats,
        "seconds": {name: round(seconds, 4) for name, seconds in best.items()},
        "gb_per_second": {name: round(update_bytes / s / 1e9, 3) for name, s in best.items()},
        "ratio": round(best["numpy_add"] / best["running_mean"], 3),
        "fedavg_ratio": round(best["numpy_add"] / best["fedavg"], 3),
        "target_ratio": 0.5,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, numpy {np.__version__}",
        "load_average": os.getloadavg()[0],
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Measure and print; exit code 0, or 1 when the ratio misses its target."""
    args = parse_args(argv)
    result = measure(args)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        gb = result["gb_per_second"]
        print(f"{args.updates} updates x {args.values:,} float32 values, best of {args.repeats}")
        for name, seconds in result["seconds"].items():
            print(f"{name:<13} {seconds:8.4f} s  {gb[name]:6.2f} GB/s of updates")
        print(
            f"running mean / numpy.add: {result['ratio']:.3f} (target >= 0.5); "
            f"fedavg / numpy.add: {result['fedavg_ratio']:.3f}"
        )
    return 0 if result["ratio"] >= result["target_ratio"] else 1


if __name__ == "__main__":
    sys.exit(main())
