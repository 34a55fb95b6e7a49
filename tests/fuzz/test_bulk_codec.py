"""Fuzzing the bulk channel's wire decoders: handshake, records and frame headers.

Property: each decoder either gives back what the matching encoder would have made from it
(decoding is the inverse of encoding) or raises the error :mod:`gossip.bulk_codec`
documents: :class:`MalformedMessage` for a malformed handshake or record,
:class:`FrameRejected` for one that fails authentication or a frame header that cannot be
right, :class:`BulkChannelError` for an unusable key.
"""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from gossip.bulk_codec import (
    ANSWER_BYTES,
    HEADER_BYTES,
    HELLO_BYTES,
    LINK_REQUEST_BYTES,
    MAX_FRAME_BYTES,
    REQUEST_BYTES,
    TAG_BYTES,
    BlobRequest,
    BulkStatus,
    ByteRange,
    Ephemeral,
    FrameReader,
    LinkAnswer,
    LinkRequest,
    Sealer,
    SessionKeys,
    hello_is_valid,
    open_answer,
    open_request,
    plan_frames,
    seal_answer,
    seal_hello,
    seal_request,
)
from gossip.errors import BulkChannelError, FrameRejected, MalformedMessage
from tests.fuzz.budget import FUZZ, one_input

HANDSHAKE = "gossip bulk handshake (LinkRequest, LinkAnswer, keys, hello)"
RECORDS = "gossip bulk records (open_request, open_answer)"
FRAMES = "gossip bulk frame headers (FrameReader.next_frame)"

KEY = bytes(range(32))
DIGEST = hashlib.sha256(b"blob").digest()
KEYS = SessionKeys(session_id=b"\x07" * 16, fetcher_to_provider=KEY, provider_to_fetcher=KEY[::-1])
EPHEMERAL = Ephemeral()

nonce_indexes = st.integers(min_value=0, max_value=2**64 - 1)


def _sized(size: int) -> st.SearchStrategy[bytes]:
    """Bytes of exactly ``size``, or a few more or less."""
    return st.integers(min_value=max(0, size - 3), max_value=size + 3).flatmap(
        lambda n: st.binary(min_size=n, max_size=n)
    ) | st.binary(max_size=2 * size)


def _flip(data: bytes, position: int, bit: int) -> bytes:
    edited = bytearray(data)
    edited[position % len(edited)] ^= 1 << bit
    return bytes(edited)


@FUZZ
@given(_sized(LINK_REQUEST_BYTES))
def test_link_requests(data: bytes) -> None:
    with one_input(HANDSHAKE):
        try:
            request = LinkRequest.decode(data)
        except MalformedMessage:
            return
    assert request.encode() == data


@FUZZ
@given(st.integers(min_value=0, max_value=255), _sized(LinkAnswer.BODY_BYTES))
def test_link_answers(status: int, body: bytes) -> None:
    with one_input(HANDSHAKE):
        try:
            expected = LinkAnswer.body_bytes(status)
        except MalformedMessage:
            assert status not in (0, 1)
            return
        try:
            answer = LinkAnswer.decode(status, body)
        except MalformedMessage:
            assert len(body) != expected
            return
    assert answer.encode() == bytes([status]) + body


@FUZZ
@given(_sized(32))
def test_peer_public_keys(public_key: bytes) -> None:
    with one_input(HANDSHAKE):
        try:
            secret = EPHEMERAL.shared_secret(public_key)
        except BulkChannelError:
            return
    assert len(public_key) == 32 and len(secret) == 32


@FUZZ
@given(
    st.one_of(
        _sized(HELLO_BYTES),
        st.tuples(st.integers(min_value=0), st.integers(min_value=0, max_value=7)).map(
            lambda edit: _flip(seal_hello(KEYS), *edit)
        ),
    )
)
def test_hellos(hello: bytes) -> None:
    with one_input(HANDSHAKE):
        valid = hello_is_valid(KEYS, hello)
    assert valid == (hello == seal_hello(KEYS))


@FUZZ
@given(nonce_indexes, _sized(REQUEST_BYTES))
def test_requests_that_fail_authentication(index: int, sealed: bytes) -> None:
    with one_input(RECORDS):
        try:
            open_request(Sealer(KEY, index), sealed)
        except FrameRejected:
            return
    raise AssertionError("an unsealed request was opened")


@FUZZ
@given(nonce_indexes, _sized(REQUEST_BYTES - TAG_BYTES))
def test_authentic_requests_of_any_length(index: int, plaintext: bytes) -> None:
    """A sealed request of the wrong length (only a peer holding the key can send one)."""
    sealed = Sealer(KEY, index).seal(plaintext, b"request")
    receiver = Sealer(KEY, index)
    with one_input(RECORDS):
        try:
            request = open_request(receiver, sealed)
        except (MalformedMessage, FrameRejected):
            assert len(sealed) != REQUEST_BYTES
            return
    assert isinstance(request, BlobRequest)
    assert seal_request(Sealer(KEY, index), request) == sealed
    assert receiver.next_index == index + 1


@FUZZ
@given(
    nonce_indexes,
    st.binary(min_size=32, max_size=32),
    st.integers(min_value=0, max_value=2**64 - 1),
    st.integers(min_value=0, max_value=2**64 - 1),
    st.integers(min_value=0, max_value=2**64 - 1),
    st.integers(min_value=0, max_value=REQUEST_BYTES - 1),
    st.integers(min_value=0, max_value=7),
)
def test_altered_requests(
    index: int, digest: bytes, max_bytes: int, offset: int, count: int, position: int, bit: int
) -> None:
    request = BlobRequest(digest, max_bytes, ByteRange(offset, count))
    sealed = seal_request(Sealer(KEY, index), request)
    assert open_request(Sealer(KEY, index), sealed) == request
    with one_input(RECORDS):
        try:
            open_request(Sealer(KEY, index), _flip(sealed, position, bit))
        except FrameRejected:
            return
    raise AssertionError("an altered request was opened")


@FUZZ
@given(nonce_indexes, st.binary(max_size=32), _sized(ANSWER_BYTES - TAG_BYTES))
def test_authentic_answers_of_any_content(index: int, digest: bytes, plaintext: bytes) -> None:
    sealed = Sealer(KEY, index).seal(plaintext, b"answer" + digest)
    with one_input(RECORDS):
        try:
            status, length = open_answer(Sealer(KEY, index), digest, sealed)
        except (MalformedMessage, FrameRejected):
            known = len(plaintext) == 9 and plaintext[0] in set(BulkStatus)
            assert not known
            return
    assert seal_answer(Sealer(KEY, index), digest, status, length) == sealed


@FUZZ
@given(nonce_indexes, st.binary(max_size=32), _sized(ANSWER_BYTES))
def test_answers_that_fail_authentication(index: int, digest: bytes, sealed: bytes) -> None:
    with one_input(RECORDS):
        try:
            open_answer(Sealer(KEY, index), digest, sealed)
        except FrameRejected:
            return
    raise AssertionError("an unsealed answer was opened")


def _headers(length: int) -> st.SearchStrategy[list[bytes]]:
    """Frame headers a provider might send for a blob of ``length`` bytes, right or wrong."""
    frames = plan_frames(length, MAX_FRAME_BYTES) if length <= 16 * MAX_FRAME_BYTES else []
    planned = [frame.header for frame in frames] or [b"\x80\x00\x00\x00"]
    structured = st.builds(
        lambda size, final: (size | (1 << 31 if final else 0)).to_bytes(HEADER_BYTES, "big"),
        st.integers(min_value=0, max_value=2**31 - 1)
        | st.sampled_from([0, 1, length % 2**31, MAX_FRAME_BYTES, MAX_FRAME_BYTES + 1]),
        st.booleans(),
    )
    return st.one_of(
        st.just(planned),
        st.lists(st.binary(min_size=HEADER_BYTES, max_size=HEADER_BYTES) | structured, max_size=8),
        st.lists(structured, max_size=3).map(lambda extra: planned + extra),
    )


@FUZZ
@given(
    st.integers(min_value=0, max_value=2**40).flatmap(lambda n: st.tuples(st.just(n), _headers(n)))
)
def test_frame_headers(case: tuple[int, list[bytes]]) -> None:
    length, headers = case
    reader = FrameReader(length)
    with one_input(FRAMES):
        for header in headers:
            before = (reader.received, reader.frames, reader.finished)
            try:
                frame = reader.next_frame(header)
            except FrameRejected:
                assert (reader.received, reader.frames, reader.finished) == before
                continue
            assert not before[2], "a frame was accepted after the final one"
            assert frame.offset == before[0] and frame.index == before[1]
            assert 0 <= frame.size <= MAX_FRAME_BYTES
            assert reader.received == frame.offset + frame.size <= length
            assert frame.header == header
            assert reader.finished == frame.final == (reader.received == length)


@FUZZ
@given(st.integers(), st.integers(), st.integers(min_value=0, max_value=2**70))
def test_byte_ranges(offset: int, count: int, length: int) -> None:
    with one_input(FRAMES):
        try:
            span = ByteRange(offset, count)
        except MalformedMessage:
            assert not (0 <= offset < 2**64 and 0 <= count < 2**64)
            return
        served = span.served(length)
    assert served.offset == offset and 0 <= served.count <= count
    assert served.count == 0 or offset + served.count <= length
