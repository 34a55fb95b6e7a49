"""Client-level differential privacy for the updates a member announces. Pure numpy.

DP-FedAvg (McMahan, Ramage, Talwar and Zhang, "Learning Differentially Private Recurrent
Language Models", 2018) clips each client's update and has the server add Gaussian noise to
the sum. This federation has no trusted server: every member sees every other member's
update (the aggregator fetches them, and so do members that check the aggregate or validate
updates). So **each member adds its own noise before it announces**, and every announced
update is itself a Gaussian release (:class:`ClientPrivacy`):

1. the update's shared tensors (the delta of the round, every tensor the member sends),
   flattened in name order into one float64 vector, are scaled down to L2 norm ``clip`` if
   longer;
2. every coordinate gets independent Gaussian noise of standard deviation
   ``noise_multiplier × clip``;
3. the vector is cut back into float32 tensors.

Against every peer, each member's update is then ``(α, α / (2σ²))``-RDP with respect to
replacing its update by nothing (a zero update; sensitivity ``clip``), ``σ`` the noise
multiplier; :mod:`node.accountant` composes the rounds. Aggregation, the server step and
everything computed from the announced updates is post-processing and costs nothing more.
The price of local noise: the average of ``n`` members carries ``n`` members' noise, where a
trusted server (or secure aggregation) would add it once.

**SCAFFOLD.** A member's update also carries its variate change per sample,
``(c_i(new) - c_i(old)) / n_i``. Under option II, ``c_i(new) - c_i(old) = -c + (x - y_i) /
(K·lr)``, a function of the delta ``y_i - x``, the server variate ``c`` (in the public global
blob), the step count ``K`` and the learning rate. So the learner computes the variate from
the *noised* delta (:meth:`node.learner.SiteLearner.train`): the variate change is then
post-processing of the private release and is neither clipped nor noised on its own. The
member's own variate follows the same noised delta, so the server variate stays the mean of
the members' variates.

**Randomness.** The noise must be secret: peers know the federation's seed, so noise drawn
from it alone could be subtracted. Each member keys its noise with a secret of its own
(:func:`member_noise_key`, from its account key) and draws it from a generator seeded by
``HMAC(key, (seed, round, member))`` (:func:`noise_generator`): reproducible for the member,
unknown to its peers, and the same on a retried or restarted round, so a round's update is
released once however often it is announced. The in-memory simulations use an empty key:
reproducible, and public.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from node.accountant import RdpAccountant
from node.errors import PrivacyError
from node.weights import WeightArray, Weights

NOISE_KEY_CONTEXT = b"medswarm differential-privacy noise key v1"

Float64Array = npt.NDArray[np.float64]


@dataclass(frozen=True)
class ClientPrivacy:
    """The mechanism a member applies to its update before announcing it (module docstring).

    ``clip`` is the L2 norm updates are clipped to, ``noise_multiplier`` the noise's standard
    deviation over ``clip`` (0: clipping only, no guarantee), ``noise_key`` the member's secret
    for its noise (empty: public noise, for simulations). Raises
    :class:`~node.errors.PrivacyError` for a clip that is not positive and finite or a noise
    multiplier that is negative or not finite.
    """

    clip: float
    noise_multiplier: float
    noise_key: bytes = field(default=b"", repr=False)

    def __post_init__(self) -> None:
        if not (_is_number(self.clip) and 0 < self.clip < math.inf):
            raise PrivacyError(f"the clipping norm must be positive and finite, got {self.clip!r}")
        if not (_is_number(self.noise_multiplier) and 0 <= self.noise_multiplier < math.inf):
            raise PrivacyError(
                f"the noise multiplier must be a finite number >= 0, got {self.noise_multiplier!r}"
            )

    @property
    def noise_std(self) -> float:
        """The standard deviation of the noise on each coordinate."""
        return self.noise_multiplier * self.clip

    def privatise(
        self, update: Mapping[str, WeightArray], seed: int, round_number: int, member: str
    ) -> Weights:
        """``update`` clipped to :attr:`clip` and noised; the noise is that of
        :func:`noise_generator` for this member's key, ``seed``, round and member name."""
        names, vector = _flatten(update)
        vector = _clipped(vector, self.clip)
        if self.noise_std > 0:
            rng = noise_generator(self.noise_key, seed, round_number, member)
            vector = vector + rng.normal(0.0, self.noise_std, size=vector.size)
        return _unflatten(update, names, vector)


def update_norm(update: Mapping[str, WeightArray]) -> float:
    """The L2 norm of all of ``update``'s tensors as one vector (float64)."""
    return float(np.linalg.norm(_flatten(update)[1]))


def clip_update(update: Mapping[str, WeightArray], clip: float) -> Weights:
    """``update`` scaled down to L2 norm ``clip`` if it is longer (all tensors as one vector),
    unchanged otherwise; float32 tensors, so the norm may exceed ``clip`` by float32
    rounding (a relative 1e-7)."""
    if not (_is_number(clip) and 0 < clip < math.inf):
        raise PrivacyError(f"the clipping norm must be positive and finite, got {clip!r}")
    names, vector = _flatten(update)
    return _unflatten(update, names, _clipped(vector, clip))


def add_noise(update: Mapping[str, WeightArray], std: float, rng: np.random.Generator) -> Weights:
    """``update`` with independent N(0, std²) noise on every coordinate, drawn from ``rng``
    in tensor-name order."""
    if not (_is_number(std) and 0 <= std < math.inf):
        raise PrivacyError(f"the noise standard deviation must be finite and >= 0, got {std!r}")
    names, vector = _flatten(update)
    return _unflatten(update, names, vector + rng.normal(0.0, std, size=vector.size))


def noise_generator(
    noise_key: bytes, seed: int, round_number: int, member: str
) -> np.random.Generator:
    """The generator a member draws a round's noise from: seeded with all 256 bits of
    ``HMAC-SHA256(noise_key, seed, round, member)``."""
    message = "\x1f".join(("dp-noise", str(seed), str(round_number), member)).encode("utf-8")
    digest = hmac.new(noise_key, message, hashlib.sha256).digest()
    return np.random.default_rng(int.from_bytes(digest, "big"))


def member_noise_key(account_key: str) -> bytes:
    """A member's secret noise key, derived from its account's private key (hex, with or
    without ``0x``) and never sent anywhere."""
    secret = account_key.strip().lower().removeprefix("0x").encode("ascii")
    if not secret:
        raise PrivacyError("a member's noise key needs its account key, got an empty one")
    return hmac.new(secret, NOISE_KEY_CONTEXT, hashlib.sha256).digest()


def privacy_spent(
    noise_multiplier: float, delta: float, releases: int, released_now: bool
) -> dict[str, float | None]:
    """What a round event reports: ``epsilon`` after ``releases`` noised updates,
    ``epsilon_round`` of one update alone (None when the round released none: the statistics
    round) and ``delta``; all None without noise (clipping alone guarantees nothing)."""
    if noise_multiplier == 0:
        return {"epsilon": None, "epsilon_round": None, "delta": None}
    return {
        "epsilon": RdpAccountant(noise_multiplier).step(releases).epsilon(delta),
        "epsilon_round": RdpAccountant(noise_multiplier).step(1).epsilon(delta)
        if released_now
        else None,
        "delta": delta,
    }


def _flatten(update: Mapping[str, WeightArray]) -> tuple[list[str], Float64Array]:
    names = sorted(update)
    if not names:
        raise PrivacyError("an update to privatise holds no tensors")
    vector = np.concatenate([np.asarray(update[n], dtype=np.float64).ravel() for n in names])
    if not np.all(np.isfinite(vector)):
        raise PrivacyError("an update to privatise holds NaN or infinite values")
    return names, vector


def _clipped(vector: Float64Array, clip: float) -> Float64Array:
    norm = float(np.linalg.norm(vector))
    return vector * (clip / norm) if norm > clip else vector


def _unflatten(
    update: Mapping[str, WeightArray], names: list[str], vector: Float64Array
) -> Weights:
    result: Weights = {}
    offset = 0
    for name in names:
        shape = np.shape(update[name])
        size = int(np.prod(shape, dtype=np.int64))
        result[name] = vector[offset : offset + size].reshape(shape).astype(np.float32)
        offset += size
    return result


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
