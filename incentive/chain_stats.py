"""How long one account's chain requests take, and how many of its transactions are in flight.

A :class:`~incentive.tx.TransactionSender` times every request it makes, whole (retries
while the chain is unreachable included, as the caller waits them out), by kind:

- ``call``: a view function of a contract;
- ``read``: any other read (event logs, the block number);
- ``transaction``: signing, sending and waiting for the receipt.

A transaction counts as pending from signing until its receipt (or its failure). The node's
status server reports these figures (``GET /metrics``, ``GET /status``). Thread-safe: chain
requests run in worker threads.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from medswarm.prometheus import Histogram, HistogramSnapshot

KINDS = ("call", "read", "transaction")
LATENCY_BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class ChainCallStats:
    """Latency histograms by kind, failures by kind, and the transactions in flight."""

    def __init__(self) -> None:
        self._latency = {kind: Histogram(LATENCY_BOUNDS) for kind in KINDS}
        self._lock = threading.Lock()
        self._failures: Counter[str] = Counter()
        self._pending = 0

    @contextmanager
    def timed(self, kind: str) -> Iterator[None]:
        """Time the request inside the ``with`` block; an exception counts as a failure."""
        started = time.monotonic()
        try:
            yield
        except BaseException:
            with self._lock:
                self._failures[kind] += 1
            raise
        finally:
            self._latency[kind].observe(time.monotonic() - started)

    @contextmanager
    def in_flight(self) -> Iterator[None]:
        """Count a transaction as pending for the ``with`` block."""
        with self._lock:
            self._pending += 1
        try:
            yield
        finally:
            with self._lock:
                self._pending -= 1

    @property
    def pending(self) -> int:
        """Transactions signed whose receipt has not come yet."""
        with self._lock:
            return self._pending

    def failures(self) -> dict[str, int]:
        """Requests that raised, by kind (reverts included)."""
        with self._lock:
            return {kind: self._failures[kind] for kind in KINDS}

    def latency(self) -> dict[str, HistogramSnapshot]:
        """The latency histogram of each kind."""
        return {kind: histogram.snapshot() for kind, histogram in self._latency.items()}
