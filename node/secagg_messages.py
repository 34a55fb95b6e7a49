"""What the members of a cluster agree on before secure aggregation, and the messages they send.

:class:`SecAggRound` is the setup every party holds: federation, round, cluster, the members
in order (a member's *index* is its place in that tuple), the update length, the threshold
and the fixed-point scale. Its SHA-256 :attr:`~SecAggRound.digest` binds every key
derivation and every message to that one round.

Every message has one canonical encoding (integers big-endian, the masked vector
little-endian 32-bit words) and a strict decoder: wrong length, version, kind, round, a
member index out of range, lists not strictly increasing, or bytes left over raise
:class:`~node.errors.MalformedSecAggMessage`. Each starts with a 34-byte header: version
(1 byte, 1), kind (1 byte, :class:`Kind`), the round's digest (32 bytes). Bodies:

    KeyAdvertisement   sender 2, encryption public key 32, mask public key 32
    ShareBundle        sender 2, count 2, count x (recipient 2, sealed shares 148)
    MaskedInput        sender 2, count 2, count x peer 2, length 8, length x word 4
    UnmaskingRequest   survivors 2, survivors x index 2, dropped 2, dropped x index 2
    UnmaskingAnswer    sender 2, count 2, count x (owner 2, seed share 66),
                       count 2, count x (owner 2, key share 66)

These are plain data: signing them and carrying them over gossip is the caller's business.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from functools import cached_property
from itertools import pairwise

import numpy as np
from numpy.typing import NDArray

from node.errors import MalformedSecAggMessage, SecAggConfigError
from node.shamir import SHARE_BYTES, share_from_bytes, share_to_bytes

VERSION = 1
DEFAULT_SCALE_BITS = 20
MAX_MEMBERS = 2**16 - 1  # member indices are 2 bytes
MAX_LENGTH = 2**32 - 1
PUBLIC_KEY_BYTES = 32
SEALED_SHARES_BYTES = 2 * SHARE_BYTES + 16  # a key share and a seed share, plus the AEAD tag
HEADER_BYTES = 2 + 32
_LABEL = b"medswarm secagg v1"


def majority(members: int) -> int:
    """The default threshold: more than half of the members, floor(n/2) + 1."""
    return members // 2 + 1


@dataclass(frozen=True)
class SecAggRound:
    """The setup of one cluster's secure-aggregation round, the same at every party.

    ``threshold`` 0 means a majority (it is replaced by that number); any other value must lie
    between a majority and the number of members. ``scale_bits``: updates are encoded as
    round(x * 2^scale_bits) mod 2^32 (:func:`node.secagg.encode_fixed`).
    """

    federation: str
    round: int
    cluster: int
    members: tuple[str, ...]
    length: int
    threshold: int = 0
    scale_bits: int = DEFAULT_SCALE_BITS

    def __post_init__(self) -> None:
        object.__setattr__(self, "members", tuple(self.members))
        n = len(self.members)
        if not 2 <= n <= MAX_MEMBERS:
            raise SecAggConfigError(
                f"secure aggregation needs 2 to {MAX_MEMBERS} members, got {n}: the sum of a "
                "single member's update is that update"
            )
        if len(set(self.members)) != n or not all(
            0 < len(name.encode()) < 256 for name in self.members
        ):
            raise SecAggConfigError("members must be distinct names of 1 to 255 bytes")
        if not 0 < len(self.federation.encode()) < 256:
            raise SecAggConfigError("the federation's name must have 1 to 255 bytes")
        if not (0 <= self.round < 2**64 and 0 <= self.cluster < 2**32):
            raise SecAggConfigError(f"round {self.round} or cluster {self.cluster} out of range")
        if not 1 <= self.length <= MAX_LENGTH:
            raise SecAggConfigError(f"update length must be 1..{MAX_LENGTH}, got {self.length}")
        if not 0 <= self.scale_bits <= 31:
            raise SecAggConfigError(f"scale_bits must be 0..31, got {self.scale_bits}")
        if self.threshold == 0:
            object.__setattr__(self, "threshold", majority(n))
        elif not majority(n) <= self.threshold <= n:
            raise SecAggConfigError(
                f"threshold {self.threshold} must be at least a majority ({majority(n)}) and at "
                f"most the {n} members: below a majority an aggregator that tells members "
                "different dropouts could collect both secrets of one member"
            )

    @property
    def size(self) -> int:
        return len(self.members)

    @cached_property
    def digest(self) -> bytes:
        """SHA-256 of the setup's canonical bytes: the context of every derivation and message."""
        parts = [
            _LABEL,
            b" round",
            _text(self.federation),
            self.round.to_bytes(8, "big"),
            self.cluster.to_bytes(4, "big"),
            self.size.to_bytes(2, "big"),
            *(_text(name) for name in self.members),
            self.length.to_bytes(8, "big"),
            self.threshold.to_bytes(2, "big"),
            self.scale_bits.to_bytes(1, "big"),
        ]
        return hashlib.sha256(b"".join(parts)).digest()


class Kind(IntEnum):
    """The second byte of every message."""

    KEY_ADVERTISEMENT = 1
    SHARE_BUNDLE = 2
    MASKED_INPUT = 3
    UNMASKING_REQUEST = 4
    UNMASKING_ANSWER = 5


@dataclass(frozen=True)
class KeyAdvertisement:
    """A member's two X25519 public keys for the round: one to seal shares, one for masks."""

    sender: int
    encryption_key: bytes
    mask_key: bytes

    def encode(self, setup: SecAggRound) -> bytes:
        return (
            _header(setup, Kind.KEY_ADVERTISEMENT)
            + _index(self.sender)
            + (self.encryption_key + self.mask_key)
        )

    @classmethod
    def decode(cls, data: bytes, setup: SecAggRound) -> KeyAdvertisement:
        reader = _Reader(data, setup, Kind.KEY_ADVERTISEMENT)
        sender = reader.member()
        keys = reader.take(PUBLIC_KEY_BYTES), reader.take(PUBLIC_KEY_BYTES)
        reader.end()
        return cls(sender, *keys)


@dataclass(frozen=True)
class ShareBundle:
    """A member's shares for each other member, each sealed for its recipient:
    ``(recipient, ciphertext)`` pairs in increasing recipient order."""

    sender: int
    sealed: tuple[tuple[int, bytes], ...]

    def encode(self, setup: SecAggRound) -> bytes:
        parts = [_header(setup, Kind.SHARE_BUNDLE), _index(self.sender), _index(len(self.sealed))]
        parts += [_index(recipient) + ciphertext for recipient, ciphertext in self.sealed]
        return b"".join(parts)

    @classmethod
    def decode(cls, data: bytes, setup: SecAggRound) -> ShareBundle:
        reader = _Reader(data, setup, Kind.SHARE_BUNDLE)
        sender = reader.member()
        sealed = tuple(
            (reader.member(), reader.take(SEALED_SHARES_BYTES)) for _ in range(reader.count())
        )
        reader.end()
        recipients = [recipient for recipient, _ in sealed]
        _check_increasing(recipients, "recipients")
        if sender in recipients:
            raise MalformedSecAggMessage(f"member {sender} sealed shares for itself")
        return cls(sender, sealed)


@dataclass(frozen=True, eq=False)
class MaskedInput:
    """A member's encoded update with every mask added (mod 2^32), and the members it masked
    with (itself included): those whose sealed shares it received."""

    sender: int
    peers: tuple[int, ...]
    vector: NDArray[np.uint32] = field(repr=False)

    def encode(self, setup: SecAggRound) -> bytes:
        parts = [_header(setup, Kind.MASKED_INPUT), _index(self.sender), _index(len(self.peers))]
        parts += [_index(peer) for peer in self.peers]
        parts.append(len(self.vector).to_bytes(8, "big"))
        parts.append(self.vector.astype("<u4", copy=False).tobytes())
        return b"".join(parts)

    @classmethod
    def decode(cls, data: bytes, setup: SecAggRound) -> MaskedInput:
        reader = _Reader(data, setup, Kind.MASKED_INPUT)
        sender = reader.member()
        peers = tuple(reader.member() for _ in range(reader.count()))
        length = reader.uint(8)
        if length != setup.length:
            raise MalformedSecAggMessage(
                f"masked input of {length} values; the round's updates have {setup.length}"
            )
        vector = np.frombuffer(reader.take(4 * length), dtype="<u4")
        reader.end()
        _check_increasing(peers, "peers")
        if sender not in peers:
            raise MalformedSecAggMessage(f"member {sender}'s masked input omits itself as a peer")
        return cls(sender, peers, vector)


@dataclass(frozen=True)
class UnmaskingRequest:
    """The aggregator's request: the members whose masked inputs it holds (their seed shares
    are asked for) and those who masked but whose inputs did not arrive (their key shares)."""

    survivors: tuple[int, ...]
    dropped: tuple[int, ...]

    def encode(self, setup: SecAggRound) -> bytes:
        parts = [_header(setup, Kind.UNMASKING_REQUEST)]
        for members in (self.survivors, self.dropped):
            parts += [_index(len(members)), *(_index(member) for member in members)]
        return b"".join(parts)

    @classmethod
    def decode(cls, data: bytes, setup: SecAggRound) -> UnmaskingRequest:
        reader = _Reader(data, setup, Kind.UNMASKING_REQUEST)
        survivors = tuple(reader.member() for _ in range(reader.count()))
        dropped = tuple(reader.member() for _ in range(reader.count()))
        reader.end()
        _check_increasing(survivors, "survivors")
        _check_increasing(dropped, "dropped members")
        return cls(survivors, dropped)


@dataclass(frozen=True)
class UnmaskingAnswer:
    """A member's shares for the request: ``(owner, share)`` pairs of the survivors' self-mask
    seeds and of the dropped members' mask keys, each in increasing owner order. The share's
    point is the sender's index + 1."""

    sender: int
    seed_shares: tuple[tuple[int, int], ...]
    key_shares: tuple[tuple[int, int], ...]

    def encode(self, setup: SecAggRound) -> bytes:
        parts = [_header(setup, Kind.UNMASKING_ANSWER), _index(self.sender)]
        for shares in (self.seed_shares, self.key_shares):
            parts.append(_index(len(shares)))
            parts += [_index(owner) + share_to_bytes(y) for owner, y in shares]
        return b"".join(parts)

    @classmethod
    def decode(cls, data: bytes, setup: SecAggRound) -> UnmaskingAnswer:
        reader = _Reader(data, setup, Kind.UNMASKING_ANSWER)
        sender = reader.member()
        lists = []
        for _ in range(2):
            shares = tuple(
                (reader.member(), share_from_bytes(reader.take(SHARE_BYTES)))
                for _ in range(reader.count())
            )
            _check_increasing([owner for owner, _ in shares], "share owners")
            lists.append(shares)
        reader.end()
        return cls(sender, lists[0], lists[1])


class _Reader:
    """Reads a message front to back; every shortfall is a MalformedSecAggMessage."""

    def __init__(self, data: bytes, setup: SecAggRound, kind: Kind) -> None:
        self._data = memoryview(data)
        self._at = 0
        self._setup = setup
        self._kind = kind
        version, found = self.uint(1), self.uint(1)
        if version != VERSION:
            raise MalformedSecAggMessage(f"secure-aggregation message version {version}")
        if found != kind:
            raise MalformedSecAggMessage(f"expected a {kind.name} message, got kind {found}")
        if self.take(32) != setup.digest:
            raise MalformedSecAggMessage(
                f"{kind.name} belongs to another round, cluster or federation than round "
                f"{setup.round} of cluster {setup.cluster}"
            )

    def take(self, count: int) -> bytes:
        if self._at + count > len(self._data):
            raise MalformedSecAggMessage(
                f"{self._kind.name} of {len(self._data)} bytes is cut short at byte {self._at}"
            )
        self._at += count
        return bytes(self._data[self._at - count : self._at])

    def uint(self, size: int) -> int:
        return int.from_bytes(self.take(size), "big")

    def member(self) -> int:
        index = self.uint(2)
        if index >= self._setup.size:
            raise MalformedSecAggMessage(
                f"{self._kind.name} names member {index}; the round has {self._setup.size}"
            )
        return index

    def count(self) -> int:
        count = self.uint(2)
        if count > self._setup.size:
            raise MalformedSecAggMessage(
                f"{self._kind.name} lists {count} members; the round has {self._setup.size}"
            )
        return count

    def end(self) -> None:
        if self._at != len(self._data):
            raise MalformedSecAggMessage(
                f"{self._kind.name} has {len(self._data) - self._at} bytes after its end"
            )


def _header(setup: SecAggRound, kind: Kind) -> bytes:
    return bytes([VERSION, kind]) + setup.digest


def _index(value: int) -> bytes:
    return value.to_bytes(2, "big")


def _text(value: str) -> bytes:
    data = value.encode()
    return len(data).to_bytes(1, "big") + data


def _check_increasing(values: Sequence[int], what: str) -> None:
    if any(a >= b for a, b in pairwise(values)):
        raise MalformedSecAggMessage(f"{what} must be listed once each, in increasing order")
