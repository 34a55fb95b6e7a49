"""Who aggregates a cluster in a round: the same order the Ledger's aggregatorCandidates gives.

Each member of the cluster gets the key keccak256(round uint64 | cluster uint16 | address 20),
packed big-endian (Solidity's ``abi.encodePacked``); candidates are sorted by key, ascending.
Index 0 aggregates; if it stays silent past the nodes' deadline index 1 takes over, and so on.
A fresh order every round spreads the aggregation work over the cluster's members.
"""

from __future__ import annotations

from collections.abc import Iterable

from eth_utils import is_address, keccak, to_checksum_address

from incentive.records import MemberInfo

UINT64_MAX = 2**64 - 1
UINT16_MAX = 2**16 - 1


def candidate_key(round: int, cluster: int, member: str) -> bytes:
    """keccak256(abi.encodePacked(uint64 round, uint16 cluster, address member))."""
    if not 0 <= round <= UINT64_MAX:
        raise ValueError(f"round {round} is outside 0..2**64-1")
    if not 0 <= cluster <= UINT16_MAX:
        raise ValueError(f"cluster {cluster} is outside 0..65535")
    if not is_address(member):
        raise ValueError(f"{member!r} is not an Ethereum address")
    address = bytes.fromhex(to_checksum_address(member)[2:])
    return bytes(keccak(round.to_bytes(8, "big") + cluster.to_bytes(2, "big") + address))


def aggregator_candidates(round: int, cluster: int, members: Iterable[str]) -> list[str]:
    """The cluster's members (checksummed) in failover order for ``round``."""
    return sorted(
        (to_checksum_address(m) for m in members),
        key=lambda m: candidate_key(round, cluster, m),
    )


def candidate_rank(round: int, cluster: int, members: Iterable[str], member: str) -> int:
    """Position of ``member`` in the failover order; ValueError if it is not listed."""
    order = aggregator_candidates(round, cluster, members)
    try:
        return order.index(to_checksum_address(member))
    except ValueError:
        raise ValueError(f"{member} is not a member of cluster {cluster}") from None


def cluster_addresses(members: Iterable[MemberInfo], cluster: int) -> list[str]:
    """Addresses of the members in ``cluster``, in the order given (admission order)."""
    return [m.address for m in members if m.cluster == cluster]
