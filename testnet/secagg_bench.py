"""One secure-aggregation round of a cluster in this process, against plain summation.

:func:`measure_secagg` runs every step of :mod:`node.secagg` for ``members`` members with
updates of ``parameters`` float32 values (model deltas drawn from N(0, 0.01)); the last
``dropouts`` members mask their update but their masked input never reaches the aggregator.
Every message goes through its byte encoding and is decoded by its receiver, as on the wire.

``seconds`` is the whole protocol, from making the members' keys to the aggregator's float32
sum, every party one after another on one core; on a network the members work in parallel, so
the slowest member's own time and the aggregator's are reported too. ``bytes_per_member`` is
what a surviving member sends: its keys, its sealed shares, its masked input and its answer to
the unmasking request (the request itself, sent once by the aggregator, is not counted). The
baseline, measured in the same run, is what a cluster does today: the aggregator adds the
survivors' plain float32 updates, which each member sends as 4 bytes per value.

The default size, 1,000,000 values, is a mid-sized model; the demo's Fed-Heart-Disease model
has 14 parameters, where only the fixed costs of keys and shares would show.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import numpy as np

from node.secagg import (
    KeyAdvertisement,
    MaskedInput,
    SecAggAggregator,
    SecAggMember,
    SecAggRound,
    ShareBundle,
    UnmaskingAnswer,
    UnmaskingRequest,
    decode_fixed,
    majority,
)
from testnet.errors import TestnetError

DEFAULT_PARAMETERS = 1_000_000
PHASES = ("keys", "shares", "masking", "unmasking")
_T = TypeVar("_T")


@dataclass(frozen=True)
class SecAggBenchResult:
    """What one run measured."""

    members: int
    dropouts: int
    threshold: int
    parameters: int
    scale_bits: int
    exact: bool
    max_abs_error: float
    phase_seconds: dict[str, float]
    slowest_member_seconds: float
    aggregator_seconds: float
    bytes_sent: dict[str, int]
    plain_seconds: float

    @property
    def seconds(self) -> float:
        return sum(self.phase_seconds.values())

    @property
    def bytes_per_member(self) -> int:
        return sum(self.bytes_sent.values())

    @property
    def plain_bytes(self) -> int:
        return 4 * self.parameters

    def as_dict(self) -> dict[str, Any]:
        return {
            "members": self.members,
            "dropouts": self.dropouts,
            "threshold": self.threshold,
            "params": self.parameters,
            "scale_bits": self.scale_bits,
            "exact": self.exact,
            "max_abs_error": self.max_abs_error,
            "seconds": round(self.seconds, 4),
            "phase_seconds": {phase: round(s, 4) for phase, s in self.phase_seconds.items()},
            "slowest_member_seconds": round(self.slowest_member_seconds, 4),
            "aggregator_seconds": round(self.aggregator_seconds, 4),
            "bytes_per_member": self.bytes_per_member,
            "bytes_sent": self.bytes_sent,
            "plain_seconds": round(self.plain_seconds, 6),
            "plain_bytes": self.plain_bytes,
            "seconds_vs_plain": round(self.seconds / max(self.plain_seconds, 1e-9), 1),
            "bytes_vs_plain": round(self.bytes_per_member / self.plain_bytes, 4),
        }


def check_arguments(members: int, dropouts: int, parameters: int, threshold: int = 0) -> None:
    """Refuse a run that cannot complete, naming the flag to change."""
    if members < 2:
        raise TestnetError(f"--members must be at least 2, got {members}")
    if parameters < 1:
        raise TestnetError(f"--params must be at least 1, got {parameters}")
    if threshold and not majority(members) <= threshold <= members:
        raise TestnetError(f"--threshold must be {majority(members)}..{members}, got {threshold}")
    needed = threshold or majority(members)
    if not 0 <= dropouts <= members - needed:
        raise TestnetError(
            f"--dropouts must be 0..{members - needed}: {members} members with threshold "
            f"{needed} cannot unmask a round with {dropouts} dropouts"
        )


def measure_secagg(
    members: int, dropouts: int, parameters: int, threshold: int = 0, seed: int = 0
) -> SecAggBenchResult:
    """Run one round with the last ``dropouts`` members dropping after masking."""
    check_arguments(members, dropouts, parameters, threshold)
    setup = SecAggRound(
        "bench", 1, 0, tuple(f"member-{i}" for i in range(members)), parameters, threshold
    )
    rng = np.random.default_rng(seed)
    updates = [rng.normal(0.0, 0.01, parameters).astype(np.float32) for _ in range(members)]
    survivors = range(members - dropouts)
    clock = _Clock(members)

    def advertise(member: SecAggMember) -> bytes:
        return member.advertise().encode(setup)

    parties = [clock.run("keys", i, partial(SecAggMember, setup, i)) for i in range(members)]
    adverts = [clock.run("keys", m.index, partial(advertise, m)) for m in parties]

    def deal(member: SecAggMember) -> bytes:
        received = [KeyAdvertisement.decode(data, setup) for data in adverts]
        return member.deal_shares(received).encode(setup)

    bundles = [clock.run("shares", m.index, partial(deal, m)) for m in parties]

    def mask(member: SecAggMember) -> bytes:
        received = [ShareBundle.decode(data, setup) for data in bundles]
        return member.mask(updates[member.index], received).encode(setup)

    masked = [clock.run("masking", m.index, partial(mask, m)) for m in parties]

    def collect() -> tuple[SecAggAggregator, bytes]:
        aggregator = SecAggAggregator(
            setup, [KeyAdvertisement.decode(data, setup) for data in adverts]
        )
        for member in survivors:
            aggregator.receive(MaskedInput.decode(masked[member], setup))
        return aggregator, aggregator.request().encode(setup)

    aggregator, request = clock.run("unmasking", None, collect)

    def answer(member: int) -> bytes:
        return parties[member].answer(UnmaskingRequest.decode(request, setup)).encode(setup)

    answers = [clock.run("unmasking", m, partial(answer, m)) for m in survivors]
    encoded_sum = clock.run(
        "unmasking",
        None,
        lambda: aggregator.unmask_encoded(UnmaskingAnswer.decode(a, setup) for a in answers),
    )
    total = clock.run("unmasking", None, lambda: decode_fixed(encoded_sum, setup.scale_bits))

    start = time.perf_counter()
    plain = np.zeros(parameters, dtype=np.float32)
    for member in survivors:
        plain += updates[member]
    plain_seconds = time.perf_counter() - start

    # The fixed-point sum by a second route: int64, no wrap-around, reduced mod 2^32 at the end.
    scaled = [np.rint(updates[m].astype(np.float64) * 2.0**setup.scale_bits) for m in survivors]
    expected = (np.sum(scaled, axis=0).astype(np.int64) % 2**32).astype(np.uint32)
    exact_sum = np.sum([updates[m].astype(np.float64) for m in survivors], axis=0)
    return SecAggBenchResult(
        members=members,
        dropouts=dropouts,
        threshold=setup.threshold,
        parameters=parameters,
        scale_bits=setup.scale_bits,
        exact=bool(np.array_equal(encoded_sum, expected)),
        max_abs_error=float(np.abs(total.astype(np.float64) - exact_sum).max()),
        phase_seconds=clock.phase_seconds,
        slowest_member_seconds=max(clock.member_seconds),
        aggregator_seconds=clock.aggregator_seconds,
        bytes_sent={
            "keys": len(adverts[0]),
            "shares": len(bundles[0]),
            "masked_input": len(masked[0]),
            "answer": len(answers[0]),
        },
        plain_seconds=plain_seconds,
    )


class _Clock:
    """Time spent per phase, per member and by the aggregator (``who`` None)."""

    def __init__(self, members: int) -> None:
        self.phase_seconds = dict.fromkeys(PHASES, 0.0)
        self.member_seconds = [0.0] * members
        self.aggregator_seconds = 0.0

    def run(self, phase: str, who: int | None, call: Callable[[], _T]) -> _T:
        start = time.perf_counter()
        result = call()
        elapsed = time.perf_counter() - start
        self.phase_seconds[phase] += elapsed
        if who is None:
            self.aggregator_seconds += elapsed
        else:
            self.member_seconds[who] += elapsed
        return result
