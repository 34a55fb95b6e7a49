"""A member's encoder of its round updates, with top-k's error feedback.

Updates are deltas against the round's global model (``trained - global``,
:meth:`node.learner.SiteLearner.train`). :class:`UpdateEncoder` turns one into the bytes the
member stores and announces (:func:`node.codecs.encode_update`) and into the tensors its
peers will decode from them, exactly (``sent``).

**Error feedback** (``topk``): what top-k does not send is not lost. The member keeps the
residual, the values it left out, and adds it to its next round's delta before choosing
that round's top-k: the update encoded in round ``r`` is ``delta_r + residual_{r-1}``, and
``residual_r`` is that minus what was sent. The residual lives in memory (a restarted node
starts again from zero), and a retried round starts again from the residual the round began
with, so a round's update is the same however often it is encoded.

**Randomness** (``int8``'s stochastic rounding) comes from a generator seeded by the
federation's seed, the round and the site (:func:`~node.training.derive_seed`): the same on
the network and in the in-memory simulation, so both make the same models.

**Cluster aggregates** (:func:`encode_aggregate`) travel with the update codec too: fp16 as
fp16, int8 as int8 with its rounding seeded from the aggregate's own content (the SHA-256 of
its float32 encoding), so every member that recomputes the aggregate from the same inputs
gets the same bytes and hash. Under top-k an aggregate stays float32: a sum of sparse
updates is not sparse, and nobody would keep an aggregate's residual for the next round.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from node.codecs import (
    DEFAULT_TOPK_FRACTION,
    announced_codec,
    decode_update,
    encode_update,
)
from node.training import derive_seed
from node.weights import WeightArray, Weights, weights_hash

AGGREGATE_CODECS = {"fp32": "fp32", "fp16": "fp16", "int8": "int8", "topk": "fp32"}
"""The codec a cluster aggregate travels with, by ``federation.update_codec``."""


@dataclass(frozen=True)
class EncodedUpdate:
    """An update as it travels: its bytes, the codec named in its announcement, and the
    tensors every node decodes from the bytes."""

    data: bytes
    codec: str
    sent: Weights


class UpdateEncoder:
    """One member's encoder for ``codec`` (``federation.update_codec``); see the module
    docstring."""

    def __init__(
        self,
        codec: str,
        seed: int,
        site: str,
        topk_fraction: float = DEFAULT_TOPK_FRACTION,
    ) -> None:
        self.codec = codec
        self.announced = announced_codec(codec)
        self.seed = seed
        self.site = site
        self.topk_fraction = topk_fraction
        self.residual: Weights = {}  # top-k: what was not sent yet
        self._round = 0  # the round last encoded
        self._residual_before: Weights = {}  # the residual that round began with

    def encode(self, update: Mapping[str, WeightArray], round_number: int) -> EncodedUpdate:
        """Encode round ``round_number``'s ``update`` (blocking; a second call for the same
        round starts from the same residual)."""
        if round_number != self._round:
            self._round, self._residual_before = round_number, self.residual
        values = self._with_residual(update)
        rng = np.random.default_rng(derive_seed(self.seed, "codec", round_number, self.site))
        data = encode_update(values, self.codec, rng, self.topk_fraction)
        sent = decode_update(data, self.announced, max(len(data), 4 * _count(values) + 2**20))
        if self.codec == "topk":
            self.residual = {name: values[name] - sent[name] for name in sorted(values)}
        return EncodedUpdate(data, self.announced, sent)

    def _with_residual(self, update: Mapping[str, WeightArray]) -> Weights:
        """``update`` plus the residual the round began with (top-k; a residual of another
        layout is dropped)."""
        values = {name: np.asarray(update[name], dtype=np.float32) for name in sorted(update)}
        before = self._residual_before
        if self.codec != "topk" or not _same_layout(values, before):
            return values
        return {name: values[name] + before[name] for name in values}


def aggregate_codec(update_codec: str) -> str:
    """The announced codec of a cluster aggregate when updates travel as ``update_codec``."""
    return announced_codec(AGGREGATE_CODECS.get(update_codec, update_codec))


def encode_aggregate(aggregate: Mapping[str, WeightArray], update_codec: str) -> EncodedUpdate:
    """A cluster's aggregate (a delta) as it travels when updates travel as ``update_codec``:
    its bytes, its announced codec (:func:`aggregate_codec`) and the tensors every node
    decodes from the bytes. The same aggregate always gives the same bytes (blocking)."""
    codec = AGGREGATE_CODECS.get(update_codec, update_codec)
    values = {name: np.asarray(aggregate[name], dtype=np.float32) for name in sorted(aggregate)}
    # only int8 rounds at random; hashing the whole aggregate for a seed is its cost alone
    rng = (
        np.random.default_rng(derive_seed("aggregate", weights_hash(values)))
        if codec == "int8"
        else None
    )
    data = encode_update(values, codec, rng)
    announced = announced_codec(codec)
    sent = decode_update(data, announced, max(len(data), 4 * _count(values) + 2**20))
    return EncodedUpdate(data, announced, sent)


def _count(weights: Mapping[str, WeightArray]) -> int:
    return sum(int(np.size(array)) for array in weights.values())


def _same_layout(a: Mapping[str, WeightArray], b: Mapping[str, WeightArray]) -> bool:
    return set(a) == set(b) and all(np.shape(a[n]) == np.shape(b[n]) for n in a)
