"""Secure aggregation: masked sums, dropouts, refusals, strict messages, overflow, uniformity."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from numpy.typing import NDArray

from medswarm.errors import MedswarmError
from node import shamir
from node.errors import (
    CannotUnmask,
    InvalidWeights,
    MalformedSecAggMessage,
    SecAggConfigError,
    SecAggOverflow,
    ShareRefused,
)
from node.secagg import (
    KeyAdvertisement,
    MaskedInput,
    SecAggAggregator,
    SecAggMember,
    SecAggRound,
    ShareBundle,
    UnmaskingAnswer,
    UnmaskingRequest,
    encode_fixed,
    expand_mask,
    pair_seed,
    self_mask_seed,
)

LENGTH = 1000
SCALE = 2.0**20
# The 0.999 quantile of chi-square with 255 degrees of freedom (256 buckets): a statistic
# below it means p > 0.001 under the hypothesis that the buckets are uniform.
CHI_SQUARE_CRITICAL_255 = 330.52


def cluster(members: int, length: int = LENGTH, threshold: int = 0) -> SecAggRound:
    names = tuple(f"0x{i:040x}" for i in range(members))
    return SecAggRound("heart", 7, 1, names, length, threshold)


def seeded(seed: int) -> Callable[[int], bytes]:
    return random.Random(seed).randbytes


def realistic_updates(
    members: int, length: int = LENGTH, seed: int = 0
) -> list[NDArray[np.float32]]:
    """Model deltas: small, centred, float32."""
    rng = np.random.default_rng(seed)
    return [rng.normal(0.0, 0.01, length).astype(np.float32) for _ in range(members)]


Message = TypeVar(
    "Message", KeyAdvertisement, ShareBundle, MaskedInput, UnmaskingRequest, UnmaskingAnswer
)


def through_bytes(message: Message, setup: SecAggRound) -> Message:
    """The message as a peer decodes it from its canonical bytes."""
    return type(message).decode(message.encode(setup), setup)


@dataclass
class Masked:
    """A round up to the masked inputs: every member has masked its update."""

    setup: SecAggRound
    members: list[SecAggMember]
    advertisements: list[KeyAdvertisement]
    bundles: list[ShareBundle]
    inputs: list[MaskedInput]


def mask_all(setup: SecAggRound, updates: Sequence[NDArray[np.float32]], seed: int = 1) -> Masked:
    members = [SecAggMember(setup, i, seeded(seed * 1000 + i)) for i in range(setup.size)]
    advertisements = [through_bytes(m.advertise(), setup) for m in members]
    bundles = [through_bytes(m.deal_shares(advertisements), setup) for m in members]
    inputs = [
        through_bytes(m.mask(update, bundles), setup)
        for m, update in zip(members, updates, strict=True)
    ]
    return Masked(setup, members, advertisements, bundles, inputs)


def unmask(
    round_: Masked, arrived: Iterable[int]
) -> tuple[SecAggAggregator, list[UnmaskingAnswer]]:
    """The aggregator's side with the inputs of ``arrived``; every arrived member answers."""
    aggregator = SecAggAggregator(round_.setup, round_.advertisements)
    for member in arrived:
        assert aggregator.receive(round_.inputs[member])
    request = through_bytes(aggregator.request(), round_.setup)
    survivors = request.survivors
    answers = [through_bytes(round_.members[m].answer(request), round_.setup) for m in survivors]
    return aggregator, answers


def fixed_point_sum(updates: Sequence[NDArray[np.float32]]) -> NDArray[np.uint32]:
    """The encoded sum by a second route: Python integers, reduced mod 2^32 at the end."""
    total = [0] * len(updates[0])
    for update in updates:
        for i, value in enumerate(update.tolist()):
            total[i] += round(value * SCALE)
    return np.array([t % 2**32 for t in total], dtype=np.uint32)


def top_byte_chi_square(words: NDArray[np.uint32]) -> float:
    counts = np.bincount((words >> 24).astype(np.int64), minlength=256)
    expected = len(words) / 256
    return float(((counts - expected) ** 2 / expected).sum())


@pytest.mark.parametrize("members", [2, 3, 5, 8, 16])
def test_the_unmasked_sum_is_the_plain_sum(members: int) -> None:
    setup = cluster(members)
    updates = realistic_updates(members)
    round_ = mask_all(setup, updates)

    aggregator, answers = unmask(round_, range(members))

    np.testing.assert_array_equal(aggregator.unmask_encoded(answers), fixed_point_sum(updates))
    plain = np.sum(np.stack(updates).astype(np.float64), axis=0)
    decoded = aggregator.unmask(answers)
    assert decoded.dtype == np.float32
    # Rounding to 2^-21 per member and value, then float32's own rounding of the sum.
    tolerance = members * 2.0**-21 + np.abs(plain) * 2.0**-24
    assert np.all(np.abs(decoded - plain) <= tolerance)


def test_a_hand_computed_sum_comes_back_exactly() -> None:
    setup = cluster(3, length=3)
    updates = [
        np.array(values, dtype=np.float32)
        for values in ([0.5, -1.0, 2.0], [0.25, 3.0, -2.5], [1.0, 1.0, 1.0])
    ]
    aggregator, answers = unmask(mask_all(setup, updates), range(3))

    assert aggregator.unmask(answers).tolist() == [1.75, 3.0, 0.5]


def test_a_member_dropping_after_masking_leaves_the_survivors_sum() -> None:
    setup = cluster(5)
    updates = realistic_updates(5)
    round_ = mask_all(setup, updates)

    aggregator, answers = unmask(round_, arrived=[0, 1, 2, 3])

    assert aggregator.request() == UnmaskingRequest(survivors=(0, 1, 2, 3), dropped=(4,))
    np.testing.assert_array_equal(aggregator.unmask_encoded(answers), fixed_point_sum(updates[:4]))


def test_a_late_masked_input_of_a_dropped_member_stays_hidden() -> None:
    setup = cluster(5, length=200_000)
    updates = realistic_updates(5, length=200_000)
    round_ = mask_all(setup, updates)
    aggregator = SecAggAggregator(setup, round_.advertisements)
    for member in range(4):
        aggregator.receive(round_.inputs[member])
    request = aggregator.request()
    answers = [round_.members[m].answer(request) for m in range(4)]
    aggregator.unmask_encoded(answers)

    assert aggregator.receive(round_.inputs[4]) is False  # too late: left out of the sum
    # A curious aggregator rebuilds member 4's mask key from the shares it was given and
    # strips every pairwise mask from the late input: the self mask still covers the update.
    key_shares = {a.sender + 1: dict(a.key_shares)[4] for a in answers}
    key = X25519PrivateKey.from_private_bytes(shamir.combine(key_shares, setup.threshold))
    stripped = round_.inputs[4].vector.copy()
    for peer in range(4):
        mask = expand_mask(
            pair_seed(setup, key, round_.advertisements[peer].mask_key, 4, peer), setup.length
        )
        np.add(stripped, mask, out=stripped)  # member 4 subtracted it (peer < 4)
    encoded = encode_fixed(updates[4], 20, 5)
    assert np.mean(stripped == encoded) < 0.001
    assert top_byte_chi_square(stripped) < CHI_SQUARE_CRITICAL_255
    # What is left is the update under the self mask alone (the test peeks at the member's
    # secret seed b_u, which no share revealed, to show the stripping was complete).
    self_mask = expand_mask(self_mask_seed(setup, round_.members[4]._seed, 4), setup.length)
    np.testing.assert_array_equal(stripped - self_mask, encoded)
    # Nor will the members now hand over member 4's self-mask seed.
    late_request = UnmaskingRequest(survivors=(0, 1, 2, 3, 4), dropped=())
    for holder in round_.members[:4]:
        with pytest.raises(ShareRefused, match=r"\[4\]"):
            holder.answer(late_request)


def test_both_kinds_of_share_of_one_member_in_one_request_are_refused() -> None:
    round_ = mask_all(cluster(5), realistic_updates(5))
    with pytest.raises(ShareRefused, match="both the self-mask seed and the mask key"):
        round_.members[0].answer(UnmaskingRequest(survivors=(0, 1, 2, 3, 4), dropped=(4,)))
    # The refusal revealed nothing: an honest request is still answered.
    answer = round_.members[0].answer(UnmaskingRequest(survivors=(0, 1, 2, 3), dropped=(4,)))
    assert [owner for owner, _ in answer.key_shares] == [4]


def test_fewer_survivors_than_the_threshold_cannot_be_unmasked() -> None:
    setup = cluster(5)  # threshold 3
    round_ = mask_all(setup, realistic_updates(5))
    aggregator = SecAggAggregator(setup, round_.advertisements)
    for member in (0, 1):
        aggregator.receive(round_.inputs[member])
    with pytest.raises(CannotUnmask, match=r"only 2 of the cluster's 5 masked inputs.*cannot be"):
        aggregator.request()
    # Members refuse such a request too, and too few answers are refused.
    with pytest.raises(CannotUnmask):
        round_.members[0].answer(UnmaskingRequest(survivors=(0, 1), dropped=(2, 3, 4)))
    aggregator.receive(round_.inputs[2])
    request = aggregator.request()
    answers = [round_.members[m].answer(request) for m in (0, 1)]
    with pytest.raises(CannotUnmask, match=r"only 2 .* answered"):
        aggregator.unmask(answers)


def test_threshold_defaults_to_a_majority_and_may_not_go_below() -> None:
    assert [cluster(n).threshold for n in (2, 3, 5, 8, 16)] == [2, 2, 3, 5, 9]
    assert cluster(8, threshold=8).threshold == 8
    for threshold in (4, 9):
        with pytest.raises(SecAggConfigError, match="majority"):
            cluster(8, threshold=threshold)
    with pytest.raises(SecAggConfigError, match="2 to"):
        cluster(1)


def test_values_that_could_overflow_the_cluster_sum_are_refused() -> None:
    # 8 members at scale 2^20: each value within (2^31 - 1) // 8 / 2^20 = 255.99999904...
    assert encode_fixed(np.array([255.9999, -255.9999]), 20, 8).tolist() == [
        round(255.9999 * SCALE),
        2**32 - round(255.9999 * SCALE),
    ]
    with pytest.raises(SecAggOverflow, match=r"clip the update.*lower scale_bits"):
        encode_fixed(np.array([0.0, 256.0]), 20, 8)
    # The same value is fine for 2 members and too large for 16.
    encode_fixed(np.array([200.0]), 20, 2)
    with pytest.raises(SecAggOverflow, match="of 16 members"):
        encode_fixed(np.array([200.0]), 20, 16)
    with pytest.raises(InvalidWeights, match="NaN"):
        encode_fixed(np.array([np.nan]), 20, 2)
    # A member checks its update against the cluster's size before masking it.
    setup = cluster(8, length=2)
    members = [SecAggMember(setup, i) for i in range(5)]
    members[0].deal_shares([m.advertise() for m in members])
    with pytest.raises(SecAggOverflow):
        members[0].mask(np.array([0.0, -300.0], dtype=np.float32), [])


def test_a_single_masked_update_looks_like_uniform_noise() -> None:
    setup = cluster(5, length=200_000)
    updates = realistic_updates(5, length=200_000)
    masked = mask_all(setup, updates).inputs[2].vector

    assert top_byte_chi_square(masked) < CHI_SQUARE_CRITICAL_255


def test_the_uniformity_check_fails_on_an_unmasked_update() -> None:
    encoded = encode_fixed(realistic_updates(1, length=200_000)[0], 20, 5)

    # Small values encode to words whose top byte is 0x00 or 0xff.
    assert top_byte_chi_square(encoded) > 100 * CHI_SQUARE_CRITICAL_255


def test_messages_survive_their_byte_encoding() -> None:
    setup = cluster(3, length=4)
    round_ = mask_all(setup, realistic_updates(3, length=4))
    request = UnmaskingRequest((0, 1, 2), ())
    answer = round_.members[1].answer(request)
    for message in (round_.advertisements[0], request, answer):
        assert type(message).decode(message.encode(setup), setup) == message
    masked = round_.inputs[2]
    again = MaskedInput.decode(masked.encode(setup), setup)
    assert (again.sender, again.peers) == (2, (0, 1, 2))
    np.testing.assert_array_equal(again.vector, masked.vector)
    # Header 34 + sender 2 + count 2 + 3 peers x 2 + length 8 + 4 words x 4.
    assert len(masked.encode(setup)) == 34 + 2 + 2 + 6 + 8 + 16


AnyMessage = KeyAdvertisement | ShareBundle | MaskedInput | UnmaskingRequest | UnmaskingAnswer
MessageType = (
    type[KeyAdvertisement]
    | type[ShareBundle]
    | type[MaskedInput]
    | type[UnmaskingRequest]
    | type[UnmaskingAnswer]
)


def malformed_cases() -> list[tuple[str, MessageType, bytes]]:
    setup = cluster(3, length=4)
    round_ = mask_all(setup, realistic_updates(3, length=4))
    advert = round_.advertisements[0].encode(setup)
    request = UnmaskingRequest((0, 1), (2,)).encode(setup)
    masked = round_.inputs[0].encode(setup)
    other_round = SecAggRound("heart", 8, 1, setup.members, 4)
    return [
        ("cut short", KeyAdvertisement, advert[:-1]),
        ("after its end", KeyAdvertisement, advert + b"\x00"),
        ("version", KeyAdvertisement, b"\x02" + advert[1:]),
        ("expected a KEY_ADVERTISEMENT", KeyAdvertisement, request),
        ("another round", KeyAdvertisement, round_.advertisements[0].encode(other_round)),
        ("names member 3", KeyAdvertisement, advert[:34] + b"\x00\x03" + advert[36:]),
        (
            "increasing order",
            UnmaskingRequest,
            request[:34] + b"\x00\x02\x00\x01\x00\x00" + request[40:],
        ),
        ("lists 9 members", UnmaskingRequest, request[:34] + b"\x00\x09" + request[36:]),
        (
            "masked input of 5 values",
            MaskedInput,
            masked[:44] + (5).to_bytes(8, "big") + masked[52:] + bytes(4),
        ),
        ("omits itself", MaskedInput, masked[:36] + b"\x00\x02\x00\x01\x00\x02" + masked[44:]),
        ("cut short", ShareBundle, b""),
        ("cut short", UnmaskingAnswer, b"\x01"),
    ]


@pytest.mark.parametrize(("reason", "kind", "data"), malformed_cases())
def test_malformed_messages_raise_a_clear_error(
    reason: str, kind: MessageType, data: bytes
) -> None:
    setup = cluster(3, length=4)
    with pytest.raises(MalformedSecAggMessage, match=reason) as raised:
        kind.decode(data, setup)
    assert isinstance(raised.value, MedswarmError) and isinstance(raised.value, ValueError)


def test_every_truncation_of_every_message_is_refused() -> None:
    setup = cluster(3, length=4)
    round_ = mask_all(setup, realistic_updates(3, length=4))
    messages: list[AnyMessage] = [
        round_.advertisements[1],
        round_.bundles[2],
        round_.inputs[1],
        UnmaskingRequest((0, 1), (2,)),
        round_.members[0].answer(UnmaskingRequest((0, 1), (2,))),
    ]
    for message in messages:
        data = message.encode(setup)
        for cut in range(len(data)):
            with pytest.raises(MalformedSecAggMessage):
                type(message).decode(data[:cut], setup)


def test_altered_shares_and_wrong_revealed_shares_are_caught() -> None:
    setup = cluster(4, length=8)
    members = [SecAggMember(setup, i, seeded(50 + i)) for i in range(4)]
    advertisements = [m.advertise() for m in members]
    bundles = [m.deal_shares(advertisements) for m in members]
    recipient, ciphertext = bundles[1].sealed[0]
    flipped = bytes([ciphertext[0] ^ 1]) + ciphertext[1:]
    altered = ShareBundle(1, ((recipient, flipped), *bundles[1].sealed[1:]))
    with pytest.raises(MalformedSecAggMessage, match="do not open"):
        members[recipient].mask(np.zeros(8, dtype=np.float32), [altered])

    updates = realistic_updates(4, length=8)
    inputs = [m.mask(u, bundles) for m, u in zip(members, updates, strict=True)]
    aggregator = SecAggAggregator(setup, advertisements)
    for masked in inputs[:3]:
        aggregator.receive(masked)
    answers = [m.answer(aggregator.request()) for m in members[:3]]
    owner, share = answers[0].key_shares[0]
    wrong = UnmaskingAnswer(0, answers[0].seed_shares, ((owner, share + 1),))
    with pytest.raises(CannotUnmask, match="wrong share"):
        aggregator.unmask([wrong, *answers[1:]])


def test_shamir_needs_threshold_shares_and_any_threshold_will_do() -> None:
    secret = bytes(range(32))
    shares = shamir.split(secret, 3, [1, 2, 3, 4, 5], seeded(7))
    for points in ([1, 2, 3], [2, 4, 5], [1, 3, 5]):
        assert shamir.combine({x: shares[x] for x in points}, 3) == secret
    with pytest.raises(CannotUnmask, match="2 shares of a secret arrived; 3 are needed"):
        shamir.combine({1: shares[1], 2: shares[2]}, 3)
    with pytest.raises(CannotUnmask, match="do not lie on one polynomial"):
        shamir.combine({**shares, 5: (shares[5] + 1) % shamir.PRIME}, 3)


def test_masks_are_bound_to_the_round() -> None:
    first, second = cluster(2), SecAggRound("heart", 8, 1, cluster(2).members, LENGTH)
    own, peer = X25519PrivateKey.generate(), X25519PrivateKey.generate()
    peer_public = peer.public_key().public_bytes_raw()
    assert pair_seed(first, own, peer_public, 0, 1) != pair_seed(second, own, peer_public, 0, 1)
    own_public = own.public_key().public_bytes_raw()
    assert pair_seed(first, own, peer_public, 0, 1) == pair_seed(first, peer, own_public, 1, 0)
