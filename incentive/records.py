"""Plain data exchanged with the ledger: member records, member, cluster and round views,
payouts, and the packing behind a cluster record's ``recordsHash``."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from eth_utils import is_address, keccak, to_checksum_address

from incentive.hashes import hash_bytes, hash_hex

UINT64_MAX = 2**64 - 1


@dataclass(frozen=True)
class MemberRecord:
    """One member's part in a round, as the aggregator records it on chain.

    ``update_hash`` is the SHA-256 of the member's update blob. It is stored as 64 lowercase
    hex digits without ``0x`` (``hashlib.sha256(blob).hexdigest()``); ``0x``-prefixed or
    upper-case hex and raw 32 bytes are accepted and normalised.
    """

    address: str
    update_hash: str
    samples: int
    score: int

    def __post_init__(self) -> None:
        if not is_address(self.address):
            raise ValueError(f"{self.address!r} is not an Ethereum address")
        object.__setattr__(self, "address", to_checksum_address(self.address))
        object.__setattr__(self, "update_hash", hash_hex(self.update_hash))
        for name in ("samples", "score"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int, not {type(value).__name__}")
            if not 0 <= value <= UINT64_MAX:
                raise ValueError(f"{name}={value} is outside 0..2**64-1")


@dataclass(frozen=True)
class MemberInfo:
    """A member as the Registry lists it (``multiaddrs`` empty until it registers)."""

    address: str
    name: str
    peer_id: str
    multiaddrs: list[str]
    active: bool = True
    admitted_at: int = 0
    cluster: int = 0


@dataclass(frozen=True)
class ClusterInfo:
    """The on-chain commitment of one cluster's aggregate in a round (bare lowercase hex).

    ``previous_hash`` is the global hash the record was checked against: the genesis hash for
    round 1, the final hash of the round before otherwise.
    """

    round: int
    cluster: int
    aggregate_hash: str
    previous_hash: str
    records_hash: str
    aggregator: str
    total_samples: int
    block_number: int


@dataclass(frozen=True)
class RoundStatus:
    """How far a round got: clusters recorded, and once final its hash and attestations.

    ``attestations`` counts the attestations of the final hash (0 while not final).
    """

    round: int
    clusters_recorded: int
    finalized: bool
    final_hash: str | None
    attestations: int


@dataclass(frozen=True)
class DistributionResult:
    """One reward epoch: what was credited to whom, and the dust left in the pool.

    ``amount + dust`` is the pot the epoch split; ``contributions`` is each paid member's
    contribution accrued since the previous epoch.
    """

    epoch: int
    amount: int
    dust: int
    credits: dict[str, int] = field(default_factory=dict)
    contributions: dict[str, int] = field(default_factory=dict)
    tx_hash: str = ""


def pack_record(address: str, update_hash: bytes | str, samples: int, score: int) -> bytes:
    """One record as the Ledger packs it: address 20 | update hash 32 | samples 8 | score 8,
    integers big-endian."""
    return (
        bytes.fromhex(to_checksum_address(address)[2:])
        + hash_bytes(update_hash)
        + samples.to_bytes(8, "big")
        + score.to_bytes(8, "big")
    )


def records_hash(records: Iterable[MemberRecord]) -> str:
    """keccak256 of the packed records in the order given (the chain sorts by address)."""
    packed = b"".join(pack_record(r.address, r.update_hash, r.samples, r.score) for r in records)
    return bytes(keccak(packed)).hex()


def sort_records(records: Iterable[MemberRecord]) -> list[MemberRecord]:
    """Records in the order the Ledger requires: member address ascending."""
    return sorted(records, key=lambda r: int(r.address, 16))
