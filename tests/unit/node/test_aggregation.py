"""FedAvg and deltas against numbers computed by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from node.aggregation import apply_delta, delta, fedavg
from node.errors import AggregationError
from node.weights import BlobWeights, encode_weights


def f32(*values: float) -> np.ndarray:
    return np.array(values, dtype=np.float32)


def test_fedavg_weights_by_samples() -> None:
    # w: (1*[1, 2] + 3*[5, -2]) / 4 = [16/4, -4/4] = [4, -1]
    # b: (1*0.5 + 3*1.5) / 4 = 5/4 = 1.25
    first = {"w": f32(1, 2), "b": f32(0.5)}
    second = {"w": f32(5, -2), "b": f32(1.5)}
    result = fedavg([(first, 1), (second, 3)])
    assert result["w"].tolist() == [4.0, -1.0]
    assert result["b"].tolist() == [1.25]
    assert result["w"].dtype == np.float32


def test_fedavg_of_one_update_is_that_update_to_the_last_bit() -> None:
    values = np.random.default_rng(5).normal(size=10_000).astype(np.float32)
    # float32(float32(3 * u) / 3) is not u for every u: the sole update is returned as it is
    roundtrip = (values * np.float32(3)) / np.float32(3)
    assert (roundtrip != values).any()
    update = {"w": values}
    assert fedavg([(update, 3)])["w"].tobytes() == values.tobytes()
    zero = {"w": np.ones_like(values)}
    assert fedavg([(zero, 0), (update, 3), (zero, 0)])["w"].tobytes() == values.tobytes()
    with pytest.raises(AggregationError, match="NaN"):  # a zero-weight NaN is still refused
        fedavg([(update, 3), ({"w": np.full_like(values, np.nan)}, 0)])


def test_fedavg_rounds_each_product_and_each_sum_to_float32() -> None:
    # The arithmetic spelled out value by value with float32 scalars: the same bits.
    rng = np.random.default_rng(3)
    updates = [
        ({"w": (rng.normal(size=1000) * 10.0 ** rng.uniform(-6, 3)).astype(np.float32)}, n)
        for n in (1, 977, 40_000, 3)
    ]
    total = sum(n for _, n in updates)
    expected = np.empty(1000, dtype=np.float32)
    for i in range(1000):
        acc = np.float32(0)
        for update, n in updates:
            acc = np.float32(acc + np.float32(np.float32(n) * update["w"][i]))
        expected[i] = np.float32(acc / np.float32(total))
    assert fedavg(updates)["w"].tobytes() == expected.tobytes()


def test_fedavg_in_float32_stays_within_its_rounding_bound_of_the_exact_mean() -> None:
    rng = np.random.default_rng(4)
    updates = [({"w": rng.normal(size=50_000).astype(np.float32)}, 100 + i) for i in range(8)]
    exact = sum(np.float64(n) * u["w"].astype(np.float64) for u, n in updates)
    magnitude = sum(np.float64(n) * np.abs(u["w"].astype(np.float64)) for u, n in updates)
    total = sum(n for _, n in updates)
    error = np.abs(fedavg(updates)["w"] - exact / total)
    bound = (len(updates) + 2) * 2.0**-24 * (magnitude / total) + 2.0**-149
    assert (error <= bound).all()


def test_fedavg_reports_a_sum_beyond_float32() -> None:
    big = {"w": f32(3e38)}
    with pytest.raises(AggregationError, match="overflows float32"):
        fedavg([(big, 2), (big, 2)])


def test_fedavg_skips_zero_sample_updates_but_not_zero_total() -> None:
    assert fedavg([({"w": f32(2)}, 2), ({"w": f32(100)}, 0)])["w"].tolist() == [2.0]
    with pytest.raises(AggregationError, match="add up to zero"):
        fedavg([({"w": f32(2)}, 0), ({"w": f32(3)}, 0)])


@pytest.mark.parametrize(
    ("updates", "message"),
    [
        ([], "at least one update"),
        ([({"w": f32(1)}, 1), ({"v": f32(1)}, 1)], "names differ"),
        ([({"w": f32(1)}, 1), ({"w": f32(1, 2)}, 1)], "shape"),
        ([({"w": f32(1)}, -1)], "non-negative integer"),
        ([({"w": f32(1)}, 1.5)], "non-negative integer"),
        ([({"w": f32(1)}, 1), ({"w": f32(np.nan)}, 1)], "NaN"),
        ([({"w": f32(np.inf)}, 1)], "NaN or infinite"),
    ],
)
def test_fedavg_rejects_bad_input(updates: list, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(AggregationError, match=message):
        fedavg(updates)


def test_delta_and_apply_delta() -> None:
    old = {"w": f32(1.0, 2.0)}
    new = {"w": f32(1.5, 1.0)}
    step = delta(new, old)
    assert step["w"].tolist() == [0.5, -1.0]
    assert apply_delta(old, step)["w"].tolist() == [1.5, 1.0]
    with pytest.raises(AggregationError, match="names differ"):
        apply_delta(old, {"v": f32(0, 0)})


def test_global_step_is_weighted_mean_of_deltas() -> None:
    # global [0]; site A reaches [2] (n=1), site B reaches [-2] (n=3): [0] + (2 - 6)/4 = [-1]
    glob = {"w": f32(0.0)}
    deltas = [(delta({"w": f32(2.0)}, glob), 1), (delta({"w": f32(-2.0)}, glob), 3)]
    assert apply_delta(glob, fedavg(deltas))["w"].tolist() == [-1.0]


def test_models_read_from_blob_files_average_like_models_in_memory(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    models = [
        {"a": rng.standard_normal((40, 7)).astype(np.float32), "b": rng.standard_normal(3)}
        for _ in range(3)
    ]
    models = [{k: v.astype(np.float32) for k, v in m.items()} for m in models]
    files = []
    for index, model in enumerate(models):
        path = tmp_path / str(index)
        path.write_bytes(encode_weights(model))
        files.append(BlobWeights(path))
    in_memory = fedavg([(m, n) for m, n in zip(models, (5, 9, 2), strict=True)])
    from_files = fedavg([(m, n) for m, n in zip(files, (5, 9, 2), strict=True)])
    assert all(np.array_equal(in_memory[k], from_files[k]) for k in in_memory)
    assert all(
        np.array_equal(apply_delta(models[0], models[1])[k], apply_delta(files[0], files[1])[k])
        for k in in_memory
    )


def test_a_non_finite_input_is_named(tmp_path: Path) -> None:
    good = {"w": np.ones(4, dtype=np.float32)}
    bad = {"w": np.array([1.0, np.inf, 1.0, 1.0], dtype=np.float32)}
    with pytest.raises(AggregationError, match="update 1: tensor 'w' holds NaN or infinite"):
        fedavg([(good, 1), (bad, 1)])
    with pytest.raises(AggregationError, match="delta: tensor 'w' holds NaN or infinite"):
        delta(bad, good)
