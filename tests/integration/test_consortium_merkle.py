"""Merkle proofs of member records: Python's builders against the contract's views.

``incentive.merkle`` and ``Consortium.verifyRecord`` must agree on every leaf of trees of one to
nine leaves, and the roots ``finalizeRound`` computes must be the ones Python computes.
"""

from __future__ import annotations

import pytest
from consortium_kit import Consortium, keccak, samples_of, start_consortium, update_hash

from incentive.merkle import merkle_proof, merkle_root, record_leaf, verify_proof

pytestmark = pytest.mark.integration


def _leaves(cons: Consortium, width: int) -> list[bytes]:
    accounts = cons.accounts()
    return [
        record_leaf(4, 1, accounts[i % 8], update_hash(4, i), samples_of(i), i * 3, i % 2)
        for i in range(width)
    ]


def _verify_on_chain(
    cons: Consortium, root: bytes, leaf: bytes, position: int, width: int, proof: list[bytes]
) -> bool:
    return bool(cons.view("verifyRecord", root, leaf, position, width, proof))


@pytest.mark.parametrize("width", range(1, 10))
def test_proofs_verify_in_python_and_on_chain(cons: Consortium, width: int) -> None:
    leaves = _leaves(cons, width)
    root = merkle_root(leaves)
    tampered = keccak("tampered leaf")

    for position, leaf in enumerate(leaves):
        proof = merkle_proof(leaves, position)
        for verify in (verify_proof, lambda *a: _verify_on_chain(cons, *a)):
            assert verify(root, leaf, position, width, proof)
            assert not verify(root, tampered, position, width, proof)
            assert not verify(root, leaf, position, width, [*proof, keccak("extra")])
            if proof:
                assert not verify(root, leaf, position, width, proof[:-1])
            for other in range(width):
                if other != position:
                    assert not verify(root, leaf, other, width, proof)


def test_record_leaf_matches_the_contract(cons: Consortium) -> None:
    account = cons.admitted[3].account
    args = (4, 1, account, update_hash(4, 3), 2**64 - 1, 2**32 - 1, 1)

    assert bytes(cons.view("recordLeaf", *args)) == record_leaf(*args)


def test_a_position_beyond_the_width_is_refused_on_chain(cons: Consortium) -> None:
    leaves = _leaves(cons, 3)
    root = merkle_root(leaves)
    proof = merkle_proof(leaves, 2)  # [keccak(leaf0 | leaf1)]
    assert not verify_proof(root, leaves[2], 6, 3, proof)

    assert not _verify_on_chain(cons, root, leaves[2], 6, 3, proof)


def test_cluster_roots_on_chain_match_python_for_one_to_nine_records(
    cons: Consortium,
) -> None:
    big = start_consortium(cons.chain, clusters=(0,) * 9, auditors=0, admins=1, threshold=1)
    accounts = big.accounts()

    for width in range(1, 10):
        plan = big.build_round({i: 10 + i for i in range(width)}, rejected={width - 1})
        outcome = big.finalize(plan)

        number = plan.number
        leaves = [
            record_leaf(
                number,
                0,
                accounts[i],
                update_hash(number, i),
                samples_of(i),
                10 + i,
                int(i == width - 1),
            )
            for i in range(width)
        ]
        (committed,) = outcome.named("ClusterCommitted")
        assert committed.args["recordsRoot"] == "0x" + merkle_root(leaves).hex()
