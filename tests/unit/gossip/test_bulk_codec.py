import hashlib
import hmac
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from gossip.bulk_codec import (
    ANSWER_BYTES,
    HEADER_BYTES,
    HELLO_BYTES,
    MAX_FRAME_BYTES,
    REQUEST_BYTES,
    WHOLE,
    BlobRequest,
    BulkStatus,
    ByteRange,
    Ephemeral,
    Frame,
    FrameCipher,
    FrameReader,
    LinkAnswer,
    LinkRequest,
    Sealer,
    SessionKeys,
    Transcript,
    derive_session_keys,
    hello_is_valid,
    open_answer,
    open_request,
    plan_frames,
    seal_answer,
    seal_hello,
    seal_request,
)
from gossip.errors import FrameRejected, MalformedMessage

DIGEST = hashlib.sha256(b"model").digest()
FETCHER = "12D3KooWfetcher"
PROVIDER = "12D3KooWprovider"


def transcript(**changes: object) -> Transcript:
    base = Transcript(
        fetcher_peer=FETCHER,
        provider_peer=PROVIDER,
        fetcher_public_key=b"\x01" * 32,
        fetcher_nonce=b"\x02" * 32,
        provider_public_key=b"\x03" * 32,
        provider_nonce=b"\x04" * 32,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def rfc5869_hkdf_sha256(secret: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    prk = hmac.new(salt, secret, hashlib.sha256).digest()
    output, block = b"", b""
    for counter in range(1, -(-length // 32) + 1):
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        output += block
    return output[:length]


def test_link_request_and_answers_round_trip() -> None:
    request = LinkRequest(b"k" * 32, b"n" * 32)
    assert LinkRequest.decode(request.encode()) == request
    for answer in (LinkAnswer(True, b"p" * 32, b"q" * 32, 40_000), LinkAnswer(False)):
        encoded = answer.encode()
        assert len(encoded) == 1 + LinkAnswer.body_bytes(encoded[0])
        assert LinkAnswer.decode(encoded[0], encoded[1:]) == answer


def test_malformed_handshake_messages_are_rejected() -> None:
    with pytest.raises(MalformedMessage):
        LinkRequest.decode(b"short")
    with pytest.raises(MalformedMessage, match="unknown"):
        LinkAnswer.body_bytes(9)


def test_keys_are_hkdf_over_the_shared_secret_and_transcript() -> None:
    secret = bytes(range(32))
    expected = rfc5869_hkdf_sha256(
        secret,
        salt=b"\x02" * 32 + b"\x04" * 32,
        info=(
            b"medswarm bulk channel v2"
            + b"\x00\x0f12D3KooWfetcher\x00\x1012D3KooWprovider"
            + b"\x01" * 32
            + b"\x02" * 32
            + b"\x03" * 32
            + b"\x04" * 32
        ),
        length=80,
    )
    keys = derive_session_keys(secret, transcript())
    assert keys == SessionKeys(expected[:16], expected[16:48], expected[48:])


def test_both_sides_derive_the_same_keys_bound_to_both_peer_ids() -> None:
    fetcher, provider = Ephemeral(), Ephemeral()
    agreed = transcript(
        fetcher_public_key=fetcher.public_key,
        fetcher_nonce=fetcher.nonce,
        provider_public_key=provider.public_key,
        provider_nonce=provider.nonce,
    )
    fetcher_keys = derive_session_keys(fetcher.shared_secret(provider.public_key), agreed)
    provider_keys = derive_session_keys(provider.shared_secret(fetcher.public_key), agreed)
    assert fetcher_keys == provider_keys
    assert fetcher_keys.fetcher_to_provider != fetcher_keys.provider_to_fetcher
    secret = fetcher.shared_secret(provider.public_key)
    for other in (
        replace(agreed, fetcher_peer="12D3KooWsomeoneelse"),
        replace(agreed, provider_peer="12D3KooWsomeoneelse"),
        replace(agreed, fetcher_nonce=bytes(32)),
        replace(agreed, provider_nonce=bytes(32)),
    ):
        assert derive_session_keys(secret, other).provider_to_fetcher != (
            fetcher_keys.provider_to_fetcher
        )


def test_hello_proves_the_session() -> None:
    keys = derive_session_keys(b"s" * 32, transcript())
    hello = seal_hello(keys)
    assert len(hello) == HELLO_BYTES
    assert hello_is_valid(keys, hello)
    tampered = hello[:-1] + bytes([hello[-1] ^ 1])
    assert not hello_is_valid(keys, tampered)
    other_session = derive_session_keys(b"s" * 32, transcript(fetcher_peer="12D3KooWintruder"))
    assert not hello_is_valid(keys, seal_hello(other_session))


def test_requests_and_answers_take_one_nonce_each_in_order() -> None:
    fetcher_side, provider_side = Sealer(b"f" * 32, next_index=1), Sealer(b"f" * 32, next_index=1)
    whole, ranged = BlobRequest(DIGEST, 2**26), BlobRequest(bytes(32), 5, ByteRange(7, 3))
    first = seal_request(fetcher_side, whole)
    second = seal_request(fetcher_side, ranged)
    assert len(first) == REQUEST_BYTES
    # The second request, sealed by hand with nonce 2: the nonces count 1, 2, ...
    fields = bytes(32) + b"".join(n.to_bytes(8, "big") for n in (5, 7, 3))
    expected = ChaCha20Poly1305(b"f" * 32).encrypt(
        bytes(4) + (2).to_bytes(8, "big"), fields, b"request"
    )
    assert second == expected
    assert open_request(provider_side, first) == whole
    assert whole.span == ByteRange(0, WHOLE)
    with pytest.raises(FrameRejected, match="request failed authentication"):
        open_request(provider_side, first)  # replayed: its nonce is used up
    assert open_request(provider_side, second) == ranged


def test_the_range_served_stops_at_the_end_of_the_blob() -> None:
    assert ByteRange(10, 5).served(100) == ByteRange(10, 5)
    assert ByteRange(90, 50).served(100) == ByteRange(90, 10)
    assert ByteRange(100, 50).served(100) == ByteRange(100, 0)
    assert ByteRange(0, WHOLE).served(100) == ByteRange(0, 100)
    with pytest.raises(MalformedMessage, match="64 bits"):
        ByteRange(-1, 5)


def test_an_answer_is_bound_to_the_digest_asked_for() -> None:
    sealed = seal_answer(Sealer(b"p" * 32), DIGEST, BulkStatus.FOUND, 1234)
    assert len(sealed) == ANSWER_BYTES
    assert open_answer(Sealer(b"p" * 32), DIGEST, sealed) == (BulkStatus.FOUND, 1234)
    with pytest.raises(FrameRejected, match="answer failed authentication"):
        open_answer(Sealer(b"p" * 32), bytes(32), sealed)


@pytest.mark.parametrize("plaintext", [b"", bytes([BulkStatus.FOUND]) + bytes(9)])
def test_an_authentic_answer_of_the_wrong_size_is_malformed(plaintext: bytes) -> None:
    sealed = Sealer(b"p" * 32).seal(plaintext, b"answer" + DIGEST)  # an empty one: IndexError
    with pytest.raises(MalformedMessage, match=f"answer holds {len(plaintext)} bytes, expected 9"):
        open_answer(Sealer(b"p" * 32), DIGEST, sealed)


def test_an_authentic_request_of_the_wrong_size_is_malformed() -> None:
    sealed = Sealer(b"f" * 32).seal(bytes(20), b"request")  # was read as a 20-byte digest
    with pytest.raises(MalformedMessage, match="request holds 20 bytes, expected 56"):
        open_request(Sealer(b"f" * 32), sealed)


def test_a_blobs_frames_use_the_nonces_after_the_answer() -> None:
    provider, fetcher = Sealer(b"p" * 32), Sealer(b"p" * 32)
    answer = seal_answer(provider, DIGEST, BulkStatus.FOUND, 3000)
    frames = seal_all(b"x" * 3000, 1000, cipher=provider.frame_cipher())
    provider.used(len(frames))
    assert provider.next_index == 4  # the answer, then three frames
    open_answer(fetcher, DIGEST, answer)
    assert open_all(frames, 3000, cipher=fetcher.frame_cipher()) == b"x" * 3000
    with pytest.raises(FrameRejected, match="authentication"):  # the right key, nonces from 0
        open_all(frames, 3000, key=b"p" * 32)


def test_frames_cover_the_blob_and_only_the_last_is_final() -> None:
    assert plan_frames(0, 4) == [Frame(0, 0, 0, True)]
    assert plan_frames(8, 4) == [Frame(0, 0, 4, False), Frame(1, 4, 4, True)]
    assert plan_frames(9, 4)[-1] == Frame(2, 8, 1, True)
    with pytest.raises(ValueError):
        plan_frames(9, MAX_FRAME_BYTES + 1)


def seal_all(
    data: bytes, frame_bytes: int, key: bytes = b"k" * 32, cipher: FrameCipher | None = None
) -> list[tuple[bytes, bytes]]:
    """(header, sealed body) for each frame of ``data``."""
    cipher = cipher or FrameCipher(key)
    sealed = []
    for frame in plan_frames(len(data), frame_bytes):
        out = bytearray(HEADER_BYTES + frame.sealed_size)
        plaintext = memoryview(data)[frame.offset : frame.offset + frame.size]
        cipher.seal_into(frame, plaintext, memoryview(out))
        sealed.append((bytes(out[:HEADER_BYTES]), bytes(out[HEADER_BYTES:])))
    return sealed


def open_all(
    frames: list[tuple[bytes, bytes]],
    length: int,
    key: bytes = b"k" * 32,
    cipher: FrameCipher | None = None,
) -> bytes:
    reader, cipher = FrameReader(length), cipher or FrameCipher(key)
    blob = bytearray(length)
    for header, body in frames:
        frame = reader.next_frame(header)
        cipher.open_into(frame, memoryview(body), memoryview(blob)[frame.offset :][: frame.size])
    if not reader.finished:
        raise FrameRejected("no final frame")
    return bytes(blob)


def test_frames_round_trip() -> None:
    data = bytes(range(256)) * 10
    frames = seal_all(data, 1000)
    assert [len(body) for _, body in frames] == [1016, 1016, 576]
    assert frames[-1][0] == (0x8000_0000 | 560).to_bytes(4, "big")
    assert open_all(frames, len(data)) == data
    assert open_all(seal_all(b"", 1000), 0) == b""


def test_tampered_frame_is_rejected() -> None:
    frames = seal_all(b"x" * 3000, 1000)
    header, body = frames[1]
    frames[1] = (header, body[:10] + bytes([body[10] ^ 0x40]) + body[11:])
    with pytest.raises(FrameRejected, match="frame 1 failed authentication"):
        open_all(frames, 3000)


def test_reordered_frames_and_wrong_key_are_rejected() -> None:
    frames = seal_all(b"a" * 1000 + b"b" * 1000 + b"c" * 1000, 1000)
    with pytest.raises(FrameRejected, match="authentication"):
        open_all([frames[1], frames[0], frames[2]], 3000)
    with pytest.raises(FrameRejected, match="authentication"):
        open_all(frames, 3000, key=b"K" * 32)


def test_truncated_or_extended_stream_is_detected() -> None:
    frames = seal_all(b"x" * 3000, 1000)
    with pytest.raises(FrameRejected, match="no final frame"):
        open_all(frames[:2], 3000)
    with pytest.raises(FrameRejected, match="after the final frame"):
        open_all([*frames, frames[-1]], 3000)


def test_headers_that_cannot_be_right_are_refused_before_the_body() -> None:
    reader = FrameReader(length=10 * MAX_FRAME_BYTES)
    with pytest.raises(FrameRejected, match="exceeds"):
        reader.next_frame((MAX_FRAME_BYTES + 1).to_bytes(4, "big"))
    with pytest.raises(FrameRejected, match="ends at byte"):
        FrameReader(length=100).next_frame((101).to_bytes(4, "big"))
    with pytest.raises(FrameRejected, match="mis-flagged"):
        FrameReader(length=100).next_frame((0x8000_0000 | 50).to_bytes(4, "big"))
    with pytest.raises(FrameRejected, match="mis-flagged"):
        FrameReader(length=100).next_frame((100).to_bytes(4, "big"))
    with pytest.raises(FrameRejected, match="mis-flagged"):
        FrameReader(length=100).next_frame((0).to_bytes(4, "big"))
