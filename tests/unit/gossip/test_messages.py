import json
import sys
from collections.abc import Iterator
from dataclasses import replace

import pytest
from eth_account import Account

from gossip.errors import BadSignature, MalformedMessage
from gossip.messages import PROTOCOL_VERSION, AggregateInput, Announcement, AnnouncementKind

KEY = "0x" + "11" * 32
OTHER_KEY = "0x" + "22" * 32
ADDRESS = Account.from_key(KEY).address


def make(**changes: object) -> Announcement:
    base = Announcement(
        kind=AnnouncementKind.UPDATE,
        federation="heart",
        round=3,
        cluster=0,
        blob_hash="ab" * 32,
        size=120,
        codec="msw1-f32",
        samples=199,
        sender=ADDRESS,
        peer_id="12D3KooWtest",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_round_trip_is_byte_identical() -> None:
    signed = make().signed(KEY)
    wire = signed.encode()
    decoded = Announcement.decode(wire)
    assert decoded == signed
    assert decoded.signature == signed.signature
    assert decoded.encode() == wire


def test_encoding_is_canonical_sorted_compact_json() -> None:
    wire = make().signed(KEY).encode()
    assert wire.startswith(b'{"blob_hash":"abab')
    assert b" " not in wire


def test_signature_recovers_sender() -> None:
    signed = make().signed(KEY)
    assert signed.recover_signer() == ADDRESS
    signed.verify_signature()


def test_tampered_field_breaks_signature() -> None:
    signed = make().signed(KEY)
    tampered = replace(signed, samples=10_000)
    with pytest.raises(BadSignature, match="signed by"):
        tampered.verify_signature()


def test_signed_by_someone_else_is_detected() -> None:
    forged = make().signed(OTHER_KEY)
    with pytest.raises(BadSignature, match=ADDRESS):
        forged.verify_signature()


def test_unsigned_is_detected() -> None:
    with pytest.raises(BadSignature, match="not signed"):
        make().verify_signature()


def test_aggregate_inputs_round_trip() -> None:
    inputs = (AggregateInput(sender=ADDRESS, blob_hash="cd" * 32, samples=5),)
    signed = make(kind=AnnouncementKind.AGGREGATE, inputs=inputs).signed(KEY)
    assert Announcement.decode(signed.encode()).inputs == inputs


@pytest.mark.parametrize(
    ("wire", "match"),
    [
        (b"\xff\xfe", "not canonical JSON"),
        (b"[1,2]", "JSON object"),
        (b'{"round":1}', "missing"),
        (b"x" * 20_000, "over the"),
    ],
)
def test_malformed_wire_is_rejected(wire: bytes, match: str) -> None:
    with pytest.raises(MalformedMessage, match=match):
        Announcement.decode(wire)


def test_non_canonical_encoding_is_rejected() -> None:
    wire = make().signed(KEY).encode().replace(b'"round":3', b'"round": 3')
    with pytest.raises(MalformedMessage, match="canonical"):
        Announcement.decode(wire)


def test_bad_hash_and_negative_numbers_are_rejected() -> None:
    bad_hash = make(blob_hash="XYZ").signed(KEY).encode()
    with pytest.raises(MalformedMessage, match="SHA-256"):
        Announcement.decode(bad_hash)
    negative = make(round=-1).signed(KEY).encode()
    with pytest.raises(MalformedMessage, match="negative"):
        Announcement.decode(negative)


def test_future_version_says_to_upgrade() -> None:
    wire = make(version=PROTOCOL_VERSION + 1).signed(KEY).encode()
    with pytest.raises(MalformedMessage, match="upgrade"):
        Announcement.decode(wire)


def test_scores_rejections_and_round_signatures_round_trip() -> None:
    inputs = (
        AggregateInput(ADDRESS, "cd" * 32, 5, score=2**40),
        AggregateInput(ADDRESS, "ef" * 32, 3, rejected=True),
    )
    signed = make(kind=AnnouncementKind.AGGREGATE, inputs=inputs, samples=5).signed(KEY)
    assert Announcement.decode(signed.encode()).inputs == inputs
    attest = make(kind=AnnouncementKind.ATTEST, size=0, samples=0, round_signature="0a" * 65)
    assert Announcement.decode(attest.signed(KEY).encode()).round_signature == "0a" * 65


@pytest.mark.parametrize(
    ("item", "match"),
    [
        ({"score": -1}, "score must be an integer"),
        ({"score": 2**64}, "score must be an integer"),
        ({"score": True}, "score must be an integer"),
        ({"rejected": 1}, "rejected must be a boolean"),
        ({"rejected": True, "score": 3}, "rejected input scores 0"),
    ],
)
def test_bad_scores_and_flags_are_malformed(item: dict[str, object], match: str) -> None:
    signed = make(
        kind=AnnouncementKind.AGGREGATE, inputs=(AggregateInput(ADDRESS, "cd" * 32, 5),)
    ).signed(KEY)
    raw = json.loads(signed.encode())
    raw["inputs"][0].update(item)
    wire = json.dumps(raw, sort_keys=True, separators=(",", ":")).encode()
    with pytest.raises(MalformedMessage, match=match):
        Announcement.decode(wire)


def test_a_round_signature_is_65_bytes_of_lowercase_hex() -> None:
    raw = json.loads(make(round_signature="0a" * 65).signed(KEY).encode())
    raw["round_signature"] = "0A" * 65
    wire = json.dumps(raw, sort_keys=True, separators=(",", ":")).encode()
    with pytest.raises(MalformedMessage, match="round_signature"):
        Announcement.decode(wire)


@pytest.fixture
def default_recursion_limit() -> Iterator[None]:
    """CPython's default recursion limit (eth-account's import raised it to 100,000)."""
    previous = sys.getrecursionlimit()
    sys.setrecursionlimit(1000)
    yield
    sys.setrecursionlimit(previous)


@pytest.mark.usefixtures("default_recursion_limit")
def test_deeply_nested_json_is_malformed_not_a_recursion_error() -> None:
    raw = json.loads(make().signed(KEY).encode())
    wire = json.dumps(raw, sort_keys=True, separators=(",", ":")).encode()
    nested = wire.replace(b'"codec":"msw1-f32"', b'"codec":' + b"[" * 5000 + b"]" * 5000)
    with pytest.raises(MalformedMessage, match="nested deeper than"):
        Announcement.decode(nested)


def test_a_number_too_long_to_parse_is_malformed() -> None:
    wire = make().signed(KEY).encode().replace(b'"round":3', b'"round":' + b"9" * 5000)
    with pytest.raises(MalformedMessage, match="4300 digits"):
        Announcement.decode(wire)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("blob_hash", "ab" * 32 + "\n"),
        ("sender", ADDRESS + "\n"),
        ("round_signature", "0a" * 65 + "\n"),
    ],
)
def test_a_trailing_newline_does_not_pass_for_a_hash_address_or_signature(
    name: str, value: str
) -> None:
    kind = AnnouncementKind.ATTEST if name == "round_signature" else AnnouncementKind.UPDATE
    wire = make(kind=kind, **{name: value}).signed(KEY).encode()
    with pytest.raises(MalformedMessage, match=name):
        Announcement.decode(wire)
