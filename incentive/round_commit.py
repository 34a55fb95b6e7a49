"""What one round puts on chain: member records, cluster commitments, the quorum's signatures.

``contracts/Consortium.sol`` finalizes a round in a single transaction. Off chain, each cluster's
aggregator gathers its members' :class:`Record`\\ s into a :class:`ClusterCommit`; every hospital
that computed the same global model (and the same privacy budget,
:mod:`incentive.privacy_budget`) signs the round's EIP-712 digest (:func:`round_digest`);
any member submits the commitments with a quorum of signatures. This module builds those bytes
exactly as the contract reads them. Pure functions (eth-account signs locally), no chain access.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from eth_account import Account
from eth_keys.datatypes import Signature
from eth_keys.exceptions import BadSignature
from eth_utils import ValidationError, to_canonical_address

from incentive.errors import InvalidRoundCommit
from incentive.merkle import keccak, merkle_root, record_leaf
from incentive.privacy_budget import NO_GUARANTEE, PrivacyBudget

FLAG_REJECTED = 1
RECORD_BYTES = 47
SIGNATURE_BYTES = 67
ROUND_TYPEHASH = keccak(
    b"Round(uint64 round,bytes32 previousHash,bytes32 globalHash,bytes32 commitments,"
    b"uint64 epsilonE6,uint64 deltaE18)"
)
DOMAIN_TYPEHASH = keccak(
    b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)
_SCORE_MAX = 2**32 - 1
_SAMPLES_MAX = 2**64 - 1


@dataclass(frozen=True)
class Record:
    """One member's part in a round: its update's hash, samples and score (``uint32``), and
    whether the aggregator rejected the update (no contribution, reputation falls)."""

    member: int  # index in the consortium's member list
    update_hash: bytes
    samples: int
    score: int
    rejected: bool = False

    def __post_init__(self) -> None:
        problems = []
        if not 0 <= self.member < 2**16:
            problems.append(f"member index {self.member} is outside 0..65535")
        if len(self.update_hash) != 32:
            problems.append(f"update hash has {len(self.update_hash)} bytes, not 32")
        if not 0 <= self.samples <= _SAMPLES_MAX:
            problems.append(f"samples {self.samples} do not fit uint64")
        if not 0 <= self.score <= _SCORE_MAX:
            problems.append(f"score {self.score} does not fit uint32 (scale it down)")
        if problems:
            raise InvalidRoundCommit("invalid record: " + "; ".join(problems))

    @property
    def flags(self) -> int:
        return FLAG_REJECTED if self.rejected else 0

    def packed(self) -> bytes:
        return (
            self.member.to_bytes(2, "big")
            + self.update_hash
            + self.samples.to_bytes(8, "big")
            + self.score.to_bytes(4, "big")
            + self.flags.to_bytes(1, "big")
        )


@dataclass(frozen=True)
class ClusterCommit:
    """A cluster's aggregate in a round and its members' records (sorted by member index)."""

    cluster: int
    aggregator: int  # member index of the aggregator
    aggregate_hash: bytes
    records: tuple[Record, ...]

    def __post_init__(self) -> None:
        indices = [r.member for r in self.records]
        if not indices:
            raise InvalidRoundCommit(f"cluster {self.cluster} has no records")
        if indices != sorted(set(indices)):
            raise InvalidRoundCommit(
                f"cluster {self.cluster}'s records must be sorted by member index without "
                f"repeats, got {indices}"
            )
        if len(self.aggregate_hash) != 32:
            raise InvalidRoundCommit("an aggregate hash has 32 bytes")

    def root(self, round_number: int, accounts: Mapping[int, str]) -> bytes:
        """The Merkle root the contract computes over this cluster's records."""
        return merkle_root(self.leaves(round_number, accounts))

    def leaves(self, round_number: int, accounts: Mapping[int, str]) -> list[bytes]:
        return [
            record_leaf(
                round_number,
                self.cluster,
                accounts[r.member],
                r.update_hash,
                r.samples,
                r.score,
                r.flags,
            )
            for r in self.records
        ]

    @property
    def total_samples(self) -> int:
        """The samples behind the aggregate: those of the records not rejected."""
        return sum(r.samples for r in self.records if not r.rejected)

    def as_call_argument(self) -> tuple[int, int, bytes, int]:
        """The ``ClusterCommit`` struct of ``Consortium.finalizeRound``."""
        return (self.cluster, self.aggregator, self.aggregate_hash, len(self.records))


def commitments_hash(
    round_number: int, clusters: Sequence[ClusterCommit], accounts: Mapping[int, str]
) -> bytes:
    """keccak256 over (cluster u16 | aggregator address | aggregate hash | records root |
    total samples u64) per cluster, in order: what the round's signatures cover."""
    numbers = [c.cluster for c in clusters]
    if not numbers or numbers != sorted(set(numbers)):
        raise InvalidRoundCommit(f"clusters must be non-empty and sorted, got {numbers}")
    return keccak(
        b"".join(
            c.cluster.to_bytes(2, "big")
            + to_canonical_address(accounts[c.aggregator])
            + c.aggregate_hash
            + c.root(round_number, accounts)
            + c.total_samples.to_bytes(8, "big")
            for c in clusters
        )
    )


def domain_separator(chain_id: int, contract: str) -> bytes:
    """The EIP-712 domain of a Consortium contract (name "medswarm", version "1")."""
    return keccak(
        DOMAIN_TYPEHASH
        + keccak(b"medswarm")
        + keccak(b"1")
        + chain_id.to_bytes(32, "big")
        + bytes(12)
        + to_canonical_address(contract)
    )


def round_digest(
    domain: bytes,
    round_number: int,
    previous_hash: bytes,
    global_hash: bytes,
    commitments: bytes,
    privacy: PrivacyBudget = NO_GUARANTEE,
) -> bytes:
    """The EIP-712 digest of ``Round(round, previousHash, globalHash, commitments, epsilonE6,
    deltaE18)``: signers agree on the round's privacy budget too."""
    struct_hash = keccak(
        ROUND_TYPEHASH
        + round_number.to_bytes(32, "big")
        + previous_hash
        + global_hash
        + commitments
        + privacy.epsilon_e6.to_bytes(32, "big")
        + privacy.delta_e18.to_bytes(32, "big")
    )
    return keccak(b"\x19\x01" + domain + struct_hash)


@dataclass(frozen=True)
class RoundSignature:
    """A hospital's signature over a round digest (low-s, as eth-account makes them)."""

    signer: int  # member index
    signature: bytes  # r (32) | s (32) | v (1)

    def packed(self) -> bytes:
        return self.signer.to_bytes(2, "big") + self.signature


def sign_round(private_key: str | bytes, signer: int, digest: bytes) -> RoundSignature:
    """Sign ``digest`` as member ``signer``."""
    signed = Account.unsafe_sign_hash(digest, private_key)
    return RoundSignature(signer, bytes(signed.signature))


def recover_round_signer(digest: bytes, signature: bytes) -> str | None:
    """The account that made ``signature`` (r | s | v, v 27 or 28) over ``digest``; None if
    the bytes are no valid signature."""
    if len(signature) != 65 or signature[64] not in (27, 28):
        return None
    try:
        vrs = signature[:64] + bytes([signature[64] - 27])
        public = Signature(vrs).recover_public_key_from_msg_hash(digest)
    except (BadSignature, ValidationError, ValueError):
        return None
    return str(public.to_checksum_address())


def pack_records(clusters: Sequence[ClusterCommit]) -> bytes:
    return b"".join(r.packed() for c in clusters for r in c.records)


def pack_signatures(signatures: Sequence[RoundSignature]) -> bytes:
    """The signatures sorted by signer, as ``finalizeRound`` wants them (one per signer)."""
    ordered = sorted(signatures, key=lambda s: s.signer)
    signers = [s.signer for s in ordered]
    if len(set(signers)) != len(signers):
        raise InvalidRoundCommit(f"one signature per signer, got signers {signers}")
    return b"".join(s.packed() for s in ordered)
