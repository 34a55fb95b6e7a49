"""The arithmetic of secure aggregation in a round: layouts, weighting, the roster, and the
survivors' FedAvg from masked inputs (node/secure_sum.py)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from node.aggregation import fedavg
from node.errors import AggregationError, CannotUnmask
from node.secagg import SecAggMember, SecAggRound, ShareBundle
from node.secure_sum import (
    answers_request,
    flatten,
    layout_length,
    layout_of,
    roster_members,
    secure_mean,
    unflatten,
    unmasking,
    weighted_input,
)
from node.weights import Weights

LAYOUT = layout_of({"w": (2, 3), "b": (3,)})


def update(seed: int) -> Weights:
    rng = np.random.default_rng(seed)
    return {
        "w": rng.normal(0, 0.05, (2, 3)).astype(np.float32),
        "b": rng.normal(0, 0.05, 3).astype(np.float32),
    }


def test_an_update_travels_as_its_tensors_in_name_order() -> None:
    assert LAYOUT == (("b", (3,)), ("w", (2, 3))) and layout_length(LAYOUT) == 9
    tensors = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.array([7, 8, 9.0])}
    flat = flatten(tensors, LAYOUT)
    assert flat.tolist() == [7, 8, 9, 0, 1, 2, 3, 4, 5]
    back = unflatten(flat, LAYOUT)
    assert back["w"].dtype == np.float32 and np.array_equal(back["w"], tensors["w"])
    assert weighted_input(tensors, LAYOUT, 1, 4).tolist() == [
        1.75,
        2,
        2.25,
        0,
        0.25,
        0.5,
        0.75,
        1,
        1.25,
    ]


def test_an_update_of_another_layout_is_refused() -> None:
    with pytest.raises(AggregationError, match="not the round's"):
        flatten({"w": np.zeros((2, 3))}, LAYOUT)
    with pytest.raises(AggregationError, match="shape"):
        flatten({"w": np.zeros((3, 2)), "b": np.zeros(3)}, LAYOUT)
    with pytest.raises(AggregationError, match="does not fit"):
        unflatten(np.zeros(8), LAYOUT)
    with pytest.raises(AggregationError, match="roster total"):
        weighted_input(update(0), LAYOUT, 5, 4)


def test_the_roster_keeps_the_members_whose_shares_reach_every_other_member() -> None:
    def bundle(sender: int, recipients: list[int]) -> ShareBundle:
        return ShareBundle(sender, tuple((r, b"") for r in recipients))

    everyone = {m: bundle(m, [r for r in range(4) if r != m]) for m in range(4)}
    assert roster_members(everyone) == (0, 1, 2, 3)
    # member 3's shares leave out member 1 (it missed 1's keys): 3 cannot be in a roster with
    # 1; without 3 the others reach each other
    partial = {**everyone, 3: bundle(3, [0, 2])}
    assert roster_members(partial) == (0, 1, 2)
    assert roster_members({m: everyone[m] for m in (0, 2)}) == (0, 2)


def masked_round(
    samples: list[int], seed: int = 3
) -> tuple[SecAggRound, list[SecAggMember], list[object], list[object], list[Weights]]:
    setup = SecAggRound(
        "heart", 2, 0, tuple(f"0x{i:040x}" for i in range(len(samples))), layout_length(LAYOUT)
    )
    members = [
        SecAggMember(setup, i, random.Random(seed * 100 + i).randbytes) for i in range(len(samples))
    ]
    keys = [m.advertise() for m in members]
    bundles = [m.deal_shares(keys) for m in members]
    updates = [update(i) for i in range(len(samples))]
    total = sum(samples)
    inputs = [
        m.mask(weighted_input(u, LAYOUT, n, total), bundles)
        for m, u, n in zip(members, updates, samples, strict=True)
    ]
    return setup, members, keys, inputs, updates


def test_the_survivors_secure_mean_is_their_fedavg() -> None:
    samples = [30, 50, 20, 100]
    setup, members, keys, inputs, updates = masked_round(samples)
    survivors = [0, 1, 3]  # member 2 masked, and its input never arrived
    aggregator = unmasking(setup, keys, [inputs[m] for m in survivors])  # type: ignore[misc]
    request = aggregator.request()
    assert (request.survivors, request.dropped) == (tuple(survivors), (2,))
    answers = [members[m].answer(request) for m in survivors]
    mean = secure_mean(aggregator, answers, dict(enumerate(samples)), LAYOUT)
    expected = fedavg([(updates[m], samples[m]) for m in survivors])
    for name in expected:
        # each of the 4 encodings is off by at most 2^-21, scaled by 200/180 at the end
        np.testing.assert_allclose(mean[name], expected[name], rtol=0, atol=4 * 2**-21 * 1.2)
    # any threshold of the answers unmasks the same bytes (how members check the aggregate)
    again = unmasking(setup, keys, [inputs[m] for m in survivors])  # type: ignore[misc]
    twice = secure_mean(again, answers[1:] + answers[:1], dict(enumerate(samples)), LAYOUT)
    assert all(np.array_equal(twice[n], mean[n]) for n in mean)
    third = unmasking(setup, keys, [inputs[m] for m in survivors])  # type: ignore[misc]
    fewest = secure_mean(third, answers[:3], dict(enumerate(samples)), LAYOUT)
    assert all(np.array_equal(fewest[n], mean[n]) for n in mean)


def test_answers_to_another_request_are_left_out() -> None:
    samples = [10, 10, 10]
    setup, members, keys, inputs, _ = masked_round(samples)
    aggregator = unmasking(setup, keys, inputs)  # type: ignore[arg-type]
    request = aggregator.request()
    answers = [members[m].answer(request) for m in range(3)]
    other = type(answers[0])(0, answers[0].seed_shares[:2], ())
    assert answers_request(answers[0], request) and not answers_request(other, request)
    with pytest.raises(CannotUnmask, match="answered"):
        secure_mean(aggregator, [other, answers[1]], dict(enumerate(samples)), LAYOUT)
