"""Round commitments: record and cluster validation, byte layouts, the EIP-712 digest, signing.

Layouts are packed here by hand; the digest is checked against eth-account's own EIP-712
encoder.
"""

from __future__ import annotations

from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import keccak as eth_keccak
from eth_utils import to_canonical_address

from incentive.errors import InvalidRoundCommit
from incentive.merkle import record_leaf
from incentive.privacy_budget import PrivacyBudget
from incentive.round_commit import (
    ClusterCommit,
    Record,
    RoundSignature,
    commitments_hash,
    domain_separator,
    pack_records,
    pack_signatures,
    round_digest,
    sign_round,
)

HASH = bytes(range(32))
KEY = "0x" + "11" * 32
OTHER_KEY = "0x" + "22" * 32
CONTRACT = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
ACCOUNTS = {0: "0x" + "aa" * 20, 1: "0x" + "bb" * 20, 2: "0x" + "cc" * 20, 3: "0x" + "dd" * 20}
HALF_ORDER = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0


def h(data: bytes) -> bytes:
    return bytes(eth_keccak(data))


def record(member: int = 0, **changes: Any) -> Record:
    fields: dict[str, Any] = {"update_hash": HASH, "samples": 10, "score": 5} | changes
    return Record(member, **fields)


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"member": -1}, "member index -1 is outside 0..65535"),
        ({"member": 2**16}, "member index 65536 is outside 0..65535"),
        ({"update_hash": HASH[:31]}, "update hash has 31 bytes, not 32"),
        ({"update_hash": HASH + b"\x00"}, "update hash has 33 bytes, not 32"),
        ({"samples": -1}, "samples -1 do not fit uint64"),
        ({"samples": 2**64}, f"samples {2**64} do not fit uint64"),
        ({"score": -1}, "score -1 does not fit uint32"),
        ({"score": 2**32}, f"score {2**32} does not fit uint32"),
    ],
)
def test_invalid_records_are_refused(changes: dict[str, Any], fragment: str) -> None:
    fields: dict[str, Any] = {"member": 0, "update_hash": HASH, "samples": 10, "score": 5}
    fields |= changes

    with pytest.raises(InvalidRoundCommit, match=fragment):
        Record(**fields)


def test_every_problem_of_a_record_is_named_at_once() -> None:
    with pytest.raises(InvalidRoundCommit) as caught:
        Record(70_000, b"", -1, 2**32)

    message = str(caught.value)
    for fragment in ("member index 70000", "update hash has 0 bytes", "samples -1", "score"):
        assert fragment in message
    assert isinstance(caught.value, ValueError)


def test_records_at_the_limits_pack_into_47_bytes() -> None:
    top = Record(2**16 - 1, HASH, 2**64 - 1, 2**32 - 1, rejected=True)
    plain = Record(3, HASH, 258, 7)

    assert top.packed() == b"\xff\xff" + HASH + b"\xff" * 8 + b"\xff" * 4 + b"\x01"
    assert plain.packed() == b"\x00\x03" + HASH + bytes(6) + b"\x01\x02" + bytes(3) + b"\x07\x00"
    assert (top.flags, plain.flags) == (1, 0)


@pytest.mark.parametrize(
    ("records", "aggregate", "fragment"),
    [
        ((), HASH, "cluster 1 has no records"),
        ((record(2), record(1)), HASH, r"sorted by member index without repeats, got \[2, 1\]"),
        ((record(1), record(1)), HASH, r"without repeats, got \[1, 1\]"),
        ((record(1),), HASH[:16], "an aggregate hash has 32 bytes"),
    ],
)
def test_invalid_cluster_commits_are_refused(
    records: tuple[Record, ...], aggregate: bytes, fragment: str
) -> None:
    with pytest.raises(InvalidRoundCommit, match=fragment):
        ClusterCommit(1, 1, aggregate, records)


def commit(cluster: int, members: tuple[int, ...]) -> ClusterCommit:
    return ClusterCommit(
        cluster, members[0], h(b"aggregate %d" % cluster), tuple(map(record, members))
    )


@pytest.mark.parametrize("order", [(), (1, 0), (0, 0)])
def test_commitments_need_sorted_distinct_clusters(order: tuple[int, ...]) -> None:
    clusters = [commit(c, (c,)) for c in order]

    with pytest.raises(InvalidRoundCommit, match="clusters must be non-empty and sorted"):
        commitments_hash(1, clusters, ACCOUNTS)


def test_commitments_hash_by_hand() -> None:
    clusters = [commit(0, (0, 2)), commit(1, (3,))]

    def leaf(cluster: int, member: int) -> bytes:
        return h(
            (9).to_bytes(8, "big")
            + cluster.to_bytes(2, "big")
            + to_canonical_address(ACCOUNTS[member])
            + HASH
            + (10).to_bytes(8, "big")
            + (5).to_bytes(4, "big")
            + b"\x00"
        )

    root0, root1 = h(leaf(0, 0) + leaf(0, 2)), leaf(1, 3)
    expected = h(
        b"\x00\x00"
        + to_canonical_address(ACCOUNTS[0])
        + h(b"aggregate 0")
        + root0
        + (20).to_bytes(8, "big")
        + b"\x00\x01"
        + to_canonical_address(ACCOUNTS[3])
        + h(b"aggregate 1")
        + root1
        + (10).to_bytes(8, "big")
    )

    assert record_leaf(9, 0, ACCOUNTS[0], HASH, 10, 5, 0) == leaf(0, 0)
    assert commitments_hash(9, clusters, ACCOUNTS) == expected
    assert pack_records(clusters) == b"".join(record(m).packed() for m in (0, 2, 3))
    assert clusters[0].as_call_argument() == (0, 0, h(b"aggregate 0"), 2)


def test_an_update_hash_of_the_wrong_length_has_no_leaf() -> None:
    with pytest.raises(InvalidRoundCommit, match="an update hash has 32 bytes, got 20"):
        record_leaf(1, 0, ACCOUNTS[0], HASH[:20], 1, 1, 0)


def test_round_digest_is_the_eip712_digest() -> None:
    previous, final, commitments = h(b"previous"), h(b"global"), h(b"commitments")
    typed = encode_typed_data(
        full_message={
            "types": {
                "EIP712Domain": [
                    {"name": "name", "type": "string"},
                    {"name": "version", "type": "string"},
                    {"name": "chainId", "type": "uint256"},
                    {"name": "verifyingContract", "type": "address"},
                ],
                "Round": [
                    {"name": "round", "type": "uint64"},
                    {"name": "previousHash", "type": "bytes32"},
                    {"name": "globalHash", "type": "bytes32"},
                    {"name": "commitments", "type": "bytes32"},
                    {"name": "epsilonE6", "type": "uint64"},
                    {"name": "deltaE18", "type": "uint64"},
                ],
            },
            "primaryType": "Round",
            "domain": {
                "name": "medswarm",
                "version": "1",
                "chainId": 1337,
                "verifyingContract": CONTRACT,
            },
            "message": {
                "round": 7,
                "previousHash": previous,
                "globalHash": final,
                "commitments": commitments,
                "epsilonE6": 8_006_124,
                "deltaE18": 10**13,
            },
        }
    )
    domain = domain_separator(1337, CONTRACT)

    assert domain == typed.header
    digest = round_digest(domain, 7, previous, final, commitments, PrivacyBudget(8_006_124, 10**13))
    assert digest == h(b"\x19" + typed.version + typed.header + typed.body)


def test_round_signatures_recover_the_signer_and_are_low_s() -> None:
    digest = h(b"some round")

    for signer, key in ((4, KEY), (9, OTHER_KEY)):
        signature = sign_round(key, signer, digest)
        assert signature.signer == signer
        assert len(signature.signature) == 65
        assert int.from_bytes(signature.signature[32:64], "big") <= HALF_ORDER
        assert signature.signature[64] in (27, 28)
        recovered = Account._recover_hash(digest, signature=signature.signature)
        assert recovered == Account.from_key(key).address


def test_signatures_pack_sorted_by_signer_once_each() -> None:
    a, b = RoundSignature(5, b"\x05" * 65), RoundSignature(2, b"\x02" * 65)

    assert pack_signatures([a, b]) == b"\x00\x02" + b"\x02" * 65 + b"\x00\x05" + b"\x05" * 65
    assert pack_signatures([]) == b""
    with pytest.raises(InvalidRoundCommit, match=r"one signature per signer, got signers \[2, 2\]"):
        pack_signatures([b, b])
