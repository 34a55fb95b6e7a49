"""The aggregator failover order, computed in Python as the Ledger computes it on chain."""

from __future__ import annotations

import pytest
from eth_abi.packed import encode_packed
from eth_utils import keccak, to_checksum_address

from incentive.candidates import (
    aggregator_candidates,
    candidate_key,
    candidate_rank,
    cluster_addresses,
)
from incentive.records import MemberInfo

MEMBERS = [to_checksum_address(f"0x{i:040x}") for i in (0x11, 0x22, 0x33, 0x44, 0x55)]


def solidity_key(round: int, cluster: int, member: str) -> bytes:
    """keccak256(abi.encodePacked(uint64, uint16, address)) through eth-abi's packer."""
    return bytes(keccak(encode_packed(["uint64", "uint16", "address"], [round, cluster, member])))


@pytest.mark.parametrize(("round", "cluster"), [(1, 0), (7, 3), (2**64 - 1, 65535)])
def test_key_is_the_packed_keccak_solidity_computes(round: int, cluster: int) -> None:
    for member in MEMBERS:
        assert candidate_key(round, cluster, member) == solidity_key(round, cluster, member)


def test_candidates_are_sorted_by_key_and_rank_is_the_position() -> None:
    for round in range(1, 6):
        expected = sorted(MEMBERS, key=lambda m: solidity_key(round, 2, m))

        order = aggregator_candidates(round, 2, reversed([m.lower() for m in MEMBERS]))

        assert order == expected
        assert [candidate_rank(round, 2, MEMBERS, m) for m in expected] == list(range(5))


def test_the_first_candidate_moves_between_rounds() -> None:
    firsts = {aggregator_candidates(r, 0, MEMBERS)[0] for r in range(1, 21)}
    assert len(firsts) > 1


def test_rank_of_a_stranger_and_bad_arguments_are_errors() -> None:
    with pytest.raises(ValueError, match="not a member of cluster 1"):
        candidate_rank(1, 1, MEMBERS[:2], MEMBERS[3])
    with pytest.raises(ValueError, match="round"):
        candidate_key(-1, 0, MEMBERS[0])
    with pytest.raises(ValueError, match="cluster"):
        candidate_key(1, 65536, MEMBERS[0])
    with pytest.raises(ValueError, match="not an Ethereum address"):
        candidate_key(1, 0, "0x1234")


def test_cluster_addresses_keep_admission_order() -> None:
    infos = [MemberInfo(a, f"H{i}", "", [], cluster=i % 2) for i, a in enumerate(MEMBERS)]

    assert cluster_addresses(infos, 1) == [MEMBERS[1], MEMBERS[3]]
    assert cluster_addresses(infos, 2) == []
