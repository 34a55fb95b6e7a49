"""Throughput of the streaming FedAvg beside a plain ``numpy.add``, measured in one run.

The baseline is the least any running sum can do: ``numpy.add(total, update, out=total)``
over the same float32 updates into a float32 total, which reads each update and reads and
writes the total once (memory bandwidth). The aggregation is
:class:`node.running_mean.RunningMean`: each update multiplied by its sample count and added
into a float32 running sum, in place and in cache-sized chunks, then divided (the bytes
:func:`node.aggregation.fedavg` gives). Throughput is update bytes per second
(``updates x values x 4`` over the time); the ratio is the aggregation's over the baseline's
(target at least 0.5). :func:`~node.aggregation.fedavg` of the same updates (all at once, a
tensor at a time) is timed too, for reference, and so is ``numpy.add`` of the float32
updates into a float64 total (unweighted: the least a float64 running sum would cost, which
is why the sum is float32). Best of ``repeats`` runs each, interleaved.
Behind ``medswarm bench aggregate`` and ``bench/aggregation_throughput.py``.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from node.aggregation import fedavg
from node.running_mean import RunningMean
from node.weights import Weights
from testnet.errors import TestnetError

TARGET_RATIO = 0.5


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


def numpy_add_float64(updates: list[tuple[Weights, int]]) -> None:
    total = np.zeros(updates[0][0]["w"].shape)
    for update, _ in updates:
        np.add(total, update["w"], out=total)


def running_mean(updates: list[tuple[Weights, int]]) -> None:
    running = RunningMean()
    for update, samples in updates:
        running.add(update, samples)
    running.mean()


def whole_fedavg(updates: list[tuple[Weights, int]]) -> None:
    fedavg(updates)


def measure_aggregation(updates_count: int, values: int, repeats: int) -> dict[str, Any]:
    """Time every method ``repeats`` times, interleaved, over ``updates_count`` updates of
    ``values`` float32 values; best seconds, throughput and the ratio to ``numpy.add``."""
    if updates_count < 1 or values < 1 or repeats < 1:
        raise TestnetError("--updates, --values and --repeats must be at least 1")
    updates = made_updates(updates_count, values)
    methods: dict[str, Callable[[list[tuple[Weights, int]]], None]] = {
        "numpy_add": numpy_add,
        "numpy_add_float64": numpy_add_float64,
        "running_mean": running_mean,
        "fedavg": whole_fedavg,
    }
    best = dict.fromkeys(methods, float("inf"))
    for _ in range(repeats):
        for name, method in methods.items():
            started = time.perf_counter()
            method(updates)
            best[name] = min(best[name], time.perf_counter() - started)
    update_bytes = updates_count * values * 4
    return {
        "updates": updates_count,
        "values_per_update": values,
        "update_bytes": update_bytes,
        "repeats": repeats,
        "seconds": {name: round(seconds, 4) for name, seconds in best.items()},
        "gb_per_second": {name: round(update_bytes / s / 1e9, 3) for name, s in best.items()},
        "ratio": round(best["numpy_add"] / best["running_mean"], 3),
        "fedavg_ratio": round(best["numpy_add"] / best["fedavg"], 3),
        "float64_add_ratio": round(best["numpy_add"] / best["numpy_add_float64"], 3),
        "target_ratio": TARGET_RATIO,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, numpy {np.__version__}",
        "load_average": os.getloadavg()[0],
    }
