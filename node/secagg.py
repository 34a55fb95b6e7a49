"""Secure aggregation within a cluster: the aggregator learns the sum of the members' updates
and nothing else (Bonawitz et al. 2017, the semi-honest protocol). Pure: numpy and
cryptography; no torch, no network, no clock.

One round of one cluster, n members in the order of :attr:`SecAggRound.members`, threshold t:

1. Keys (:meth:`SecAggMember.advertise`). Member u makes two fresh X25519 key pairs: one to
   seal the shares it deals, one whose agreements seed its pairwise masks.
2. Shares (:meth:`SecAggMember.deal_shares`). u draws a 32-byte self-mask seed b_u and splits
   b_u and its mask private key into t-of-|U1| Shamir shares (:mod:`node.shamir`; U1: the
   members that advertised keys); the two shares for v are sealed with ChaCha20-Poly1305
   under a key both derive from their encryption keys.
3. Masked input (:meth:`SecAggMember.mask`). With U2 the members whose shares u received
   (u included) and x_u its encoded update,
   y_u = x_u + PRG(b_u) + sum over v in U2, v > u of PRG(s_uv) - sum over v < u of PRG(s_uv),
   all mod 2^32, where s_uv is the seed u and v agree from their mask keys. In the sum over
   all of U2 the pairwise masks cancel.
4. Unmasking (:class:`SecAggAggregator`). Holding the masked inputs of the survivors U3, the
   aggregator asks for the shares of b_u of every survivor and of the mask key of every
   member of U2 - U3; at least t members answer. It rebuilds those secrets, removes the
   survivors' self masks and the masks survivors share with dropped members, and is left
   with the sum of the survivors' updates. A member never reveals both kinds of share of one
   member (:class:`~node.errors.ShareRefused`): so a masked input that arrives after its
   sender was counted as dropped still hides behind PRG(b_u).

Encoding (:func:`encode_fixed`): x -> round(x * 2^scale_bits) mod 2^32, default scale 2^20.
The ring is 2^32 because a masked input is then exactly as large as the float32 update it
hides (4 bytes per value: secure aggregation adds only keys and shares to the traffic), and
numpy's uint32 arithmetic wraps mod 2^32, so masks add and cancel in plain vector adds. The
price is range and resolution: the sum must stay within the signed 32-bit range, so each of n
members may send values within +-(2^31 - 1) / n / 2^scale_bits (just under 256 for 8 members
at the default scale, 128 for 16; model deltas are far smaller), and each value is rounded to
a multiple of 2^-20 (an error of at most 2^-21, 4.8e-7). Values outside raise
:class:`~node.errors.SecAggOverflow`.

Derivations: HKDF-SHA256, no salt, info = "medswarm secagg v1/" + purpose + the round's
digest (:attr:`SecAggRound.digest`: federation, round, cluster, members, length, threshold,
scale) + the member indices involved; a seed is 32 bytes. The PRG is the ChaCha20 key stream
under the seed (nonce 0), read as little-endian 32-bit words.

What the API returns is the sum only. That is the point, and its cost: a cluster aggregator
cannot screen, score or robustly combine individual updates (docs/privacy.md).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from numpy.typing import ArrayLike, NDArray

from node import shamir
from node.errors import (
    CannotUnmask,
    InvalidWeights,
    MalformedSecAggMessage,
    SecAggConfigError,
    SecAggError,
    SecAggOverflow,
    ShareRefused,
)
from node.secagg_messages import (
    KeyAdvertisement,
    MaskedInput,
    SecAggRound,
    ShareBundle,
    UnmaskingAnswer,
    UnmaskingRequest,
    majority,
)

__all__ = [
    "KeyAdvertisement",
    "MaskedInput",
    "SecAggAggregator",
    "SecAggMember",
    "SecAggRound",
    "ShareBundle",
    "UnmaskingAnswer",
    "UnmaskingRequest",
    "decode_fixed",
    "encode_fixed",
    "expand_mask",
    "majority",
    "pair_seed",
    "self_mask_seed",
    "value_limit",
]

Entropy = Callable[[int], bytes]
_LABEL = b"medswarm secagg v1/"
_SIGNED_MAX = 2**31 - 1


def value_limit(scale_bits: int, members: int) -> float:
    """The largest |value| each of ``members`` members may send at scale 2^``scale_bits``:
    their sum then stays within the signed 32-bit range."""
    return (_SIGNED_MAX // members) / (1 << scale_bits)


def encode_fixed(values: ArrayLike, scale_bits: int, members: int) -> NDArray[np.uint32]:
    """``values`` as round(x * 2^scale_bits) mod 2^32, refusing any value that could make the
    sum of ``members`` such vectors overflow."""
    wide = np.asarray(values, dtype=np.float64)
    if not np.isfinite(wide).all():
        raise InvalidWeights("the update holds NaN or infinite values; it cannot be aggregated")
    scaled = np.rint(wide * 2.0**scale_bits)
    if scaled.size and float(np.abs(scaled).max()) > _SIGNED_MAX // members:
        worst = float(wide.flat[int(np.argmax(np.abs(scaled)))])
        limit = value_limit(scale_bits, members)
        raise SecAggOverflow(
            f"update value {worst:.6g} is outside +-{limit:.6g}, the range in which the sum "
            f"of {members} members' values at scale 2^{scale_bits} fits 32 bits; clip the "
            "update to that range, or lower scale_bits (each step down doubles the range and "
            "halves the resolution)"
        )
    return scaled.astype(np.int64).astype(np.uint32)


def decode_fixed(total: NDArray[np.uint32], scale_bits: int) -> NDArray[np.float32]:
    """The float32 values of a sum of encoded vectors (read as signed 32-bit integers)."""
    signed = np.asarray(total, dtype=np.uint32).view(np.int32)
    return (signed.astype(np.float64) / 2.0**scale_bits).astype(np.float32)


def expand_mask(seed: bytes, length: int) -> NDArray[np.uint32]:
    """``length`` pseudo-random words: the ChaCha20 key stream under the 32-byte ``seed``."""
    encryptor = Cipher(algorithms.ChaCha20(seed, bytes(16)), mode=None).encryptor()
    return np.frombuffer(encryptor.update(bytes(4 * length)), dtype="<u4")


def derive_seed(secret: bytes, purpose: bytes, setup: SecAggRound, *members: int) -> bytes:
    """A 32-byte key for ``purpose`` bound to the round and the ``members`` involved."""
    info = _LABEL + purpose + setup.digest + b"".join(m.to_bytes(2, "big") for m in members)
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(secret)


def pair_seed(
    setup: SecAggRound, own_key: X25519PrivateKey, peer_key: bytes, own: int, peer: int
) -> bytes:
    """The seed of the pairwise mask of members ``own`` and ``peer``: the same at both ends."""
    secret = _agree(own_key, peer_key, peer)
    return derive_seed(secret, b"pair mask", setup, min(own, peer), max(own, peer))


def self_mask_seed(setup: SecAggRound, seed: bytes, member: int) -> bytes:
    """The key of ``member``'s self mask, from its secret seed b_u."""
    return derive_seed(seed, b"self mask", setup, member)


class SecAggMember:
    """One member's side of one round: keys, dealt shares, masked input, answers.

    Call :meth:`advertise`, :meth:`deal_shares`, :meth:`mask` and :meth:`answer` in that
    order; the object holds the member's secrets and is used for one round only.
    ``entropy(n)`` gives n random bytes (tests pass a seeded source).
    """

    def __init__(self, setup: SecAggRound, index: int, entropy: Entropy = os.urandom) -> None:
        if not 0 <= index < setup.size:
            raise SecAggConfigError(f"member index {index} outside the round's {setup.size}")
        self.setup = setup
        self.index = index
        self._entropy = entropy
        self._encryption_key = X25519PrivateKey.from_private_bytes(entropy(32))
        self._mask_key = X25519PrivateKey.from_private_bytes(entropy(32))
        self._seed = entropy(32)  # b_u
        self._keys: dict[int, KeyAdvertisement] = {}
        self._held: dict[int, tuple[int, int]] = {}  # owner -> (key share, seed share)
        self._peers: tuple[int, ...] = ()
        self._revealed: dict[int, str] = {}  # owner -> "seed" or "key"

    def advertise(self) -> KeyAdvertisement:
        """This member's public keys for the round."""
        return KeyAdvertisement(self.index, _public(self._encryption_key), _public(self._mask_key))

    def deal_shares(self, advertisements: Iterable[KeyAdvertisement]) -> ShareBundle:
        """Shares of this member's mask key and self-mask seed for every member that
        advertised keys (this one's included), sealed for each."""
        if self._keys:
            raise SecAggError("shares are dealt once per round")
        keys = _collect_advertisements(self.setup, advertisements)
        if keys.get(self.index) != self.advertise():
            raise MalformedSecAggMessage(
                f"the advertisements lack member {self.index}'s own keys, or show others"
            )
        self._keys = keys
        points = [member + 1 for member in keys]
        threshold = self.setup.threshold
        key_shares = shamir.split(
            self._mask_key.private_bytes_raw(), threshold, points, self._entropy
        )
        seed_shares = shamir.split(self._seed, threshold, points, self._entropy)
        self._held[self.index] = (key_shares[self.index + 1], seed_shares[self.index + 1])
        sealed = tuple(
            (peer, self._seal(peer, key_shares[peer + 1], seed_shares[peer + 1]))
            for peer in keys
            if peer != self.index
        )
        return ShareBundle(self.index, sealed)

    def mask(self, update: ArrayLike, bundles: Iterable[ShareBundle]) -> MaskedInput:
        """The encoded ``update`` with every mask added, masking with the members whose
        ``bundles`` (shares sealed for this member) are given; this member's own is skipped."""
        if not self._keys:
            raise SecAggError("deal_shares comes before mask")
        if self._peers:
            raise SecAggError("an update is masked once per round")
        encoded = encode_fixed(update, self.setup.scale_bits, self.setup.size)
        if encoded.shape != (self.setup.length,):
            raise SecAggConfigError(
                f"update of shape {encoded.shape}; the round's updates are flat vectors of "
                f"{self.setup.length} values"
            )
        for bundle in bundles:
            if bundle.sender != self.index:
                self._receive(bundle)
        peers = tuple(sorted(self._held))
        _need_threshold(len(peers), self.setup, "members dealt shares to this member")
        masked = encoded
        np.add(masked, self._expand(self_mask_seed(self.setup, self._seed, self.index)), out=masked)
        for peer in peers:
            if peer == self.index:
                continue
            seed = pair_seed(
                self.setup, self._mask_key, self._keys[peer].mask_key, self.index, peer
            )
            add_or_subtract = np.add if peer > self.index else np.subtract
            add_or_subtract(masked, self._expand(seed), out=masked)
        self._peers = peers
        return MaskedInput(self.index, peers, masked)

    def answer(self, request: UnmaskingRequest) -> UnmaskingAnswer:
        """This member's shares for ``request``: self-mask seeds of the survivors, mask keys
        of the dropped. Refuses to reveal both kinds for one member, in this request or across
        requests."""
        if not self._peers:
            raise SecAggError("mask comes before answer")
        survivors, dropped = set(request.survivors), set(request.dropped)
        both = survivors & dropped
        both |= {m for m in survivors if self._revealed.get(m) == "key"}
        both |= {m for m in dropped if self._revealed.get(m) == "seed"}
        if both:
            raise ShareRefused(
                f"asked for both the self-mask seed and the mask key of member(s) "
                f"{sorted(both)}: together they would reveal the update; this member reveals "
                "one or the other"
            )
        if survivors | dropped != set(self._peers):
            raise MalformedSecAggMessage(
                f"the unmasking request names members {sorted(survivors | dropped)}; member "
                f"{self.index} masked with {list(self._peers)}"
            )
        _need_threshold(len(survivors), self.setup, "masked inputs are in")
        self._revealed.update(dict.fromkeys(survivors, "seed"))
        self._revealed.update(dict.fromkeys(dropped, "key"))
        return UnmaskingAnswer(
            self.index,
            seed_shares=tuple((m, self._held[m][1]) for m in request.survivors),
            key_shares=tuple((m, self._held[m][0]) for m in request.dropped),
        )

    def _receive(self, bundle: ShareBundle) -> None:
        peer = bundle.sender
        if peer not in self._keys:
            raise MalformedSecAggMessage(f"shares from member {peer}, who advertised no keys")
        ciphertext = dict(bundle.sealed).get(self.index)
        if ciphertext is None:
            raise MalformedSecAggMessage(f"member {peer}'s shares leave out member {self.index}")
        try:
            plain = self._channel(peer).decrypt(
                self._nonce(peer, self.index), ciphertext, self._sealed_context(peer, self.index)
            )
        except InvalidTag:
            raise MalformedSecAggMessage(
                f"member {peer}'s shares for member {self.index} do not open: altered, or "
                "sealed for another round"
            ) from None
        key_share = shamir.share_from_bytes(plain[: shamir.SHARE_BYTES])
        seed_share = shamir.share_from_bytes(plain[shamir.SHARE_BYTES :])
        if self._held.setdefault(peer, (key_share, seed_share)) != (key_share, seed_share):
            raise MalformedSecAggMessage(f"member {peer} dealt two different sets of shares")

    def _seal(self, peer: int, key_share: int, seed_share: int) -> bytes:
        plain = shamir.share_to_bytes(key_share) + shamir.share_to_bytes(seed_share)
        return self._channel(peer).encrypt(
            self._nonce(self.index, peer), plain, self._sealed_context(self.index, peer)
        )

    def _channel(self, peer: int) -> ChaCha20Poly1305:
        secret = _agree(self._encryption_key, self._keys[peer].encryption_key, peer)
        low, high = sorted((self.index, peer))
        return ChaCha20Poly1305(derive_seed(secret, b"shares", self.setup, low, high))

    @staticmethod
    def _nonce(sender: int, recipient: int) -> bytes:
        # One key per pair seals one message each way: the direction makes the nonce unique.
        return sender.to_bytes(2, "big") + recipient.to_bytes(2, "big") + bytes(8)

    def _sealed_context(self, sender: int, recipient: int) -> bytes:
        return self.setup.digest + self._nonce(sender, recipient)[:4]

    def _expand(self, seed: bytes) -> NDArray[np.uint32]:
        return expand_mask(seed, self.setup.length)


class SecAggAggregator:
    """The cluster aggregator's side: takes masked inputs, asks for the shares that unmask
    their sum, and returns that sum. It never holds an individual update."""

    def __init__(self, setup: SecAggRound, advertisements: Iterable[KeyAdvertisement]) -> None:
        self.setup = setup
        self._keys = _collect_advertisements(setup, advertisements)
        self._inputs: dict[int, MaskedInput] = {}
        self._request: UnmaskingRequest | None = None

    def receive(self, masked: MaskedInput) -> bool:
        """Take a member's masked input; False if it is left out: it came again, or after the
        unmasking request went out."""
        if self._request is not None:
            return False
        vector = masked.vector
        if vector.dtype.kind != "u" or vector.itemsize != 4 or vector.shape != (self.setup.length,):
            raise MalformedSecAggMessage(
                f"member {masked.sender}'s masked input is not {self.setup.length} 32-bit words"
            )
        if not set(masked.peers) <= set(self._keys) or masked.sender not in masked.peers:
            raise MalformedSecAggMessage(
                f"member {masked.sender} masked with members {list(masked.peers)}, not all of "
                f"whom advertised keys ({sorted(self._keys)})"
            )
        for other in self._inputs.values():
            if other.peers != masked.peers:
                raise CannotUnmask(
                    f"member {masked.sender} masked with members {list(masked.peers)} but "
                    f"member {other.sender} with {list(other.peers)}: every member must mask "
                    "with the same members (those whose shares were passed on)"
                )
        previous = self._inputs.setdefault(masked.sender, masked)
        if previous is not masked and not np.array_equal(previous.vector, vector):
            raise MalformedSecAggMessage(f"member {masked.sender} sent two masked inputs")
        return previous is masked

    def request(self) -> UnmaskingRequest:
        """The unmasking request for the inputs received so far; later inputs are left out."""
        if self._request is None:
            survivors = tuple(sorted(self._inputs))
            _need_threshold(len(survivors), self.setup, "masked inputs arrived")
            peers = self._inputs[survivors[0]].peers
            dropped = tuple(m for m in peers if m not in self._inputs)
            self._request = UnmaskingRequest(survivors, dropped)
        return self._request

    def unmask_encoded(self, answers: Iterable[UnmaskingAnswer]) -> NDArray[np.uint32]:
        """The survivors' encoded sum mod 2^32, from at least ``threshold`` answers."""
        if self._request is None:
            raise SecAggError("request comes before unmask")
        request, setup = self._request, self.setup
        seeds, keys = self._collect(request, answers)
        total = np.zeros(setup.length, dtype=np.uint32)
        for member in request.survivors:
            np.add(total, self._inputs[member].vector, out=total)
            seed = shamir.combine(seeds[member], setup.threshold)
            np.subtract(total, self._expand(self_mask_seed(setup, seed, member)), out=total)
        for gone in request.dropped:
            key = X25519PrivateKey.from_private_bytes(shamir.combine(keys[gone], setup.threshold))
            if _public(key) != self._keys[gone].mask_key:
                raise CannotUnmask(
                    f"the shares of member {gone}'s mask key rebuild another key than it "
                    "advertised: some member revealed a wrong share"
                )
            for member in request.survivors:
                mask = self._expand(
                    pair_seed(setup, key, self._keys[member].mask_key, gone, member)
                )
                # The survivor added this mask if the dropped member's index is above its own.
                add_or_subtract = np.subtract if gone > member else np.add
                add_or_subtract(total, mask, out=total)
        return total

    def unmask(self, answers: Iterable[UnmaskingAnswer]) -> NDArray[np.float32]:
        """The sum of the survivors' updates, as float32."""
        return decode_fixed(self.unmask_encoded(answers), self.setup.scale_bits)

    def _collect(
        self, request: UnmaskingRequest, answers: Iterable[UnmaskingAnswer]
    ) -> tuple[dict[int, dict[int, int]], dict[int, dict[int, int]]]:
        """Shares by owner (owner -> point -> share) from distinct members that masked."""
        peers = set(request.survivors) | set(request.dropped)
        seeds: dict[int, dict[int, int]] = {m: {} for m in request.survivors}
        keys: dict[int, dict[int, int]] = {m: {} for m in request.dropped}
        senders: dict[int, UnmaskingAnswer] = {}
        for answer in answers:
            if answer.sender not in peers:
                raise MalformedSecAggMessage(
                    f"an answer from member {answer.sender}, who did not mask"
                )
            if (
                tuple(m for m, _ in answer.seed_shares) != request.survivors
                or tuple(m for m, _ in answer.key_shares) != request.dropped
            ):
                raise MalformedSecAggMessage(
                    f"member {answer.sender}'s answer does not hold the shares requested"
                )
            if senders.setdefault(answer.sender, answer) != answer:
                raise MalformedSecAggMessage(f"member {answer.sender} sent two different answers")
            for owner, share in answer.seed_shares:
                seeds[owner][answer.sender + 1] = share
            for owner, share in answer.key_shares:
                keys[owner][answer.sender + 1] = share
        _need_threshold(len(senders), self.setup, "members answered the unmasking request")
        return seeds, keys

    def _expand(self, seed: bytes) -> NDArray[np.uint32]:
        return expand_mask(seed, self.setup.length)


def _collect_advertisements(
    setup: SecAggRound, advertisements: Iterable[KeyAdvertisement]
) -> dict[int, KeyAdvertisement]:
    """The advertisements by member, in index order; at least ``threshold`` of them."""
    keys: dict[int, KeyAdvertisement] = {}
    for advertisement in advertisements:
        if not 0 <= advertisement.sender < setup.size:
            raise MalformedSecAggMessage(f"keys from member {advertisement.sender}, not a member")
        if keys.setdefault(advertisement.sender, advertisement) != advertisement:
            raise MalformedSecAggMessage(f"member {advertisement.sender} advertised two key sets")
    _need_threshold(len(keys), setup, "members advertised keys")
    return dict(sorted(keys.items()))


def _need_threshold(count: int, setup: SecAggRound, what: str) -> None:
    if count < setup.threshold:
        raise CannotUnmask(
            f"only {count} of the cluster's {setup.size} {what}; the round needs "
            f"{setup.threshold} (the threshold) and cannot be unmasked"
        )


def _agree(own_key: X25519PrivateKey, peer_key: bytes, peer: int) -> bytes:
    try:
        return own_key.exchange(X25519PublicKey.from_public_bytes(peer_key))
    except ValueError:
        raise MalformedSecAggMessage(
            f"member {peer}'s public key is not a usable X25519 key"
        ) from None


def _public(key: X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes_raw()
