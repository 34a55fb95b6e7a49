"""Wire formats and keys of the bulk channel: handshake, session keys, token, frames. No I/O.

The bulk channel moves a blob over a plain TCP connection beside libp2p, encrypted with keys
agreed over the libp2p connection (whose Noise handshake has already proved both peer ids).
Handshake, one libp2p stream per blob on ``/medswarm/bulk/1.0.0``:

    request:  32 bytes  SHA-256 digest wanted
              32 bytes  fetcher's ephemeral X25519 public key
              32 bytes  fetcher's random nonce
               8 bytes  largest blob the fetcher accepts (big-endian)
    answer:    1 byte   status: 0 found, 1 not found, 2 refused, 3 too large
               8 bytes  blob length                               (found, too large)
              32 bytes  provider's ephemeral X25519 public key    (found)
              32 bytes  provider's random nonce                   (found)
               2 bytes  TCP port of the provider's bulk listener  (found)

``/medswarm/bulk/1.1.0`` asks for a byte range of a blob instead (one segment of a fetch
from several providers, :mod:`gossip.segments`). Its request is the one above followed by

               8 bytes  offset of the first byte wanted (big-endian)
               8 bytes  how many bytes are wanted

and its answer is the one above, where the length is the whole blob's, with one more status:
4, the offset is past the end (followed by the 8-byte blob length). The provider sends bytes
offset .. offset + n - 1, n = min(wanted, length - offset).

Both sides run HKDF-SHA256 over the X25519 shared secret, salted with both nonces, with the
transcript (both peer ids, the digest, both public keys, both nonces, the length; for a range
also its offset and n, under another label) as info. It yields a 16-byte session id and one
ChaCha20-Poly1305 key per direction, so a session's keys are bound to the very bytes it moves.

The fetcher then connects to the port (at the IP address of the libp2p connection) and sends
a 64-byte hello: the session id and the digest sealed with the fetcher-to-provider key. The
provider answers with frames, each sealed with the provider-to-fetcher key:

     4 bytes  header: bit 31 set on the final frame, bits 0-30 the plaintext length n
    n + 16    ChaCha20-Poly1305 ciphertext; nonce = frame index, header = associated data

The frame that completes the announced length (for a range: n) is flagged final and no other
is, so a truncated, reordered, replayed or extended stream fails to authenticate or to add up.
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

BULK_PROTOCOL = "/medswarm/bulk/1.0.0"
BULK_RANGE_PROTOCOL = "/medswarm/bulk/1.1.0"
DIGEST_BYTES = 32
PUBLIC_KEY_BYTES = 32
NONCE_BYTES = 32
KEY_BYTES = 32
SESSION_ID_BYTES = 16
TAG_BYTES = 16
HEADER_BYTES = 4
REQUEST_BYTES = DIGEST_BYTES + PUBLIC_KEY_BYTES + NONCE_BYTES + 8
RANGE_REQUEST_BYTES = REQUEST_BYTES + 16
HELLO_BYTES = SESSION_ID_BYTES + DIGEST_BYTES + TAG_BYTES
MAX_FRAME_BYTES = 4 * 2**20  # the largest frame a receiver accepts; senders use less
_FINAL = 1 << 31
_LABEL = b"medswarm bulk channel v1"
_RANGE_LABEL = b"medswarm bulk channel v1.1 range"


class BulkStatus(IntEnum):
    """The provider's answer to a bulk request."""

    FOUND = 0
    NOT_FOUND = 1
    REFUSED = 2
    TOO_LARGE = 3
    OUTSIDE = 4  # a range request whose offset is past the end of the blob


@dataclass(frozen=True)
class ByteRange:
    """``count`` bytes of a blob from ``offset``."""

    offset: int
    count: int

    def encode(self) -> bytes:
        return self.offset.to_bytes(8, "big") + self.count.to_bytes(8, "big")


def served_range(wanted: ByteRange, length: int) -> ByteRange:
    """The bytes a provider sends for ``wanted`` of a blob of ``length`` bytes."""
    return ByteRange(wanted.offset, max(0, min(wanted.count, length - wanted.offset)))


@dataclass(frozen=True)
class BulkRequest:
    """What a fetcher sends to open a bulk session (``span``: a range request, 1.1.0)."""

    digest: bytes
    public_key: bytes
    nonce: bytes
    max_bytes: int
    span: ByteRange | None = None

    def encode(self) -> bytes:
        encoded = self.digest + self.public_key + self.nonce + self.max_bytes.to_bytes(8, "big")
        return encoded if self.span is None else encoded + self.span.encode()

    @classmethod
    def decode(cls, data: bytes) -> BulkRequest:
        """A request of either protocol version, told apart by its size."""
        if len(data) not in (REQUEST_BYTES, RANGE_REQUEST_BYTES):
            raise MalformedMessage(
                f"bulk request of {len(data)} bytes, expected {REQUEST_BYTES} or "
                f"{RANGE_REQUEST_BYTES}"
            )
        key_end = DIGEST_BYTES + PUBLIC_KEY_BYTES
        span = None
        if len(data) == RANGE_REQUEST_BYTES:
            span = ByteRange(
                offset=int.from_bytes(data[REQUEST_BYTES : REQUEST_BYTES + 8], "big"),
                count=int.from_bytes(data[REQUEST_BYTES + 8 :], "big"),
            )
        return cls(
            digest=data[:DIGEST_BYTES],
            public_key=data[DIGEST_BYTES:key_end],
            nonce=data[key_end : key_end + NONCE_BYTES],
            max_bytes=int.from_bytes(data[key_end + NONCE_BYTES : REQUEST_BYTES], "big"),
            span=span,
        )


@dataclass(frozen=True)
class BulkAnswer:
    """What a provider answers; the key material and port are set only when found."""

    status: BulkStatus
    length: int = 0
    public_key: bytes = b""
    nonce: bytes = b""
    port: int = 0

    def encode(self) -> bytes:
        encoded = bytes([self.status])
        if self.status in _WITH_LENGTH:
            encoded += self.length.to_bytes(8, "big")
        if self.status is BulkStatus.FOUND:
            encoded += self.public_key + self.nonce + self.port.to_bytes(2, "big")
        return encoded

    @staticmethod
    def body_bytes(status_byte: int) -> int:
        """How many bytes follow a status byte (raises on an unknown status)."""
        try:
            status = BulkStatus(status_byte)
        except ValueError as exc:
            raise MalformedMessage(f"unknown bulk answer status {status_byte}") from exc
        if status is BulkStatus.FOUND:
            return 8 + PUBLIC_KEY_BYTES + NONCE_BYTES + 2
        return 8 if status in _WITH_LENGTH else 0

    @classmethod
    def decode(cls, status_byte: int, body: bytes) -> BulkAnswer:
        if len(body) != cls.body_bytes(status_byte):
            raise MalformedMessage(f"bulk answer body of {len(body)} bytes is malformed")
        status = BulkStatus(status_byte)
        if status in (BulkStatus.TOO_LARGE, BulkStatus.OUTSIDE):
            return cls(status, length=int.from_bytes(body, "big"))
        if status is not BulkStatus.FOUND:
            return cls(status)
        key_end = 8 + PUBLIC_KEY_BYTES
        return cls(
            status,
            length=int.from_bytes(body[:8], "big"),
            public_key=body[8:key_end],
            nonce=body[key_end : key_end + NONCE_BYTES],
            port=int.from_bytes(body[key_end + NONCE_BYTES :], "big"),
        )


_WITH_LENGTH = (BulkStatus.FOUND, BulkStatus.TOO_LARGE, BulkStatus.OUTSIDE)


class Ephemeral:
    """One side's fresh X25519 key pair and nonce for one session."""

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
    """Everything a session's keys are bound to."""

    fetcher_peer: str
    provider_peer: str
    digest: bytes
    fetcher_public_key: bytes
    fetcher_nonce: bytes
    provider_public_key: bytes
    provider_nonce: bytes
    length: int
    span: ByteRange | None = None  # the bytes sent, for a range session (count: n)

    def encode(self) -> bytes:
        peers = b"".join(
            len(peer).to_bytes(2, "big") + peer
            for peer in (self.fetcher_peer.encode(), self.provider_peer.encode())
        )
        return (
            (_LABEL if self.span is None else _RANGE_LABEL)
            + peers
            + self.digest
            + self.fetcher_public_key
            + self.fetcher_nonce
            + self.provider_public_key
            + self.provider_nonce
            + self.length.to_bytes(8, "big")
            + (b"" if self.span is None else self.span.encode())
        )


@dataclass(frozen=True)
class SessionKeys:
    """The secrets of one bulk session, the same on both sides."""

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


def seal_hello(keys: SessionKeys, digest: bytes) -> bytes:
    """The fetcher's first bytes on the bulk connection: session id and sealed digest."""
    token = ChaCha20Poly1305(keys.fetcher_to_provider).encrypt(
        frame_nonce(0), digest, keys.session_id
    )
    return keys.session_id + token


def hello_is_valid(keys: SessionKeys, digest: bytes, hello: bytes) -> bool:
    """Whether ``hello`` proves knowledge of ``keys`` for this session and digest."""
    if len(hello) != HELLO_BYTES or not hmac.compare_digest(
        hello[:SESSION_ID_BYTES], keys.session_id
    ):
        return False
    try:
        opened = ChaCha20Poly1305(keys.fetcher_to_provider).decrypt(
            frame_nonce(0), hello[SESSION_ID_BYTES:], keys.session_id
        )
    except InvalidTag:
        return False
    return hmac.compare_digest(opened, digest)


@dataclass(frozen=True)
class Frame:
    """One frame's place in the blob."""

    index: int  # the nonce counter
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
    """Seals and opens frames with one direction's key. Stateless, so safe in worker threads."""

    def __init__(self, key: bytes) -> None:
        self._aead = ChaCha20Poly1305(key)

    def seal_into(self, frame: Frame, plaintext: memoryview, out: memoryview) -> int:
        """Write header and ciphertext of ``frame`` to ``out``; return the bytes written."""
        end = HEADER_BYTES + frame.sealed_size
        out[:HEADER_BYTES] = frame.header
        self._aead.encrypt_into(
            frame_nonce(frame.index), plaintext, frame.header, out[HEADER_BYTES:end]
        )
        return end

    def open_into(self, frame: Frame, sealed: memoryview, out: memoryview) -> None:
        """Decrypt ``sealed`` (ciphertext and tag) into ``out``; raise if it was altered."""
        try:
            self._aead.decrypt_into(frame_nonce(frame.index), sealed, frame.header, out)
        except InvalidTag as exc:
            raise FrameRejected(f"frame {frame.index} failed authentication") from exc


class FrameReader:
    """The receiver's view of a frame stream: checks each header before its body is read."""

    def __init__(self, length: int, max_frame_bytes: int = MAX_FRAME_BYTES) -> None:
        self.length = length
        self.received = 0
        self.finished = False
        self._max_frame_bytes = max_frame_bytes
        self._index = 0

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
        frame = Frame(self._index, self.received, size, final)
        self._index += 1
        self.received = end
        self.finished = final
        return frame
