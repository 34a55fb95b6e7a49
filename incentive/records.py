"""Plain data exchanged with the ledger: member records, member and round views, payouts."""

from __future__ import annotations

from dataclasses import dataclass, field

from eth_utils import is_address, to_checksum_address

from incentive.hashes import hash_hex

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


@dataclass(frozen=True)
class RoundInfo:
    """The on-chain commitment of a recorded round (hashes as bare lowercase hex)."""

    round: int
    global_hash: str
    previous_hash: str
    records_hash: str
    aggregator: str
    block_number: int
    attestations: int
    finalized: bool


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
