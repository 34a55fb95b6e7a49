"""Signed announcements: the only thing medswarm puts on GossipSub.

An announcement says "blob H of S bytes, made from N training samples, is my update (or my
cluster aggregate) for round R". Model weights never travel in gossip; peers fetch the blob
over the blob protocol and check it against ``blob_hash``. An aggregate lists its inputs with
the score the aggregator gave each (and the updates it rejected), so on a federation whose
rounds are kept by the Consortium contract it is the cluster's signed commitment. An
attestation says "I computed global model H for round R" and carries the member's EIP-712
signature over the round (:mod:`incentive.round_commit`), which the contract checks. An
evaluation lists the cluster's updates with the share of the round's contribution the sender
measured for each on its own data (``federation.contribution = "shapley"``). A validation lists
every update of the round the sender fetched with the loss the model it makes has on the
sender's own training rows (``federation.validate_updates``; :mod:`node.validation`).
Under ``federation.secure_aggregation`` five more kinds carry the messages of secure
aggregation within a cluster, each (but the roster, which lists its members as inputs) a blob
of :mod:`node.secagg_messages` announced by its hash (:mod:`node.secure_round`).

Encoding is canonical JSON (sorted keys, no spaces, ASCII), so the same announcement always
has the same bytes. The signature is an Ethereum personal-message signature (EIP-191) by the
sender's account over the encoding without the ``signature`` field: it binds the
announcement to the member recorded in the on-chain registry.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from typing import Any

from eth_account import Account
from eth_account.messages import encode_defunct

from gossip.errors import BadSignature, MalformedMessage
from medswarm import untrusted_json

PROTOCOL_VERSION = 2
MAX_ANNOUNCEMENT_BYTES = 16 * 1024

_HEX64 = re.compile(r"[0-9a-f]{64}")
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_ROUND_SIGNATURE = re.compile(r"[0-9a-f]{130}")
UINT64_MAX = 2**64 - 1


class AnnouncementKind(StrEnum):
    """What the announced blob is."""

    UPDATE = "update"  # one member's local update (weights delta)
    AGGREGATE = "aggregate"  # a cluster aggregator's weighted mean of member updates
    ATTEST = "attest"  # a member's signature over the round's global model (no blob to fetch)
    EVALUATION = "evaluation"  # a member's measure of each update in its cluster (no blob)
    VALIDATION = "validation"  # a member's loss under each update of the round (no blob)
    # secure aggregation within a cluster (node/secure_round.py): each blob is one message of
    # node/secagg_messages.py; an UPDATE's blob is then the member's masked input
    SECAGG_KEYS = "secagg-keys"  # a member's public keys for the round (samples: its own)
    SECAGG_SHARES = "secagg-shares"  # a member's sealed shares for the others
    SECAGG_ROSTER = "secagg-roster"  # the aggregator's list of whom to mask with (no blob)
    SECAGG_REQUEST = "secagg-request"  # the aggregator's unmasking request
    SECAGG_ANSWER = "secagg-answer"  # a member's shares answering the request


@dataclass(frozen=True)
class AggregateInput:
    """One member update the aggregator considered: its score, or that it was rejected
    (then it is not in the average, and its score is 0)."""

    sender: str
    blob_hash: str
    samples: int
    score: int = 0
    rejected: bool = False


@dataclass(frozen=True)
class Announcement:
    """A signed statement that a blob exists and what it is for."""

    kind: AnnouncementKind
    federation: str
    round: int
    cluster: int
    blob_hash: str
    size: int
    codec: str
    samples: int
    sender: str
    peer_id: str
    inputs: tuple[AggregateInput, ...] = ()
    round_signature: str = ""  # attestations: 65 bytes r|s|v in hex, else empty
    version: int = PROTOCOL_VERSION
    signature: str = field(default="", compare=False)

    def signing_bytes(self) -> bytes:
        """The canonical encoding of every field except the signature."""
        return _canonical(self._body())

    def encode(self) -> bytes:
        """The canonical encoding including the signature (what goes on the wire)."""
        body = self._body()
        body["signature"] = self.signature
        return _canonical(body)

    def signed(self, private_key: bytes | str) -> Announcement:
        """A copy signed by the account that owns ``private_key``."""
        message = encode_defunct(primitive=self.signing_bytes())
        signed = Account.sign_message(message, private_key=private_key)
        return replace(self, signature=signed.signature.hex().removeprefix("0x"))

    def recover_signer(self) -> str:
        """The checksum address that signed this announcement.

        Raises :class:`BadSignature` when the signature is missing or unusable.
        """
        if not self.signature:
            raise BadSignature("announcement is not signed")
        try:
            message = encode_defunct(primitive=self.signing_bytes())
            return str(Account.recover_message(message, signature=bytes.fromhex(self.signature)))
        except Exception as exc:  # eth_account raises several unrelated types
            raise BadSignature(f"announcement signature cannot be verified: {exc}") from exc

    def verify_signature(self) -> None:
        """Raise :class:`BadSignature` unless ``sender`` signed this announcement."""
        signer = self.recover_signer()
        if signer.lower() != self.sender.lower():
            raise BadSignature(
                f"announcement claims sender {self.sender} but was signed by {signer}"
            )

    @classmethod
    def decode(cls, data: bytes, max_bytes: int = MAX_ANNOUNCEMENT_BYTES) -> Announcement:
        """Parse and check the wire encoding; raise :class:`MalformedMessage` if invalid."""
        if len(data) > max_bytes:
            raise MalformedMessage(
                f"announcement is {len(data)} bytes, over the {max_bytes}-byte limit"
            )
        try:
            raw = untrusted_json.loads(data.decode("ascii"))
        except ValueError as exc:  # not ASCII, not JSON, too deep, a number too long
            raise MalformedMessage(f"announcement is not canonical JSON: {exc}") from exc
        if not isinstance(raw, dict):
            raise MalformedMessage("announcement must be a JSON object")
        announcement = _from_dict(raw)
        if announcement.encode() != data:
            raise MalformedMessage("announcement is not in canonical encoding")
        return announcement

    def _body(self) -> dict[str, Any]:
        body = asdict(self)
        body.pop("signature")
        body["kind"] = self.kind.value
        body["inputs"] = [asdict(item) for item in self.inputs]
        return body


def _canonical(value: dict[str, Any]) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


_FIELDS: dict[str, type | tuple[type, ...]] = {
    "kind": str,
    "federation": str,
    "round": int,
    "cluster": int,
    "blob_hash": str,
    "size": int,
    "codec": str,
    "samples": int,
    "sender": str,
    "peer_id": str,
    "inputs": list,
    "round_signature": str,
    "version": int,
    "signature": str,
}


def _from_dict(raw: dict[str, Any]) -> Announcement:
    missing = sorted(set(_FIELDS) - set(raw))
    unknown = sorted(set(raw) - set(_FIELDS))
    if missing or unknown:
        raise MalformedMessage(f"announcement fields wrong: missing {missing}, unknown {unknown}")
    for name, expected in _FIELDS.items():
        value = raw[name]
        if not isinstance(value, expected) or isinstance(value, bool):
            raise MalformedMessage(f"announcement field {name!r} has the wrong type")
    if raw["version"] != PROTOCOL_VERSION:
        raise MalformedMessage(
            f"announcement version {raw['version']} is not supported (this node speaks "
            f"version {PROTOCOL_VERSION}); upgrade the older node"
        )
    try:
        kind = AnnouncementKind(raw["kind"])
    except ValueError as exc:
        raise MalformedMessage(f"unknown announcement kind {raw['kind']!r}") from exc
    _check_hash(raw["blob_hash"], "blob_hash")
    _check_address(raw["sender"], "sender")
    for name in ("round", "cluster", "size", "samples"):
        if raw[name] < 0:
            raise MalformedMessage(f"announcement field {name!r} must not be negative")
    inputs = tuple(_input_from_dict(item) for item in raw["inputs"])
    if raw["round_signature"] and not _ROUND_SIGNATURE.fullmatch(raw["round_signature"]):
        raise MalformedMessage("round_signature must be 65 bytes (r|s|v) in lowercase hex")
    return Announcement(
        kind=kind,
        federation=raw["federation"],
        round=raw["round"],
        cluster=raw["cluster"],
        blob_hash=raw["blob_hash"],
        size=raw["size"],
        codec=raw["codec"],
        samples=raw["samples"],
        sender=raw["sender"],
        peer_id=raw["peer_id"],
        inputs=inputs,
        round_signature=raw["round_signature"],
        version=raw["version"],
        signature=raw["signature"],
    )


_INPUT_FIELDS = {"sender", "blob_hash", "samples", "score", "rejected"}


def _input_from_dict(item: Any) -> AggregateInput:
    if not isinstance(item, dict) or set(item) != _INPUT_FIELDS:
        raise MalformedMessage(
            "aggregate input must have exactly " + ", ".join(sorted(_INPUT_FIELDS))
        )
    sender, blob_hash, samples = item["sender"], item["blob_hash"], item["samples"]
    score, rejected = item["score"], item["rejected"]
    if not isinstance(sender, str) or not isinstance(blob_hash, str):
        raise MalformedMessage("aggregate input sender and blob_hash must be strings")
    if not isinstance(samples, int) or isinstance(samples, bool) or samples <= 0:
        raise MalformedMessage("aggregate input samples must be a positive integer")
    if not isinstance(score, int) or isinstance(score, bool) or not 0 <= score <= UINT64_MAX:
        raise MalformedMessage("aggregate input score must be an integer in 0..2**64-1")
    if not isinstance(rejected, bool) or (rejected and score):
        raise MalformedMessage(
            "aggregate input rejected must be a boolean (a rejected input scores 0)"
        )
    _check_address(sender, "inputs.sender")
    _check_hash(blob_hash, "inputs.blob_hash")
    return AggregateInput(sender, blob_hash, samples, score, rejected)


def _check_hash(value: str, name: str) -> None:
    if not _HEX64.fullmatch(value):
        raise MalformedMessage(f"{name} must be 64 lowercase hex digits (a SHA-256)")


def _check_address(value: str, name: str) -> None:
    if not _ADDRESS.fullmatch(value):
        raise MalformedMessage(f"{name} must be a 0x-prefixed 20-byte Ethereum address")
