"""Fuzzing the decoders of secure aggregation's messages (:mod:`node.secagg_messages`).

Property: each decoder either gives back a message whose canonical encoding is the input
(decoding is the inverse of encoding) or raises :class:`MalformedSecAggMessage`.
"""

from __future__ import annotations

import random

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from node.errors import MalformedSecAggMessage
from node.secagg import (
    KeyAdvertisement,
    MaskedInput,
    SecAggAggregator,
    SecAggMember,
    SecAggRound,
    ShareBundle,
    UnmaskingAnswer,
    UnmaskingRequest,
)
from tests.fuzz.budget import FUZZ, one_input
from tests.fuzz.edits import BYTE_EDITS, edit_bytes

TARGET = "secagg messages (KeyAdvertisement ... UnmaskingAnswer .decode)"
SETUP = SecAggRound("fuzz", 3, 0, ("a", "b", "c", "d"), 6)
DECODERS = (KeyAdvertisement, ShareBundle, MaskedInput, UnmaskingRequest, UnmaskingAnswer)


def _valid_encodings() -> list[bytes]:
    """One message of each kind from a real round in which member 3 drops after masking."""
    members = [SecAggMember(SETUP, i, random.Random(i).randbytes) for i in range(SETUP.size)]
    adverts = [m.advertise() for m in members]
    bundles = [m.deal_shares(adverts) for m in members]
    updates = np.linspace(-1, 1, SETUP.size * SETUP.length, dtype=np.float32)
    masked = [m.mask(updates[m.index :: SETUP.size], bundles) for m in members]
    aggregator = SecAggAggregator(SETUP, adverts)
    for message in masked[:3]:
        aggregator.receive(message)
    request = aggregator.request()
    answer = members[0].answer(request)
    return [m.encode(SETUP) for m in (adverts[1], bundles[2], masked[0], request, answer)]


VALID = _valid_encodings()


def _check(data: bytes) -> None:
    for decoder in DECODERS:
        with one_input(TARGET):
            try:
                message = decoder.decode(data, SETUP)
            except MalformedSecAggMessage:
                continue
        assert message.encode(SETUP) == data


@st.composite
def edited(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        position = draw(st.integers(min_value=0, max_value=max(len(data) - 1, 0)))
        edit_bytes(draw, data, draw(st.sampled_from(BYTE_EDITS)), position)
    return bytes(data)


@FUZZ
@given(edited())
def test_edited_encodings(data: bytes) -> None:
    _check(data)


@FUZZ
@given(st.integers(min_value=1, max_value=5), st.binary(max_size=400))
def test_arbitrary_bodies_behind_a_valid_header(kind: int, body: bytes) -> None:
    _check(bytes([1, kind]) + SETUP.digest + body)
