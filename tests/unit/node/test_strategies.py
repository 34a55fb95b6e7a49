"""The strategy menu's pure math against numbers worked by hand or by a second method."""

from __future__ import annotations

import math

import numpy as np
import pytest

from node.aggregation import apply_delta, fedavg
from node.errors import AggregationError, InvalidStrategyConfig, InvalidStrategyState
from node.strategies import (
    ServerOptimizer,
    StrategyConfig,
    client_variate_update,
    merge_local,
    scaffold_correction,
    server_variate_step,
    server_variate_update,
    split_local,
    split_server_state,
    variate_change_per_sample,
    with_server_state,
    zero_variate,
)
from node.weights import Weights


def f32(*values: float) -> np.ndarray:
    return np.array(values, dtype=np.float32)


def adaptive(name: str, server_lr: float = 1.0) -> StrategyConfig:
    # tau^2 = 0.25 starts v; 1 - beta1 = 0.5 and 1 - beta2 = 0.25 keep the hand sums short.
    return StrategyConfig(name, server_lr=server_lr, beta1=0.5, beta2=0.75, tau=0.5)  # type: ignore[arg-type]


X0 = {"w": f32(1.0, -1.0)}


# --- configuration --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "fedsgd"}, "name must be one of"),
        ({"server_lr": 0.0}, "server_lr must be a positive"),
        ({"server_lr": float("nan")}, "server_lr must be a positive"),
        ({"beta1": 1.0}, r"beta1 must be a number in \[0, 1\)"),
        ({"beta2": -0.1}, r"beta2 must be a number in \[0, 1\)"),
        ({"tau": 0}, "tau must be a positive"),
        ({"proximal_mu": -1.0}, "proximal_mu must be a finite number >= 0"),
        ({"name": "fedprox"}, "proximal_mu must be > 0 for fedprox"),
        ({"name": "fedyogi", "proximal_mu": 0.1}, "proximal_mu applies to fedprox only"),
        ({"local_layers": ["linear.bias"]}, "local_layers must be a tuple"),
        ({"local_layers": ("b", "b")}, "local_layers must be a tuple of distinct"),
        ({"finetune_steps": -1}, "finetune_steps must be an integer >= 0"),
        ({"finetune_steps": True}, "finetune_steps must be an integer >= 0"),
        ({"finetune_steps": 5, "finetune_select": 1}, "finetune_select must be true or false"),
        ({"finetune_select": True}, "finetune_select chooses up to finetune_steps"),
        ({"finetune_steps": 5, "finetune_mu": -0.1}, "finetune_mu must be a finite number >= 0"),
        ({"finetune_mu": 0.5}, "finetune_mu shapes fine-tuning: set finetune_steps"),
    ],
)
def test_invalid_config_names_the_field(fields: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidStrategyConfig, match=message):
        StrategyConfig(**fields)  # type: ignore[arg-type]


def test_invalid_config_lists_every_problem() -> None:
    with pytest.raises(InvalidStrategyConfig) as caught:
        StrategyConfig("fedadam", server_lr=-1.0, tau=-1.0)
    assert "server_lr" in str(caught.value) and "tau" in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_config_flags() -> None:
    assert StrategyConfig("fedyogi").adaptive
    assert not StrategyConfig("scaffold").adaptive
    assert not StrategyConfig().personalised
    assert StrategyConfig(finetune_steps=5).personalised
    assert StrategyConfig(local_layers=("linear.bias",)).personalised


# --- FedAvg ---------------------------------------------------------------------------------


def test_fedavg_with_server_lr_one_is_node_aggregation_exactly() -> None:
    rng = np.random.default_rng(0)
    g = {
        "a": rng.normal(size=(3, 4)).astype(np.float32),
        "b": rng.normal(size=2).astype(np.float32),
    }
    updates = [
        ({k: (rng.normal(size=v.shape) / 7).astype(np.float32) for k, v in g.items()}, n)
        for n in (199, 172, 30, 85)
    ]
    mean = fedavg(updates)
    stepped = ServerOptimizer(StrategyConfig("fedavg")).step(g, mean)
    expected = apply_delta(g, mean)
    assert list(stepped) == list(expected)
    for name in g:
        assert stepped[name].dtype == np.float32
        assert stepped[name].tobytes() == expected[name].tobytes()


def test_fedavg_server_lr_scales_the_mean_delta() -> None:
    # [1, 2] + 0.5 * [0.5, -1] = [1.25, 1.5]
    optimizer = ServerOptimizer(StrategyConfig("fedavg", server_lr=0.5))
    assert optimizer.step({"w": f32(1, 2)}, {"w": f32(0.5, -1)})["w"].tolist() == [1.25, 1.5]
    assert optimizer.steps == 1
    assert optimizer.moments() == ({}, {})


def test_fedprox_and_scaffold_servers_step_like_fedavg() -> None:
    mean = {"w": f32(0.25, -0.5)}
    for config in (StrategyConfig("fedprox", proximal_mu=0.1), StrategyConfig("scaffold")):
        assert ServerOptimizer(config).step(X0, mean)["w"].tolist() == [1.25, -1.5]


# --- adaptive optimizers, worked by hand ----------------------------------------------------


def test_fedadagrad_two_steps_by_hand() -> None:
    optimizer = ServerOptimizer(adaptive("fedadagrad"))
    # m1 = 0.5 * d1 = [0.46875, -0.6]; v1 = 0.25 + d1^2 = [1.12890625, 1.69] = [1.0625^2, 1.3^2]
    # x1 = x0 + m1 / (sqrt(v1) + 0.5) = [1 + 0.46875 / 1.5625, -1 - 0.6 / 1.8] = [1.3, -4/3]
    x1 = optimizer.step(X0, {"w": f32(0.9375, -1.2)})
    m, v = optimizer.moments()
    assert m["w"].tolist() == pytest.approx([0.46875, -0.6], abs=1e-7)
    assert v["w"].tolist() == pytest.approx([1.12890625, 1.69], abs=1e-6)
    assert x1["w"].tolist() == pytest.approx([1.3, -4 / 3], abs=1e-6)
    # d2 = [0, 8.4]: m2 = 0.5 * m1 + 0.5 * d2 = [0.234375, 3.9]
    # v2 = v1 + d2^2 = [1.12890625, 72.25] = [1.0625^2, 8.5^2]
    # x2 = x1 + m2 / (sqrt(v2) + 0.5) = [1.3 + 0.234375 / 1.5625, -4/3 + 3.9 / 9] = [1.45, -0.9]
    x2 = optimizer.step(x1, {"w": f32(0.0, 8.4)})
    m, v = optimizer.moments()
    assert m["w"].tolist() == pytest.approx([0.234375, 3.9], abs=1e-6)
    assert v["w"].tolist() == pytest.approx([1.12890625, 72.25], abs=1e-5)
    assert x2["w"].tolist() == pytest.approx([1.45, -0.9], abs=1e-6)
    assert optimizer.steps == 2


def test_fedyogi_first_step_by_hand_takes_both_signs() -> None:
    optimizer = ServerOptimizer(adaptive("fedyogi"))
    # d1 = [0.75, -0.28]; v0 = 0.25. First coordinate: d^2 = 0.5625 > v0, sign(v0 - d^2) = -1,
    # v1 = 0.25 + 0.25 * 0.5625 = 0.390625 = 0.625^2. Second: d^2 = 0.0784 < v0, sign = +1,
    # v1 = 0.25 - 0.25 * 0.0784 = 0.2304 = 0.48^2. m1 = 0.5 * d1 = [0.375, -0.14].
    # x1 = [1 + 0.375 / 1.125, -1 - 0.14 / 0.98] = [4/3, -8/7]
    x1 = optimizer.step(X0, {"w": f32(0.75, -0.28)})
    _, v = optimizer.moments()
    assert v["w"].tolist() == pytest.approx([0.390625, 0.2304], abs=1e-7)
    assert x1["w"].tolist() == pytest.approx([4 / 3, -8 / 7], abs=1e-6)


def test_fedadam_first_step_by_hand() -> None:
    optimizer = ServerOptimizer(adaptive("fedadam"))
    # d1 = [0.5, -1.375]; v1 = 0.75 * 0.25 + 0.25 * d1^2 = [0.25, 0.66015625] = [0.5^2, 0.8125^2]
    # m1 = [0.25, -0.6875]; x1 = [1 + 0.25 / 1, -1 - 0.6875 / 1.3125] = [1.25, -32/21]
    x1 = optimizer.step(X0, {"w": f32(0.5, -1.375)})
    _, v = optimizer.moments()
    assert v["w"].tolist() == pytest.approx([0.25, 0.66015625], abs=1e-7)
    assert x1["w"].tolist() == pytest.approx([1.25, -32 / 21], abs=1e-6)


def reference_steps(
    name: str, x: list[float], deltas: list[list[float]], lr: float
) -> list[list[float]]:
    """Reddi et al.'s Algorithm 2 one coordinate at a time, in plain Python floats."""
    beta1, beta2, tau = 0.5, 0.75, 0.5
    m = [0.0] * len(x)
    v = [tau * tau] * len(x)
    out = []
    for d in deltas:
        for j, dj in enumerate(d):
            m[j] = beta1 * m[j] + (1 - beta1) * dj
            if name == "fedadagrad":
                v[j] = v[j] + dj * dj
            elif name == "fedyogi":
                v[j] = v[j] - (1 - beta2) * dj * dj * math.copysign(1.0, v[j] - dj * dj)
            else:
                v[j] = beta2 * v[j] + (1 - beta2) * dj * dj
            x[j] = x[j] + lr * m[j] / (math.sqrt(v[j]) + tau)
        out.append(list(x))
    return out


@pytest.mark.parametrize("name", ["fedadam", "fedyogi", "fedadagrad"])
def test_adaptive_two_steps_match_a_scalar_reference(name: str) -> None:
    deltas = [[0.3, -0.7], [-0.2, -0.9]]
    expected = reference_steps(name, [1.0, -1.0], deltas, lr=0.1)
    optimizer = ServerOptimizer(adaptive(name, server_lr=0.1))
    x: Weights = dict(X0)
    for d, want in zip(deltas, expected, strict=True):
        x = optimizer.step(x, {"w": f32(*d)})
        assert x["w"].tolist() == pytest.approx(want, abs=1e-6)


def test_step_rejects_mismatched_input_and_keeps_its_state() -> None:
    optimizer = ServerOptimizer(adaptive("fedadam"))
    optimizer.step(X0, {"w": f32(0.5, 0.5)})
    before = optimizer.state_hash()
    with pytest.raises(AggregationError, match="names differ"):
        optimizer.step(X0, {"v": f32(0.5, 0.5)})
    with pytest.raises(AggregationError, match="NaN"):
        optimizer.step(X0, {"w": f32(np.nan, 0.5)})
    with pytest.raises(AggregationError, match="against the optimizer state"):
        optimizer.step({"w": f32(1, 2, 3)}, {"w": f32(0, 0, 0)})
    assert optimizer.state_hash() == before and optimizer.steps == 1


# --- state ----------------------------------------------------------------------------------


def run(optimizer: ServerOptimizer, x: Weights, deltas: list[list[float]]) -> Weights:
    for d in deltas:
        x = optimizer.step(x, {"w": f32(*d)})
    return x


@pytest.mark.parametrize("name", ["fedadam", "fedyogi", "fedadagrad", "fedavg"])
def test_restored_state_gives_the_identical_next_step(name: str) -> None:
    config = adaptive(name) if name != "fedavg" else StrategyConfig()
    original = ServerOptimizer(config)
    x = run(original, dict(X0), [[0.3, -0.7], [-0.2, -0.9]])
    restored = ServerOptimizer.restore(config, original.state_bytes())
    assert restored.state_bytes() == original.state_bytes()
    assert restored.state_hash() == original.state_hash()
    assert restored.steps == 2
    after_original = original.step(x, {"w": f32(0.1, 0.1)})
    after_restored = restored.step(x, {"w": f32(0.1, 0.1)})
    assert after_restored["w"].tobytes() == after_original["w"].tobytes()
    assert restored.state_hash() == original.state_hash()


def test_nodes_that_see_the_same_aggregates_hold_the_same_state() -> None:
    first, second = ServerOptimizer(adaptive("fedyogi")), ServerOptimizer(adaptive("fedyogi"))
    run(first, dict(X0), [[0.3, -0.7], [-0.2, -0.9]])
    run(second, dict(X0), [[0.3, -0.7], [-0.2, -0.9]])
    assert first.state_hash() == second.state_hash()
    run(second, dict(X0), [[0.0, 1e-6]])
    assert first.state_hash() != second.state_hash()


def test_fresh_state_round_trips() -> None:
    config = adaptive("fedadam")
    restored = ServerOptimizer.restore(config, ServerOptimizer(config).state_bytes())
    assert restored.steps == 0 and restored.moments() == ({}, {})


def test_restore_refuses_state_saved_with_other_parameters() -> None:
    data = ServerOptimizer(adaptive("fedadam")).state_bytes()
    with pytest.raises(InvalidStrategyState, match=r"\['server_lr'\]"):
        ServerOptimizer.restore(adaptive("fedadam", server_lr=0.3), data)
    with pytest.raises(InvalidStrategyState, match=r"\['name'\]"):
        ServerOptimizer.restore(adaptive("fedyogi"), data)


def test_restore_refuses_malformed_bytes() -> None:
    config = adaptive("fedadam")
    optimizer = ServerOptimizer(config)
    run(optimizer, dict(X0), [[0.3, -0.7]])
    data = optimizer.state_bytes()
    header_end = 10 + int.from_bytes(data[6:10], "little")
    header, body = data[10:header_end], data[header_end:]
    spaced = header.replace(b'"steps":1', b'"steps": 1')
    respaced = data[:6] + len(spaced).to_bytes(4, "little") + spaced + body
    nan_body = data[:header_end] + np.full(4, np.nan).astype("<f8").tobytes()
    negative_v = data[: header_end + 16] + np.full(2, -1.0).astype("<f8").tobytes()
    for bad, message in [
        (b"", "shorter than its fixed prefix"),
        (b"XXXX" + data[4:], "starts with"),
        (data[:4] + b"\x02\x00" + data[6:], "version 2"),
        (data[:-1], "body has"),
        (data + b"\x00", "body has"),
        (data.replace(b'"steps":1', b'"steps":0'), "moments must be present"),
        (data.replace(b'"steps":1', b'"steps": 1'), "not ASCII JSON"),
        (respaced, "not in canonical form"),
        (nan_body, "NaN"),
        (negative_v, "positive"),
    ]:
        with pytest.raises(InvalidStrategyState, match=message):
            ServerOptimizer.restore(config, bad)


def test_state_bytes_layout() -> None:
    optimizer = ServerOptimizer(adaptive("fedadagrad"))
    run(optimizer, dict(X0), [[0.9375, -1.2]])
    data = optimizer.state_bytes()
    assert data[:4] == b"MSSO" and data[4:6] == b"\x01\x00"
    header_end = 10 + int.from_bytes(data[6:10], "little")
    assert b'"steps":1' in data[10:header_end]
    body = np.frombuffer(data[header_end:], dtype="<f8")
    assert body.tolist() == pytest.approx([0.46875, -0.6, 1.12890625, 1.69], abs=1e-6)


# --- SCAFFOLD -------------------------------------------------------------------------------


def test_scaffold_correction_is_server_minus_client_variate() -> None:
    correction = scaffold_correction({"w": f32(0.3, 0.0)}, {"w": f32(0.1, -0.2)})
    assert correction["w"].tolist() == pytest.approx([0.2, 0.2])


def test_client_variate_option_two_by_hand() -> None:
    # K * lr = 4 * 0.05 = 0.2; (x - y) / 0.2 = ([1, 2] - [0.8, 2.4]) / 0.2 = [1, -2]
    # c_i+ = c_i - c + [1, -2] = [0.1 - 0.3 + 1, -0.2 - 0 - 2] = [0.8, -2.2]
    new = client_variate_update(
        {"w": f32(0.1, -0.2)},
        {"w": f32(0.3, 0.0)},
        {"w": f32(1.0, 2.0)},
        {"w": f32(0.8, 2.4)},
        steps=4,
        lr=0.05,
    )
    assert new["w"].tolist() == pytest.approx([0.8, -2.2], abs=1e-6)
    assert new["w"].dtype == np.float32


def test_server_variate_uses_the_participation_fraction() -> None:
    # 2 of N = 4 clients report: c + (2/4) * mean(dc) = [0.3, 0] + [0.6, 0.4] / 4 = [0.45, 0.1]
    new = server_variate_update(
        {"w": f32(0.3, 0.0)}, [{"w": f32(0.4, -0.4)}, {"w": f32(0.2, 0.8)}], total_clients=4
    )
    assert new["w"].tolist() == pytest.approx([0.45, 0.1], abs=1e-7)


def test_server_variate_stays_the_mean_of_client_variates() -> None:
    rng = np.random.default_rng(1)
    clients = [zero_variate({"w": f32(0, 0, 0)}) for _ in range(3)]
    c = zero_variate(clients[0])
    for participants in ([0, 1, 2], [0, 2], [1]):
        deltas = []
        for i in participants:
            step = {"w": rng.normal(size=3).astype(np.float32)}
            clients[i] = {"w": clients[i]["w"] + step["w"]}
            deltas.append(step)
        c = server_variate_update(c, deltas, total_clients=3)
        mean = np.mean([cl["w"].astype(np.float64) for cl in clients], axis=0)
        assert c["w"].tolist() == pytest.approx(mean.tolist(), abs=1e-6)


@pytest.mark.parametrize(
    ("steps", "lr", "message"),
    [(0, 0.1, "steps must be a positive integer"), (2, 0.0, "lr must be a positive")],
)
def test_client_variate_rejects_bad_step_settings(steps: int, lr: float, message: str) -> None:
    w = {"w": f32(0)}
    with pytest.raises(AggregationError, match=message):
        client_variate_update(w, w, w, w, steps=steps, lr=lr)


def test_server_variate_rejects_more_participants_than_clients() -> None:
    w = {"w": f32(0)}
    with pytest.raises(AggregationError, match="total_clients"):
        server_variate_update(w, [w, w], total_clients=1)
    with pytest.raises(AggregationError, match="at least one"):
        server_variate_update(w, [], total_clients=1)


# --- personalisation ------------------------------------------------------------------------


def test_split_and_merge_local_layers() -> None:
    weights = {"linear.weight": f32(1, 2), "linear.bias": f32(3)}
    shared, local = split_local(weights, ("linear.bias",))
    assert list(shared) == ["linear.weight"] and list(local) == ["linear.bias"]
    merged = merge_local(shared, local)
    assert list(merged) == ["linear.bias", "linear.weight"]
    assert all(merged[k] is weights[k] for k in weights)
    assert split_local(weights, ()) == (dict(sorted(weights.items())), {})


def test_split_local_rejects_unknown_or_all_tensors() -> None:
    weights = {"linear.weight": f32(1, 2), "linear.bias": f32(3)}
    with pytest.raises(InvalidStrategyConfig, match=r"does not have: \['bn.weight'\]"):
        split_local(weights, ("bn.weight",))
    with pytest.raises(InvalidStrategyConfig, match="nothing would be shared"):
        split_local(weights, ("linear.weight", "linear.bias"))
    with pytest.raises(AggregationError, match="both shared and local"):
        merge_local(weights, {"linear.bias": f32(0)})


# --- the server state in the global blob ---------------------------------------------------


def test_server_state_rides_in_the_global_blob_and_steps_identically() -> None:
    config = adaptive("fedyogi")
    original = ServerOptimizer(config)
    x = run(original, dict(X0), [[0.3, -0.7], [-0.2, -0.9]])
    blob = with_server_state(x, original)
    assert sorted(blob) == ["server/m/w", "server/v/w", "w"]
    assert all(a.dtype == np.float32 for a in blob.values())
    model, restored = split_server_state(blob, config, steps=2)
    assert sorted(model) == ["w"] and restored.steps == 2
    assert restored.state_hash() == original.state_hash()  # moments are float32-exact
    after_original = original.step(x, {"w": f32(0.1, 0.1)})
    after_restored = restored.step(model, {"w": f32(0.1, 0.1)})
    assert after_restored["w"].tobytes() == after_original["w"].tobytes()


def test_a_blob_before_the_first_adaptive_step_has_no_state() -> None:
    optimizer = ServerOptimizer(adaptive("fedadam"))
    assert sorted(with_server_state(X0, optimizer)) == ["w"]
    model, fresh = split_server_state(X0, adaptive("fedadam"), steps=0)
    assert fresh.moments() == ({}, {}) and sorted(model) == ["w"]


@pytest.mark.parametrize(
    ("extra", "config", "message"),
    [
        ({"server/m/w": f32(0, 0), "server/v/w": f32(1, 1)}, StrategyConfig(), "keeps none"),
        ({"server/m/w": f32(0, 0)}, adaptive("fedadam"), "exactly its tensors"),
        ({"server/m/w": f32(0), "server/v/w": f32(1)}, adaptive("fedadam"), "wrong shape"),
        ({"server/m/w": f32(0, 0), "server/v/w": f32(1, 0)}, adaptive("fedadam"), "positive"),
        ({"server/m/w": f32(np.nan, 0), "server/v/w": f32(1, 1)}, adaptive("fedadam"), "finite"),
    ],
)
def test_server_state_that_does_not_fit_is_refused(
    extra: dict[str, np.ndarray], config: StrategyConfig, message: str
) -> None:
    with pytest.raises(InvalidStrategyState, match=message):
        split_server_state({**X0, **extra}, config, steps=1)


def test_the_nodes_server_variate_step_is_scaffolds_update() -> None:
    # three sites with 2, 5 and 9 samples; per-sample changes averaged by samples, then scaled
    c = {"w": f32(0.5, -0.25)}
    olds = [{"w": f32(0.0, 0.0)}, {"w": f32(1.0, -1.0)}, {"w": f32(0.25, 0.5)}]
    news = [{"w": f32(0.5, 1.0)}, {"w": f32(0.0, 0.5)}, {"w": f32(1.25, -0.5)}]
    samples = [2, 5, 9]
    per_sample = [
        (variate_change_per_sample(o, n, k), k) for o, n, k in zip(olds, news, samples, strict=True)
    ]
    stepped = server_variate_step(c, fedavg(per_sample), sum(samples), 4)
    deltas = [{"w": n["w"] - o["w"]} for o, n in zip(olds, news, strict=True)]
    reference = server_variate_update(c, deltas, 4)
    np.testing.assert_allclose(stepped["w"], reference["w"], rtol=1e-6)
    # deltas sum to [0.5, 1.5]; a quarter of that added to c
    assert stepped["w"].tolist() == pytest.approx([0.625, 0.125])
