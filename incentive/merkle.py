"""Merkle trees over a cluster's member records, as ``contracts/Consortium.sol`` builds them.

A record's leaf is ``keccak256(round u64 | cluster u16 | account (20 bytes) | update hash (32) |
samples u64 | score u32 | flags u8)``, packed big-endian. The tree hashes neighbours in order,
``keccak256(left | right)``, level by level; a node without a neighbour (the last of an odd
level) is carried up unchanged. So one leaf is its own root, and a proof lists only the
siblings that exist. Pure functions, no chain access.
"""

from __future__ import annotations

from collections.abc import Sequence

from eth_utils import keccak as _keccak
from eth_utils import to_canonical_address

from incentive.errors import InvalidRoundCommit


def keccak(data: bytes) -> bytes:
    """Keccak-256 of ``data``, as the EVM's KECCAK256."""
    return bytes(_keccak(data))


def record_leaf(
    round_number: int,
    cluster: int,
    account: str,
    update_hash: bytes,
    samples: int,
    score: int,
    flags: int,
) -> bytes:
    """The leaf of one member record (see the module docstring)."""
    if len(update_hash) != 32:
        raise InvalidRoundCommit(f"an update hash has 32 bytes, got {len(update_hash)}")
    return keccak(
        round_number.to_bytes(8, "big")
        + cluster.to_bytes(2, "big")
        + to_canonical_address(account)
        + update_hash
        + samples.to_bytes(8, "big")
        + score.to_bytes(4, "big")
        + flags.to_bytes(1, "big")
    )


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """The root over ``leaves`` in order."""
    if not leaves:
        raise InvalidRoundCommit("a Merkle tree needs at least one leaf")
    level = list(leaves)
    while len(level) > 1:
        level = [
            keccak(level[i] + level[i + 1]) if i + 1 < len(level) else level[i]
            for i in range(0, len(level), 2)
        ]
    return level[0]


def merkle_proof(leaves: Sequence[bytes], position: int) -> list[bytes]:
    """The siblings from leaf ``position`` up to the root (levels without one are skipped)."""
    if not 0 <= position < len(leaves):
        raise InvalidRoundCommit(f"no leaf at position {position} of {len(leaves)}")
    proof = []
    level = list(leaves)
    while len(level) > 1:
        sibling = position ^ 1
        if sibling < len(level):
            proof.append(level[sibling])
        level = [
            keccak(level[i] + level[i + 1]) if i + 1 < len(level) else level[i]
            for i in range(0, len(level), 2)
        ]
        position //= 2
    return proof


def verify_proof(
    root: bytes, leaf: bytes, position: int, width: int, proof: Sequence[bytes]
) -> bool:
    """Whether ``leaf`` is at ``position`` of ``width`` leaves under ``root``."""
    if not 0 <= position < width:
        return False
    node, used = leaf, 0
    while width > 1:
        if position % 2 == 1 or position + 1 < width:
            if used == len(proof):
                return False
            sibling = proof[used]
            used += 1
            node = keccak(sibling + node) if position % 2 == 1 else keccak(node + sibling)
        position //= 2
        width = (width + 1) // 2
    return used == len(proof) and node == root
