"""A cluster aggregate as a blob (node/hospital.py ``store_aggregate``, ``aggregate_of``,
``_match_recorded``): encoded with the round's codec, the same blob wherever the same
aggregate is stored, and every node left with the tensors decoded from it. The hospital's
own methods run on a stand-in node with a real blob store on disk; the network runs in
tests/integration/test_update_codecs.py."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from gossip.blobs import BlobStore
from gossip.errors import FetchFailed
from incentive.records import ClusterInfo
from node.codecs import INT8_BLOCK, decode_update
from node.errors import RoundFailed
from node.hospital import HospitalNode
from node.round_book import AveragedInputs, averaged_inputs
from node.weights import CODEC, WeightArray, Weights, decode_weights

STATISTICS_ROUND = 1
RECORDED: AveragedInputs = averaged_inputs([("0xAA", "ab" * 32, 30), ("0xBB", "cd" * 32, 50)])


class Gossip:
    def __init__(self, store: BlobStore) -> None:
        self.store = store

    async def obtain(self, digest: str, providers: list[str]) -> None:
        if not self.store.has(digest):
            raise FetchFailed(f"no provider has {digest}")

    async def fetch(self, digest: str, providers: list[str]) -> bytes:
        data = self.store.get(digest)
        if data is None:
            raise FetchFailed(f"no provider has {digest}")
        return data


class Node:
    """The hospital's blob methods on a node of ``update_codec`` with ``store``."""

    update_codec = HospitalNode.update_codec
    aggregate_codec = HospitalNode.aggregate_codec
    store_weights = HospitalNode.store_weights
    store_aggregate = HospitalNode.store_aggregate
    aggregate_of = HospitalNode.aggregate_of
    weights_of = HospitalNode.weights_of
    remember_average = HospitalNode.remember_average
    _decoded = HospitalNode._decoded
    _remember_valid = HospitalNode._remember_valid
    _match_recorded = HospitalNode._match_recorded

    def __init__(self, store: BlobStore, update_codec: str, secure: bool = False) -> None:
        self.config = SimpleNamespace(
            federation=SimpleNamespace(update_codec=update_codec, secure_aggregation=secure),
            network=SimpleNamespace(max_blob_bytes=2**24),
        )
        self.learner = SimpleNamespace(statistics_round=lambda round_number: round_number == 1)
        self.gossip = Gossip(store)
        self._valid_blobs: dict[str, None] = {}
        self._valid_blobs_lock = threading.Lock()
        self._averages: dict[str, AveragedInputs] = {}


def aggregate(seed: int = 0) -> Weights:
    rng = np.random.default_rng(seed)
    return {
        "w": (rng.normal(size=(30, 20)) * 0.01).astype(np.float32),
        "b": rng.normal(size=5).astype(np.float32),
    }


def nodes(tmp_path: Path, update_codec: str, secure: bool = False) -> tuple[Node, Node]:
    """An aggregator and a member, each with its own store."""
    return (
        Node(BlobStore(tmp_path / "aggregator"), update_codec, secure),
        Node(BlobStore(tmp_path / "member"), update_codec, secure),
    )


def record(digest: str) -> ClusterInfo:
    return ClusterInfo(2, 0, digest, "", "ef" * 32, "0xAA", 80, 0)


def same(a: Mapping[str, WeightArray], b: Mapping[str, WeightArray]) -> bool:
    return set(a) == set(b) and all(np.array_equal(a[name], b[name]) for name in a)


@pytest.mark.parametrize("codec", ["int8", "fp16"])
async def test_a_member_recomputing_the_aggregate_gets_the_aggregators_blob_decoded(
    tmp_path: Path, codec: str
) -> None:
    aggregator, member = nodes(tmp_path, codec)
    mean = aggregate()
    blob, decoded = aggregator.store_aggregate(2, mean)
    assert blob.codec == f"mswc1-{codec}"
    data = aggregator.gossip.store.get(blob.digest)
    assert data is not None and blob.size == len(data)
    assert same(decode_update(data, blob.codec), decoded)

    # The member averages the same inputs itself, in arrays of its own.
    recomputed = {name: values.copy() for name, values in mean.items()}
    used = await member._match_recorded(2, record(blob.digest), RECORDED, recomputed, "its mean")
    assert same(used, decoded)  # what the blob decodes to, not the float32 average
    assert not same(used, mean)
    assert member.gossip.store.get(blob.digest) == data
    # cached by the new hash, and read back decoded by whoever holds the blob
    assert member._averages[blob.digest] == RECORDED
    assert same(await member.aggregate_of(2, blob.digest, []), decoded)


async def test_an_int8_aggregate_is_within_a_step_of_the_average(tmp_path: Path) -> None:
    aggregator, _member = nodes(tmp_path, "int8")
    mean = aggregate(1)
    decoded = aggregator.store_aggregate(2, mean)[1]
    for name, values in mean.items():
        flat = values.astype(np.float64).reshape(-1)
        got = np.asarray(decoded[name], dtype=np.float64).reshape(-1)
        for start in range(0, flat.size, INT8_BLOCK):
            block = flat[start : start + INT8_BLOCK]
            step = np.abs(block).max() / 127  # the block's scale, worked out here
            assert np.abs(got[start : start + INT8_BLOCK] - block).max() <= step * (1 + 1e-6)


async def test_an_aggregate_other_than_the_recorded_one_fails_the_round(tmp_path: Path) -> None:
    aggregator, member = nodes(tmp_path, "int8")
    blob = aggregator.store_aggregate(2, aggregate(2))[0]
    other = aggregate(3)
    with pytest.raises(RoundFailed, match="is not its mean recorded with it"):
        await member._match_recorded(2, record(blob.digest), RECORDED, other, "its mean")
    assert member.gossip.store.digests() == set()  # the wrong average is dropped


@pytest.mark.parametrize(
    ("codec", "round_number", "secure"),
    [("topk", 2, False), ("int8", STATISTICS_ROUND, False), ("fp32", 2, False), ("fp32", 2, True)],
)
async def test_other_aggregates_stay_float32(
    tmp_path: Path, codec: str, round_number: int, secure: bool
) -> None:
    aggregator, _member = nodes(tmp_path, codec, secure)
    mean = aggregate(4)
    blob, decoded = aggregator.store_aggregate(round_number, mean)
    assert blob.codec == CODEC
    data = aggregator.gossip.store.get(blob.digest)
    assert data is not None and same(decode_weights(data), mean)
    assert decoded is mean
    assert same(await aggregator.aggregate_of(round_number, blob.digest, []), mean)
