"""The Registry's member list, read in full only when the Registry has changed.

A member's entry changes only through ``admit`` and ``register``, and each emits an event
(``MemberAdmitted``, ``MemberRegistered``). :class:`MemberDirectory` reads every entry once
(``members`` and one ``memberInfo`` per member), then at each later read asks the chain for
its newest block number and, if blocks came since, whether the Registry logged anything in
them: two requests while nothing changed, instead of one per member. Every node reads the
registry every round, so the full read costs the chain and the nodes' CPU a number of
requests that grows with the square of the member count.
"""

from __future__ import annotations

import threading
from typing import Protocol

from incentive.records import MemberInfo

# The most blocks one log query may span: JSON-RPC providers cap a query's block range, and a
# longer gap than this (a node that was away) is cheaper to cover with one full read.
MAX_LOG_BLOCKS = 2000


class RegistryReader(Protocol):
    """What :class:`MemberDirectory` needs of a chain client
    (:class:`~incentive.clients.FederationClient`)."""

    def members(self) -> list[MemberInfo]: ...

    def block_number(self) -> int: ...

    def registry_logged(self, first_block: int, last_block: int) -> bool: ...


class MemberDirectory:
    """The federation's members as the Registry lists them, re-read in full only after the
    Registry has logged an event. Safe to share between threads."""

    def __init__(self, client: RegistryReader) -> None:
        self._client = client
        self._lock = threading.Lock()
        self._members: list[MemberInfo] | None = None
        self._next_block = 0  # the first block whose Registry events the list does not reflect
        self.full_reads = 0  # how many times every entry was read

    def members(self) -> list[MemberInfo]:
        """All admitted members in admission order, as of the chain's newest block."""
        with self._lock:
            head = self._client.block_number()
            if not self._current(head):
                self._members = self._client.members()  # read at ``head`` or later
                self.full_reads += 1
            self._next_block = head + 1
            assert self._members is not None
            return list(self._members)

    def _current(self, head: int) -> bool:
        """Whether the list read last still holds at block ``head``."""
        if self._members is None:
            return False
        if head < self._next_block - 1:  # the chain went back (restarted from older state)
            return False
        if head < self._next_block:
            return True  # no block since the last read
        if head - self._next_block >= MAX_LOG_BLOCKS:
            return False
        return not self._client.registry_logged(self._next_block, head)
