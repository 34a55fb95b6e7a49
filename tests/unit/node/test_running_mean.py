"""FedAvg built as updates arrive: the same bytes as fedavg of the same updates in the same
order, whatever order they are offered in."""

from __future__ import annotations

import numpy as np
import pytest

from node.aggregation import fedavg
from node.errors import AggregationError
from node.running_mean import CHUNK, OrderedRunningMean, RunningMean
from node.weights import Weights, weights_hash


def updates(count: int, seed: int = 0) -> list[tuple[Weights, int]]:
    rng = np.random.default_rng(seed)
    made = []
    for index in range(count):
        scale = 10.0 ** rng.uniform(-4, 2, 3)  # values of very different sizes: rounding shows
        update = {
            "big": (rng.normal(size=2 * CHUNK + 17) * scale[0]).astype(np.float32),
            "matrix": (rng.normal(size=(31, 7)) * scale[1]).astype(np.float32),
            "scalar": np.array(rng.normal() * scale[2], dtype=np.float32),
        }
        made.append((update, int(rng.integers(1, 500)) + index))
    return made


def test_adding_one_at_a_time_gives_fedavgs_bytes() -> None:
    inputs = updates(6)
    running = RunningMean()
    for update, samples in inputs:
        running.add(update, samples)
    assert weights_hash(running.mean()) == weights_hash(fedavg(inputs))
    assert running.samples == sum(n for _, n in inputs) and running.count == 6


def test_the_mean_of_one_weighted_update_is_that_update_as_in_fedavg() -> None:
    values = np.random.default_rng(6).normal(size=5_000).astype(np.float32)
    running = RunningMean()
    running.add({"w": np.zeros_like(values)}, 0)
    running.add({"w": values}, 3)
    assert running.mean()["w"].tobytes() == values.tobytes()
    running.add({"w": values}, 5)  # two weighted updates: the float32 sum again
    expected = fedavg([({"w": values}, 3), ({"w": values}, 5)])
    assert weights_hash(running.mean()) == weights_hash(expected)


def test_the_mean_is_the_weighted_mean() -> None:
    running = RunningMean()
    running.add({"w": np.array([1.0, 4.0], dtype=np.float32)}, 1)
    running.add({"w": np.array([3.0, -2.0], dtype=np.float32)}, 3)
    assert running.mean()["w"].tolist() == [2.5, -0.5]  # (1 + 9) / 4, (4 - 6) / 4


def test_updates_offered_in_any_order_are_added_in_key_order() -> None:
    inputs = updates(5, seed=1)
    keys = ["0xe", "0xa", "0xd", "0xb", "0xc"]
    by_key = dict(zip(keys, inputs, strict=True))
    ordered = OrderedRunningMean(keys)
    ordered.offer("0xd", *by_key["0xd"])
    ordered.offer("0xc", *by_key["0xc"])
    assert ordered.running.count == 0  # both wait for 0xa and 0xb
    ordered.offer("0xa", *by_key["0xa"])
    assert ordered.added == ["0xa"]
    ordered.drop("0xb")
    assert ordered.added == ["0xa"]  # dropping does no arithmetic
    ordered.offer("0xe", *by_key["0xe"])
    assert ordered.added == ["0xa", "0xc", "0xd", "0xe"]
    mean = ordered.finish(["0xa", "0xc", "0xd", "0xe"])
    expected = fedavg([by_key[k] for k in ("0xa", "0xc", "0xd", "0xe")])
    assert weights_hash(mean) == weights_hash(expected)


def test_finish_adds_what_waits_and_skips_keys_never_offered() -> None:
    inputs = updates(3, seed=2)
    ordered = OrderedRunningMean(["0xa", "0xb", "0xc"])
    ordered.offer("0xc", *inputs[2])
    ordered.drop("0xa")
    assert ordered.added == [] and ordered.offered() == ["0xc"]
    mean = ordered.finish(["0xc"])  # 0xb never came
    assert weights_hash(mean) == weights_hash(fedavg([inputs[2]]))


def test_a_finish_that_does_not_match_what_was_added_is_refused() -> None:
    (update, samples), *_ = updates(1)
    ordered = OrderedRunningMean(["0xa", "0xb"])
    ordered.offer("0xb", update, samples)
    with pytest.raises(AggregationError, match="asked for"):
        ordered.finish(["0xa", "0xb"])
    with pytest.raises(AggregationError, match="not an unsettled key"):
        OrderedRunningMean(["0xa"]).drop("0xz")


def test_bad_inputs_are_aggregation_errors() -> None:
    running = RunningMean()
    with pytest.raises(AggregationError, match="no update was added"):
        running.mean()
    running.add({"w": np.zeros(2, dtype=np.float32)}, 1)
    with pytest.raises(AggregationError, match="tensor names differ"):
        running.add({"v": np.zeros(2, dtype=np.float32)}, 1)
    with pytest.raises(AggregationError, match="samples must be"):
        running.add({"w": np.zeros(2, dtype=np.float32)}, -1)
    running.add({"w": np.array([np.nan, 0], dtype=np.float32)}, 1)
    with pytest.raises(AggregationError, match="NaN or infinity"):
        running.mean()
