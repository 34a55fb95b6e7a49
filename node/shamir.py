"""Shamir's t-of-n secret sharing of 32-byte secrets over the prime field GF(2^521 - 1). Pure.

A secret s is the constant term of a random polynomial f of degree t - 1 over GF(p); the
share for x (x = 1, 2, ...) is f(x). Any t shares give s back by Lagrange interpolation at 0;
fewer than t say nothing about it (every value of s fits them equally well). p = 2^521 - 1
is a Mersenne prime larger than every 32-byte secret, so a secret is one field element and a
share is one field element of :data:`SHARE_BYTES` bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from node.errors import CannotUnmask, SecAggConfigError

PRIME = 2**521 - 1
SHARE_BYTES = 66  # a field element, big-endian: ceil(521 / 8)
SECRET_BYTES = 32


def split(
    secret: bytes, threshold: int, xs: Sequence[int], entropy: Callable[[int], bytes]
) -> dict[int, int]:
    """Shares of ``secret`` for the points ``xs`` (distinct, 1 <= x < p), any ``threshold`` of
    which recover it; ``entropy(n)`` gives n random bytes for the polynomial's coefficients."""
    if len(secret) != SECRET_BYTES:
        raise SecAggConfigError(f"a shared secret has {SECRET_BYTES} bytes, not {len(secret)}")
    if len(set(xs)) != len(xs) or not all(0 < x < PRIME for x in xs):
        raise SecAggConfigError(f"share points must be distinct and in 1..p-1, got {list(xs)}")
    if not 1 <= threshold <= len(xs):
        raise SecAggConfigError(f"threshold {threshold} must be in 1..{len(xs)} (the shares)")
    coefficients = [int.from_bytes(secret, "big")]
    coefficients += [_random_element(entropy) for _ in range(threshold - 1)]
    return {x: _evaluate(coefficients, x) for x in xs}


def combine(shares: Mapping[int, int], threshold: int) -> bytes:
    """The secret from ``shares`` (x -> f(x)), at least ``threshold`` of them.

    The polynomial is interpolated from the first ``threshold`` shares (by x); every further
    share must lie on it, so a wrong share among more than ``threshold`` is caught.
    """
    if len(shares) < threshold:
        raise CannotUnmask(f"{len(shares)} shares of a secret arrived; {threshold} are needed")
    if not all(0 < x < PRIME and 0 <= y < PRIME for x, y in shares.items()):
        raise CannotUnmask("a share lies outside the field")
    points = sorted(shares.items())
    basis, extra = points[:threshold], points[threshold:]
    if any(_interpolate(basis, x) != y for x, y in extra):
        raise CannotUnmask(
            f"the {len(points)} shares of a secret do not lie on one polynomial of degree "
            f"{threshold - 1}: some member revealed a wrong share"
        )
    secret = _interpolate(basis, 0)
    if secret >= 2 ** (8 * SECRET_BYTES):
        raise CannotUnmask("the shares give a value too large to be a secret: a share is wrong")
    return secret.to_bytes(SECRET_BYTES, "big")


def share_to_bytes(y: int) -> bytes:
    return y.to_bytes(SHARE_BYTES, "big")


def share_from_bytes(data: bytes) -> int:
    """A share's field element; the caller has checked the length. Values >= p stay as they
    are, for :func:`combine` to refuse."""
    return int.from_bytes(data, "big")


def _random_element(entropy: Callable[[int], bytes]) -> int:
    while True:  # 521 random bits are below p except for the single value p itself
        value = int.from_bytes(entropy(SHARE_BYTES), "big") & PRIME
        if value < PRIME:
            return value


def _evaluate(coefficients: Sequence[int], x: int) -> int:
    result = 0
    for coefficient in reversed(coefficients):
        result = (result * x + coefficient) % PRIME
    return result


def _interpolate(points: Sequence[tuple[int, int]], at: int) -> int:
    """The value at ``at`` of the polynomial of degree < len(points) through ``points``."""
    total = 0
    for i, (xi, yi) in enumerate(points):
        numerator, denominator = 1, 1
        for j, (xj, _) in enumerate(points):
            if j != i:
                numerator = numerator * (at - xj) % PRIME
                denominator = denominator * (xi - xj) % PRIME
        total = (total + yi * numerator * pow(denominator, -1, PRIME)) % PRIME
    return total
