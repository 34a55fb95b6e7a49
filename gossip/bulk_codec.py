"""Wire formats and keys of the bulk channel: handshake, link keys, records, frames. No I/O.

The bulk channel moves blobs over a plain TCP connection beside libp2p, a *link*, encrypted
with keys agreed over the libp2p connection (whose Noise handshake has already proved both
peer ids). A fetcher opens one link to a provider and sends it one request after another.
Handshake, one libp2p stream per link on ``/medswarm/bulk/2.0.0``:

    request:  32 bytes  fetcher's ephemeral X25519 public key
              32 bytes  fetcher's random nonce
    answer:    1 byte   status: 0 accepted, 1 refused
              32 bytes  provider's ephemeral X25519 public key    (accepted)
              32 bytes  provider's random nonce                   (accepted)
               2 bytes  TCP port of the provider's bulk listener  (accepted)

Both sides run HKDF-SHA256 over the X25519 shared secret, salted with both nonces, with the
transcript (both peer ids, both public keys, both nonces) as info. It yields a 16-byte
session id and one ChaCha20-Poly1305 key per direction.

The fetcher then connects to the port (at the IP address of the libp2p connection) and sends
a 32-byte hello: the session id and a tag over it made with the fetcher-to-provider key.
Everything after that is sealed, each direction numbering its nonces 0, 1, 2, ... (the
hello is the fetcher's nonce 0), so a record or frame that is altered, dropped, replayed or
moved fails to authenticate:

    fetcher -> provider, a request:   72 bytes  sealed(digest 32, largest blob accepted 8,
                                                offset 8, count 8), associated data "request"
    provider -> fetcher, the answer:  25 bytes  sealed(status 1, blob length 8), associated
                                                data "answer" + digest; status as BulkStatus
    then, if found, bytes offset .. offset + n - 1 of the blob, n = min(count, length -
    offset), in frames:
         4 bytes  header: bit 31 set on the final frame, bits 0-30 the plaintext length n
        n + 16    ChaCha20-Poly1305 ciphertext; the header is the associated data

A whole blob is the range from 0 with count :data:`WHOLE`; a range is one segment of a fetch
from several providers (:mod:`gossip.segments`). The answer's length is always the whole
blob's, so the fetcher can tell a provider that holds another blob under the digest.

The frame that completes the n bytes is flagged final and no other is, so a truncated,
reordered, replayed or extended transfer fails to authenticate or to add up.
"""

from __future__ import annotations

import hmac
import os
from dataclasses import dataclass
from enum import IntEnum

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from gossip.errors import BulkChannelError, FrameRejected, MalformedMessage

BULK_PROTOCOL = "/medswarm/bulk/2.0.0"
DIGEST_BYTES = 32
PUBLIC_KEY_BYTES = 32
NONCE_BYTES = 32
KEY_BYTES = 32
SESSION_ID_BYTES = 16
TAG_BYTES = 16
HEADER_BYTES = 4
LINK_REQUEST_BYTES = PUBLIC_KEY_BYTES + NONCE_BYTES
HELLO_BYTES = SESSION_ID_BYTES + TAG_BYTES
REQUEST_BYTES = DIGEST_BYTES + 3 * 8 + TAG_BYTES
ANSWER_BYTES = 1 + 8 + TAG_BYTES
WHOLE = 2**64 - 1  # the count that asks for everything from the offset on
MAX_FRAME_BYTES = 4 * 2**20  # the largest frame a receiver accepts; senders use less
_FINAL = 1 << 31
_LABEL = b"medswarm bulk channel v2"


class BulkStatus(IntEnum):
    """The provider's answer to one blob request on a link."""

    FOUND = 0
    NOT_FOUND = 1
    REFUSED = 2
    TOO_LARGE = 3
    OUTSIDE = 4  # the offset asked for is past the end of the blob


@dataclass(frozen=True)
class ByteRange:
    """``count`` bytes of a blob from ``offset``."""

    offset: int
    count: int

    def __post_init__(self) -> None:
        if not (0 <= self.offset < 2**64 and 0 <= self.count < 2**64):
            raise MalformedMessage(f"byte range {self.offset}+{self.count} does not fit 64 bits")

    def served(self, length: int) -> ByteRange:
        """The bytes a provider sends for this range of a blob of ``length`` bytes."""
        return ByteRange(self.offset, max(0, min(self.count, length - self.offset)))


EVERYTHING = ByteRange(0, WHOLE)


@dataclass(frozen=True)
class LinkRequest:
    """What a fetcher sends to open a link."""

    public_key: bytes
    nonce: bytes

    def encode(self) -> bytes:
        return self.public_key + self.nonce

    @classmethod
    def decode(cls, data: bytes) -> LinkRequest:
        if len(data) != LINK_REQUEST_BYTES:
            raise MalformedMessage(
                f"bulk link request of {len(data)} bytes, expected {LINK_REQUEST_BYTES}"
            )
        return cls(public_key=data[:PUBLIC_KEY_BYTES], nonce=data[PUBLIC_KEY_BYTES:])


@dataclass(frozen=True)
class LinkAnswer:
    """What a provider answers; key material and port are set only when it accepts."""

    accepted: bool
    public_key: bytes = b""
    nonce: bytes = b""
    port: int = 0

    BODY_BYTES = PUBLIC_KEY_BYTES + NONCE_BYTES + 2  # after the status byte, when accepted

    def encode(self) -> bytes:
        if not self.accepted:
            return b"\x01"
        return b"\x00" + self.public_key + self.nonce + self.port.to_bytes(2, "big")

    @staticmethod
    def body_bytes(status_byte: int) -> int:
        """How many bytes follow a status byte (raises on an unknown status)."""
        if status_byte not in (0, 1):
            raise MalformedMessage(f"unknown bulk link answer status {status_byte}")
        return LinkAnswer.BODY_BYTES if status_byte == 0 else 0

    @classmethod
    def decode(cls, status_byte: int, body: bytes) -> LinkAnswer:
        if len(body) != cls.body_bytes(status_byte):
            raise MalformedMessage(f"bulk link answer body of {len(body)} bytes is malformed")
        if status_byte == 1:
            return cls(accepted=False)
        key_end = PUBLIC_KEY_BYTES
        return cls(
            accepted=True,
            public_key=body[:key_end],
            nonce=body[key_end : key_end + NONCE_BYTES],
            port=int.from_bytes(body[key_end + NONCE_BYTES :], "big"),
        )


class Ephemeral:
    """One side's fresh X25519 key pair and nonce for one link."""

    def __init__(self) -> None:
        self._private = X25519PrivateKey.generate()
        self.public_key = self._private.public_key().public_bytes_raw()
        self.nonce = os.urandom(NONCE_BYTES)

    def shared_secret(self, peer_public_key: bytes) -> bytes:
        try:
            return self._private.exchange(X25519PublicKey.from_public_bytes(peer_public_key))
        except ValueError as exc:  # malformed or low-order key: no usable secret
            raise BulkChannelError(f"peer sent an unusable X25519 key: {exc}") from exc


@dataclass(frozen=True)
class Transcript:
    """Everything a link's keys are bound to."""

    fetcher_peer: str
    provider_peer: str
    fetcher_public_key: bytes
    fetcher_nonce: bytes
    provider_public_key: bytes
    provider_nonce: bytes

    def encode(self) -> bytes:
        peers = b"".join(
            len(peer).to_bytes(2, "big") + peer
            for peer in (self.fetcher_peer.encode(), self.provider_peer.encode())
        )
        return (
            _LABEL
            + peers
            + self.fetcher_public_key
            + self.fetcher_nonce
            + self.provider_public_key
            + self.provider_nonce
        )


@dataclass(frozen=True)
class SessionKeys:
    """The secrets of one link, the same on both sides."""

    session_id: bytes
    fetcher_to_provider: bytes
    provider_to_fetcher: bytes


def derive_session_keys(shared_secret: bytes, transcript: Transcript) -> SessionKeys:
    """Session id and per-direction keys from the X25519 secret and the transcript."""
    material = HKDF(
        algorithm=hashes.SHA256(),
        length=SESSION_ID_BYTES + 2 * KEY_BYTES,
        salt=transcript.fetcher_nonce + transcript.provider_nonce,
        info=transcript.encode(),
    ).derive(shared_secret)
    return SessionKeys(
        session_id=material[:SESSION_ID_BYTES],
        fetcher_to_provider=material[SESSION_ID_BYTES : SESSION_ID_BYTES + KEY_BYTES],
        provider_to_fetcher=material[SESSION_ID_BYTES + KEY_BYTES :],
    )


def seal_hello(keys: SessionKeys) -> bytes:
    """The fetcher's first bytes on a link: the session id and a tag over it (nonce 0)."""
    tag = ChaCha20Poly1305(keys.fetcher_to_provider).encrypt(frame_nonce(0), b"", keys.session_id)
    return keys.session_id + tag


def hello_is_valid(keys: SessionKeys, hello: bytes) -> bool:
    """Whether ``hello`` proves knowledge of ``keys``."""
    if len(hello) != HELLO_BYTES or not hmac.compare_digest(
        hello[:SESSION_ID_BYTES], keys.session_id
    ):
        return False
    try:
        ChaCha20Poly1305(keys.fetcher_to_provider).decrypt(
            frame_nonce(0), hello[SESSION_ID_BYTES:], keys.session_id
        )
    except InvalidTag:
        return False
    return True


class Sealer:
    """One direction of a link: its key and the index of the next nonce it may use.

    Records take one nonce each; a blob's frames take one each, from :meth:`frame_cipher`.
    Every nonce is used once, in order, so the receiver (which counts the same way) rejects
    anything dropped, replayed or moved.
    """

    def __init__(self, key: bytes, next_index: int = 0) -> None:
        self._aead = ChaCha20Poly1305(key)
        self._key = key
        self.next_index = next_index

    def seal(self, plaintext: bytes, associated: bytes) -> bytes:
        sealed = self._aead.encrypt(frame_nonce(self.next_index), plaintext, associated)
        self.next_index += 1
        return sealed

    def open(self, sealed: bytes, associated: bytes, what: str) -> bytes:
        try:
            plaintext = self._aead.decrypt(frame_nonce(self.next_index), sealed, associated)
        except InvalidTag as exc:
            raise FrameRejected(f"bulk {what} failed authentication") from exc
        self.next_index += 1
        return plaintext

    def frame_cipher(self) -> FrameCipher:
        """A cipher for a blob's frames, from the next nonce on; then call :meth:`used`."""
        return FrameCipher(self._key, self.next_index)

    def used(self, frames: int) -> None:
        """Count the nonces a blob's ``frames`` frames took."""
        self.next_index += frames


@dataclass(frozen=True)
class BlobRequest:
    """One request on a link: which blob, the largest the fetcher accepts, which bytes."""

    digest: bytes
    max_bytes: int
    span: ByteRange = EVERYTHING


def seal_request(sealer: Sealer, request: BlobRequest) -> bytes:
    fields = (request.max_bytes, request.span.offset, request.span.count)
    return sealer.seal(request.digest + b"".join(f.to_bytes(8, "big") for f in fields), b"request")


def open_request(sealer: Sealer, sealed: bytes) -> BlobRequest:
    """The request in a sealed record (raises :class:`FrameRejected` if it was altered)."""
    plaintext = sealer.open(sealed, b"request", "request")
    _check_length(plaintext, REQUEST_BYTES - TAG_BYTES, "request")
    max_bytes, offset, count = (
        int.from_bytes(plaintext[start : start + 8], "big")
        for start in range(DIGEST_BYTES, DIGEST_BYTES + 24, 8)
    )
    return BlobRequest(plaintext[:DIGEST_BYTES], max_bytes, ByteRange(offset, count))


def seal_answer(sealer: Sealer, digest: bytes, status: BulkStatus, length: int) -> bytes:
    return sealer.seal(bytes([status]) + length.to_bytes(8, "big"), b"answer" + digest)


def open_answer(sealer: Sealer, digest: bytes, sealed: bytes) -> tuple[BulkStatus, int]:
    """The provider's status for ``digest`` and the blob's length."""
    plaintext = sealer.open(sealed, b"answer" + digest, "answer")
    _check_length(plaintext, ANSWER_BYTES - TAG_BYTES, "answer")
    try:
        status = BulkStatus(plaintext[0])
    except ValueError as exc:
        raise MalformedMessage(f"unknown bulk answer status {plaintext[0]}") from exc
    return status, int.from_bytes(plaintext[1:], "big")


def _check_length(plaintext: bytes, expected: int, what: str) -> None:
    """An authentic record can still be the wrong size (its sender holds the key)."""
    if len(plaintext) != expected:
        raise MalformedMessage(f"bulk {what} holds {len(plaintext)} bytes, expected {expected}")


@dataclass(frozen=True)
class Frame:
    """One frame's place in the blob."""

    index: int  # its place in the blob's frames (the nonce, counted from the blob's first)
    offset: int  # where its plaintext starts in the blob
    size: int  # plaintext bytes
    final: bool

    @property
    def header(self) -> bytes:
        return (self.size | (_FINAL if self.final else 0)).to_bytes(HEADER_BYTES, "big")

    @property
    def sealed_size(self) -> int:
        """Ciphertext bytes after the header."""
        return self.size + TAG_BYTES


def frame_nonce(index: int) -> bytes:
    return bytes(4) + index.to_bytes(8, "big")


def plan_frames(length: int, frame_bytes: int) -> list[Frame]:
    """The frames a provider sends for a blob of ``length`` bytes."""
    if not 0 < frame_bytes <= MAX_FRAME_BYTES:
        raise ValueError(f"frame size must be in 1..{MAX_FRAME_BYTES}, not {frame_bytes}")
    offsets = range(0, length, frame_bytes) if length else range(1)
    return [
        Frame(index, offset, min(frame_bytes, length - offset), offset + frame_bytes >= length)
        for index, offset in enumerate(offsets)
    ]


class FrameCipher:
    """Seals and opens one blob's frames, frame ``i`` with nonce ``first_index + i``.

    Stateless, so safe in worker threads.
    """

    def __init__(self, key: bytes, first_index: int = 0) -> None:
        self._aead = ChaCha20Poly1305(key)
        self._first_index = first_index

    def seal_into(self, frame: Frame, plaintext: memoryview, out: memoryview) -> int:
        """Write header and ciphertext of ``frame`` to ``out``; return the bytes written."""
        end = HEADER_BYTES + frame.sealed_size
        out[:HEADER_BYTES] = frame.header
        self._aead.encrypt_into(
            frame_nonce(self._first_index + frame.index),
            plaintext,
            frame.header,
            out[HEADER_BYTES:end],
        )
        return end

    def open_into(self, frame: Frame, sealed: memoryview, out: memoryview) -> None:
        """Decrypt ``sealed`` (ciphertext and tag) into ``out``; raise if it was altered."""
        try:
            self._aead.decrypt_into(
                frame_nonce(self._first_index + frame.index), sealed, frame.header, out
            )
        except InvalidTag as exc:
            raise FrameRejected(f"frame {frame.index} failed authentication") from exc


class FrameReader:
    """The receiver's view of a frame stream: checks each header before its body is read."""

    def __init__(self, length: int, max_frame_bytes: int = MAX_FRAME_BYTES) -> None:
        self.length = length
        self.received = 0
        self.finished = False
        self.frames = 0  # frames read so far
        self._max_frame_bytes = max_frame_bytes

    def next_frame(self, header: bytes) -> Frame:
        """The frame a header announces; raises :class:`FrameRejected` if it cannot be right."""
        word = int.from_bytes(header, "big")
        size, final = word & ~_FINAL, bool(word & _FINAL)
        end = self.received + size
        if self.finished:
            raise FrameRejected("data after the final frame")
        if size > self._max_frame_bytes:
            raise FrameRejected(f"frame of {size} bytes exceeds the {self._max_frame_bytes} limit")
        if end > self.length:
            raise FrameRejected(f"frame ends at byte {end} of a {self.length}-byte blob")
        if final != (end == self.length) or (size == 0 and self.length != 0):
            raise FrameRejected(f"frame ending at byte {end} of {self.length} is mis-flagged")
        frame = Frame(self.frames, self.received, size, final)
        self.frames += 1
        self.received = end
        self.finished = final
        return frame
