"""Hash normalisation, MemberRecord validation and the records hash."""

from __future__ import annotations

import hashlib

import pytest
from eth_utils import keccak

from incentive.hashes import hash_bytes, hash_hex
from incentive.records import MemberRecord, records_hash, sort_records

DIGEST = hashlib.sha256(b"update").hexdigest()
ADDRESS = "0x2b5ad5c4795c026514f8317c7a215e218dccd6cf"


@pytest.mark.parametrize(
    "form", [DIGEST, "0x" + DIGEST, DIGEST.upper(), "0X" + DIGEST, bytes.fromhex(DIGEST)]
)
def test_hash_forms_normalise_to_bare_lowercase_hex(form: str | bytes) -> None:
    assert hash_hex(form) == DIGEST
    assert hash_bytes(form) == bytes.fromhex(DIGEST)


@pytest.mark.parametrize(
    ("value", "fragment"), [("abc", "not hexadecimal"), ("00" * 31, "31 bytes")]
)
def test_bad_hashes_are_rejected(value: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        hash_hex(value)


def test_member_record_normalises_address_and_hash() -> None:
    record = MemberRecord(ADDRESS, "0x" + DIGEST.upper(), samples=10, score=3)

    assert record.address == "0x2B5AD5c4795c026514f8317c7a215E218DcCD6cF"
    assert record.update_hash == DIGEST


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"address": "0x1234"}, ValueError),
        ({"samples": -1}, ValueError),
        ({"score": 2**64}, ValueError),
        ({"score": 1.0}, TypeError),
        ({"update_hash": "xyz"}, ValueError),
    ],
)
def test_member_record_rejects_bad_fields(kwargs: dict[str, object], error: type) -> None:
    fields: dict[str, object] = {
        "address": ADDRESS,
        "update_hash": DIGEST,
        "samples": 1,
        "score": 1,
        **kwargs,
    }
    with pytest.raises(error):
        MemberRecord(**fields)  # type: ignore[arg-type]


def test_records_hash_packs_68_bytes_per_record_and_sorting_is_by_address() -> None:
    low = MemberRecord("0x" + "00" * 19 + "01", DIGEST, samples=2, score=3)
    high = MemberRecord(ADDRESS, "11" * 32, samples=2**64 - 1, score=0)
    by_hand = (
        b"\x00" * 19 + b"\x01" + bytes.fromhex(DIGEST)
        + (2).to_bytes(8, "big") + (3).to_bytes(8, "big")
        + bytes.fromhex(ADDRESS[2:]) + b"\x11" * 32 + b"\xff" * 8 + b"\x00" * 8
    )  # fmt: skip

    assert len(by_hand) == 2 * 68
    assert sort_records([high, low]) == [low, high]
    assert records_hash([low, high]) == keccak(by_hand).hex()
