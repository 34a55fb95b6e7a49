"""Fuzzing the gossip announcement decoder and the validator that wraps it.

Property: :meth:`Announcement.decode` returns an announcement that keeps every documented
rule (canonical bytes, 64-hex hashes, addresses, non-negative numbers, well-formed inputs)
or raises :class:`MalformedMessage`; :func:`validate_announcement` returns a decision for
the same bytes and never raises.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace

from eth_account import Account
from hypothesis import given
from hypothesis import strategies as st

from gossip.errors import MalformedMessage
from gossip.messages import (
    MAX_ANNOUNCEMENT_BYTES,
    PROTOCOL_VERSION,
    UINT64_MAX,
    AggregateInput,
    Announcement,
    AnnouncementKind,
)
from gossip.validation import AnnouncementPolicy, Decision, Verdict, validate_announcement
from tests.fuzz.budget import FUZZ, one_input
from tests.fuzz.edits import BYTE_EDITS, edit_bytes
from tests.fuzz.json_text import fragments, json_values, near, render_object

TARGET = "gossip Announcement.decode + validate_announcement"
KEY = "0x" + "11" * 32
OTHER_KEY = "0x" + "22" * 32
ADDRESS = Account.from_key(KEY).address
OTHER_ADDRESS = Account.from_key(OTHER_KEY).address
PEER = "12D3KooWfuzzmember"
FEDERATION = "heart"
MAX_DEPTH = MAX_ANNOUNCEMENT_BYTES // 2

POLICY = AnnouncementPolicy(
    federation=FEDERATION,
    member_peer_id=lambda address: PEER if address.lower() == ADDRESS.lower() else None,
    current_round=lambda: 3,
    max_blob_bytes=2**20,
)

HEX64 = re.compile(r"[0-9a-f]{64}")
HEX130 = re.compile(r"[0-9a-f]{130}")
ADDRESS_FORM = re.compile(r"0x[0-9a-fA-F]{40}")

hashes = st.text("0123456789abcdef", min_size=64, max_size=64)
addresses = st.sampled_from([ADDRESS, ADDRESS.lower(), OTHER_ADDRESS, "0x" + "ab" * 20])
counts = st.integers(min_value=0, max_value=2**70) | st.sampled_from([0, 1, 3, UINT64_MAX])


@st.composite
def aggregate_inputs(draw: st.DrawFn) -> AggregateInput:
    rejected = draw(st.booleans())
    score = 0 if rejected else draw(st.integers(min_value=0, max_value=UINT64_MAX))
    samples = draw(st.integers(min_value=1, max_value=2**70))
    return AggregateInput(draw(addresses), draw(hashes), samples, score, rejected)


@st.composite
def signed_announcements(draw: st.DrawFn) -> Announcement:
    """Announcements whose every field is one the decoder accepts, signed or not."""
    announcement = Announcement(
        kind=draw(st.sampled_from(AnnouncementKind)),
        federation=draw(st.sampled_from([FEDERATION, "other"]) | st.text(max_size=12)),
        round=draw(counts),
        cluster=draw(counts),
        blob_hash=draw(hashes),
        size=draw(counts),
        codec=draw(st.text(max_size=12)),
        samples=draw(counts),
        sender=draw(addresses),
        peer_id=draw(st.sampled_from([PEER, "12D3KooWother"]) | st.text(max_size=12)),
        inputs=tuple(draw(st.lists(aggregate_inputs(), max_size=4))),
        round_signature=draw(st.just("") | st.text("0123456789abcdef", min_size=130, max_size=130)),
    )
    signing = draw(st.sampled_from(["key", "other key", "unsigned", "junk"]))
    if signing == "key":
        return announcement.signed(KEY)
    if signing == "other key":
        return announcement.signed(OTHER_KEY)
    if signing == "junk":
        return replace(announcement, signature=draw(st.text(max_size=140)))
    return announcement


def _parsed(value: str) -> object:
    """The value of a JSON fragment, or ``None`` for one an earlier edit made junk."""
    try:
        return json.loads(value)
    except (ValueError, RecursionError):
        return None


def _mutate_value(draw: st.DrawFn, pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    index = draw(st.integers(min_value=0, max_value=len(pairs) - 1))
    key, value = pairs[index]
    replacement = draw(fragments(MAX_DEPTH, like=_parsed(value)))
    return [*pairs[:index], (key, replacement), *pairs[index + 1 :]]


def _mutate_input(draw: st.DrawFn, pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    index = next((i for i, (key, _) in enumerate(pairs) if key == "inputs"), None)
    inputs = _parsed(pairs[index][1]) if index is not None else None
    if index is None or not isinstance(inputs, list):
        return _mutate_value(draw, pairs)
    items = [json.dumps(item, sort_keys=True) for item in inputs]
    objects = [i for i, item in enumerate(inputs) if isinstance(item, dict) and item]
    edit_one: bool = draw(st.booleans())
    if objects and edit_one:
        position: int = draw(st.sampled_from(objects))
        fields = sorted(inputs[position].items())
        mutated = _mutate_value(draw, [(k, json.dumps(v)) for k, v in fields])
        items[position] = render_object(mutated)
    else:
        items.append(draw(fragments(64) | json_values.map(json.dumps)))
    return [*pairs[:index], ("inputs", "[" + ",".join(items) + "]"), *pairs[index + 1 :]]


def _drop_field(draw: st.DrawFn, pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    index = draw(st.integers(min_value=0, max_value=len(pairs) - 1))
    return pairs[:index] + pairs[index + 1 :]


def _add_field(draw: st.DrawFn, pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    key = draw(st.sampled_from([k for k, _ in pairs]) | st.text(max_size=10))
    return [*pairs, (key, draw(fragments(64)))]  # a known key again: a duplicate


def _shuffle(draw: st.DrawFn, pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return draw(st.permutations(pairs))


MUTATIONS = (_mutate_value, _mutate_value, _mutate_input, _drop_field, _add_field, _shuffle)


@st.composite
def mutated_encodings(draw: st.DrawFn) -> bytes:
    """A valid signed encoding with one to four structural edits made to its JSON."""
    body = json.loads(draw(signed_announcements()).encode())
    pairs = [(key, json.dumps(value, sort_keys=True)) for key, value in sorted(body.items())]
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        if pairs:
            pairs = draw(st.sampled_from(MUTATIONS))(draw, pairs)
    text = render_object(pairs, spaced=draw(st.booleans()))
    return text.encode("utf-8", errors="surrogatepass")


@st.composite
def byte_edits(draw: st.DrawFn) -> bytes:
    """A valid signed encoding with bytes flipped, cut out or put in."""
    data = bytearray(draw(signed_announcements()).encode())
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        position = draw(st.integers(min_value=0, max_value=len(data)))
        edit_bytes(draw, data, draw(st.sampled_from(BYTE_EDITS)), position)
    return bytes(data)


def _check_invariants(announcement: Announcement, data: bytes) -> None:
    """What the module documents about every announcement it decodes."""
    assert announcement.encode() == data
    assert announcement.version == PROTOCOL_VERSION
    assert HEX64.fullmatch(announcement.blob_hash), announcement.blob_hash
    assert ADDRESS_FORM.fullmatch(announcement.sender), announcement.sender
    assert not announcement.round_signature or HEX130.fullmatch(announcement.round_signature)
    assert min(announcement.round, announcement.cluster, announcement.size) >= 0
    assert announcement.samples >= 0
    for item in announcement.inputs:
        assert ADDRESS_FORM.fullmatch(item.sender), item.sender
        assert HEX64.fullmatch(item.blob_hash), item.blob_hash
        assert item.samples > 0
        assert 0 <= item.score <= UINT64_MAX
        assert not (item.rejected and item.score)


def check_announcement_bytes(data: bytes) -> Announcement | None:
    """Decode and validate ``data``; fail on anything outside the documented outcomes."""
    with one_input(TARGET):
        try:
            announcement: Announcement | None = Announcement.decode(data)
        except MalformedMessage:
            announcement = None
        decision, decoded = validate_announcement(data, PEER, POLICY)
    assert isinstance(decision, Decision)
    assert decoded == announcement
    if announcement is None:
        assert decision.verdict is Verdict.REJECT
    else:
        _check_invariants(announcement, data)
    return announcement


@FUZZ
@given(st.binary(max_size=MAX_ANNOUNCEMENT_BYTES + 16))
def test_arbitrary_bytes(data: bytes) -> None:
    check_announcement_bytes(data)


@FUZZ
@given(json_values.map(lambda value: json.dumps(value).encode()))
def test_arbitrary_json(data: bytes) -> None:
    check_announcement_bytes(data)


@FUZZ
@given(mutated_encodings())
def test_structured_mutations_of_valid_encodings(data: bytes) -> None:
    check_announcement_bytes(data)


@FUZZ
@given(byte_edits())
def test_byte_edits_of_valid_encodings(data: bytes) -> None:
    check_announcement_bytes(data)


@FUZZ
@given(signed_announcements())
def test_every_valid_announcement_round_trips(announcement: Announcement) -> None:
    wire = announcement.encode()
    decoded = check_announcement_bytes(wire)
    if len(wire) <= MAX_ANNOUNCEMENT_BYTES:
        assert decoded == announcement
        assert decoded is not None and decoded.signature == announcement.signature
    signed_by_sender = (
        announcement.signature
        and announcement.sender.lower() == ADDRESS.lower()
        and announcement == announcement.signed(KEY)
        and announcement.signature == announcement.signed(KEY).signature
    )
    decision, _ = validate_announcement(wire, PEER, POLICY)
    if not signed_by_sender and announcement.sender.lower() == ADDRESS.lower():
        assert decision.verdict is Verdict.REJECT, decision


VALID_IDENTIFIERS = {"blob_hash": "ab" * 32, "sender": ADDRESS, "round_signature": "cd" * 65}


@FUZZ
@given(
    st.sampled_from(sorted(VALID_IDENTIFIERS)).flatmap(
        lambda name: st.tuples(st.just(name), near(VALID_IDENTIFIERS[name]))
    )
)
def test_near_miss_identifiers(case: tuple[str, str]) -> None:
    name, value = case
    announcement = Announcement(
        kind=AnnouncementKind.UPDATE,
        federation=FEDERATION,
        round=3,
        cluster=0,
        blob_hash="ab" * 32,
        size=10,
        codec="mswt1-f32",
        samples=5,
        sender=ADDRESS,
        peer_id=PEER,
    )
    edited = replace(announcement, **{name: value})  # type: ignore[arg-type]
    check_announcement_bytes(edited.signed(KEY).encode())
