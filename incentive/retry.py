"""Riding out a chain node that is briefly unreachable (restarting, dropped connection).

Only failures to reach the node are retried (connection refused or reset, timeouts); a revert
or any answer the node gives is not. Waits grow from ``first_delay`` doubling to ``max_delay``
until ``total`` seconds have passed since the first failure, then
:class:`~incentive.errors.ChainUnavailable` is raised.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import requests

from incentive.errors import ChainError, ChainUnavailable

logger = logging.getLogger(__name__)

T = TypeVar("T")

_UNREACHABLE: tuple[type[BaseException], ...] = (
    ConnectionError,  # refused, reset, aborted
    TimeoutError,
    requests.ConnectionError,
    requests.Timeout,
)


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff for an unreachable chain: ``first_delay`` doubling to ``max_delay`` (seconds),
    giving up ``total`` seconds after the first failure (0: fail at once)."""

    first_delay: float = 0.2
    max_delay: float = 5.0
    total: float = 60.0

    def __post_init__(self) -> None:
        if self.first_delay <= 0 or self.max_delay < self.first_delay or self.total < 0:
            raise ChainError(
                "retry policy needs 0 < first_delay <= max_delay and total >= 0 (seconds), "
                f"got first_delay={self.first_delay}, max_delay={self.max_delay}, "
                f"total={self.total}"
            )


DEFAULT_RETRY = RetryPolicy()


def is_unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` means the node could not be reached (as opposed to an answer)."""
    return isinstance(exc, _UNREACHABLE) and not isinstance(exc, ChainError)


def endpoint(w3: Any) -> str:
    """The URL (or description) of the node behind a Web3 instance, for messages."""
    provider = getattr(w3, "provider", None)
    return str(getattr(provider, "endpoint_uri", None) or provider)


def call_with_retry(fn: Callable[[], T], policy: RetryPolicy, url: str, what: str) -> T:
    """Run ``fn``; while it fails because the node is unreachable, wait and run it again.

    ``url`` and ``what`` (e.g. ``"Ledger.attest"``) only name things in logs and errors.
    """
    delay = policy.first_delay
    first_failure: float | None = None
    while True:
        try:
            result = fn()
        except Exception as exc:
            if not is_unreachable(exc):
                raise
            now = time.monotonic()
            if first_failure is None:
                first_failure = now
                logger.warning("%s: chain at %s unreachable (%s); retrying", what, url, _short(exc))
            remaining = first_failure + policy.total - now
            if remaining <= 0:
                raise ChainUnavailable(
                    url,
                    f"{what} still failing after retrying for {now - first_failure:.1f} s: "
                    f"{_short(exc)}",
                ) from exc
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, policy.max_delay)
            continue
        if first_failure is not None:
            logger.info(
                "%s: chain at %s reachable again after %.1f s",
                what,
                url,
                time.monotonic() - first_failure,
            )
        return result


def _short(exc: BaseException) -> str:
    """The gist of a transport error: requests buries it deep in a long message."""
    text = str(exc)
    errno = re.search(r"\[Errno -?\d+\] ([^'\")]+)", text)
    if errno:
        return errno.group(1).strip()
    if "timed out" in text.lower():
        return "timed out"
    text = text.splitlines()[0] if text else type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."
