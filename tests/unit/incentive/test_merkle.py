"""Merkle roots and proofs of ``incentive.merkle`` against a second, recursive definition.

Hashing level by level and carrying an odd node up unchanged gives the same tree as splitting
the leaves at the largest power of two below their count (RFC 6962's shape, without its leaf
and node prefixes): that split is the reference the properties below compare with.
"""

from __future__ import annotations

import pytest
from eth_utils import keccak as eth_keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from incentive.errors import InvalidRoundCommit
from incentive.merkle import merkle_proof, merkle_root, verify_proof


def h(data: bytes) -> bytes:
    return bytes(eth_keccak(data))


def split(n: int) -> int:
    """The largest power of two below ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def reference_root(leaves: list[bytes]) -> bytes:
    if len(leaves) == 1:
        return leaves[0]
    k = split(len(leaves))
    return h(reference_root(leaves[:k]) + reference_root(leaves[k:]))


def reference_proof(leaves: list[bytes], position: int) -> list[bytes]:
    if len(leaves) == 1:
        return []
    k = split(len(leaves))
    if position < k:
        return [*reference_proof(leaves[:k], position), reference_root(leaves[k:])]
    return [*reference_proof(leaves[k:], position - k), reference_root(leaves[:k])]


LEAF = st.binary(min_size=32, max_size=32)
TREES = st.lists(LEAF, min_size=1, max_size=40, unique=True)


def test_small_trees_by_hand() -> None:
    a, b, c, d, e = (bytes([i]) * 32 for i in range(1, 6))

    assert merkle_root([a]) == a
    assert merkle_root([a, b]) == h(a + b)
    assert merkle_root([a, b, c]) == h(h(a + b) + c)
    assert merkle_root([a, b, c, d, e]) == h(h(h(a + b) + h(c + d)) + e)
    assert merkle_proof([a, b, c], 2) == [h(a + b)]
    assert merkle_proof([a, b, c, d, e], 4) == [h(h(a + b) + h(c + d))]
    assert merkle_proof([a, b, c, d, e], 1) == [a, h(c + d), e]
    assert merkle_proof([a], 0) == []


@settings(max_examples=80, deadline=None)
@given(TREES)
def test_root_and_proofs_match_the_recursive_definition(leaves: list[bytes]) -> None:
    root = merkle_root(leaves)

    assert root == reference_root(leaves)
    for position, leaf in enumerate(leaves):
        proof = merkle_proof(leaves, position)
        assert proof == reference_proof(leaves, position)
        assert len(proof) <= (len(leaves) - 1).bit_length()
        assert verify_proof(root, leaf, position, len(leaves), proof)


@settings(max_examples=80, deadline=None)
@given(TREES, st.data())
def test_proofs_fail_for_anything_else(leaves: list[bytes], data: st.DataObject) -> None:
    width = len(leaves)
    root = merkle_root(leaves)
    position = data.draw(st.integers(0, width - 1), label="position")
    leaf, proof = leaves[position], merkle_proof(leaves, position)
    tampered = bytes([leaf[0] ^ 1]) + leaf[1:]

    assert not verify_proof(root, tampered, position, width, proof)
    assert not verify_proof(root, leaf, position, width, [*proof, leaf])
    if proof:
        assert not verify_proof(root, leaf, position, width, proof[:-1])
        assert not verify_proof(tampered, leaf, position, width, proof)
    for other in range(width):
        if other != position:
            assert not verify_proof(root, leaf, other, width, proof)
    for outside in (-1, width, width + 1, 2 * width + 1):
        assert not verify_proof(root, leaf, outside, width, proof)


@settings(max_examples=50, deadline=None)
@given(TREES, st.data())
def test_changing_or_moving_a_leaf_changes_the_root(
    leaves: list[bytes], data: st.DataObject
) -> None:
    position = data.draw(st.integers(0, len(leaves) - 1), label="position")
    changed = list(leaves)
    changed[position] = h(leaves[position])

    assert merkle_root(changed) != merkle_root(leaves)
    if len(leaves) > 1:
        assert merkle_root(leaves[::-1]) != merkle_root(leaves)
        assert merkle_root(leaves[:-1]) != merkle_root(leaves)


def test_empty_trees_and_missing_positions_are_refused() -> None:
    leaves = [bytes(32), bytes([1]) * 32]

    with pytest.raises(InvalidRoundCommit, match="at least one leaf"):
        merkle_root([])
    for position in (-1, 2):
        with pytest.raises(InvalidRoundCommit, match=f"no leaf at position {position} of 2"):
            merkle_proof(leaves, position)
