"""The federation's members as the on-chain registry lists them."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from incentive.records import MemberInfo

STRANGERS_KEPT = 4096  # unknown addresses and peers remembered with when they first spoke


class Membership:
    """Address -> registered member (with its cluster), refreshed from the registry.

    Only members that registered a libp2p peer id count: they are the ones that can speak.

    It also tells a stranger from a newcomer. An address (or libp2p peer) the registry does
    not list may be a member admitted since the last read, so the first time it speaks it
    is only noted. Once the registry has been read again, in a read that began after that,
    and still does not list it, it is a stranger (:meth:`is_stranger`).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._by_address: dict[str, MemberInfo] = {}
        self._barred: set[str] = set()
        self._clock = clock
        self._read_at: float | None = None  # when the read behind the current lists began
        # Lowercase addresses and peer ids (base58 never starts with "0x") not listed when
        # they first spoke: when that was. The oldest are forgotten past STRANGERS_KEPT.
        self._first_spoke: dict[str, float] = {}

    def update(self, members: Iterable[MemberInfo], read_at: float | None = None) -> None:
        """Take the registry's list; ``read_at`` is when the read of it began (default:
        now, on this object's clock). A read that began before the one already taken is
        older news and is dropped."""
        started = self._clock() if read_at is None else read_at
        if self._read_at is not None and started < self._read_at:
            return
        listed = list(members)
        self._by_address = {m.address.lower(): m for m in listed if m.peer_id and m.active}
        self._barred = {m.address.lower() for m in listed if not m.active}
        self._read_at = started
        for identity in [i for i in self._first_spoke if self._is_listed(i)]:
            del self._first_spoke[identity]

    def is_barred(self, address: str) -> bool:
        """Whether the registry lists ``address`` as a member that may no longer take part
        (excluded or removed), as opposed to one it does not know."""
        return address.lower() in self._barred

    def is_stranger(self, address: str, peer_id: str) -> bool:
        """Whether an announcement signed by ``address`` and published by libp2p peer
        ``peer_id`` comes from outside the federation: one of them was already unknown
        when the last registry read began, and that read did not list it either.

        Either one unknown for the first time is noted (it may be a newcomer) and does not
        make a stranger yet; the caller asks for a fresh read of the registry.
        """
        now = self._clock()
        found = False
        for identity in (address.lower(), peer_id):
            if self._is_listed(identity):
                continue
            first = self._first_spoke.get(identity)
            if first is None:
                self._note_first(identity, now)
            elif self._read_at is not None and self._read_at > first:
                found = True
        return found

    def _is_listed(self, identity: str) -> bool:
        """Whether an address (lowercase) or peer id is in the registry's list at all."""
        if identity.startswith("0x"):
            return identity in self._by_address or identity in self._barred
        return self.has_peer(identity)

    def _note_first(self, identity: str, now: float) -> None:
        if len(self._first_spoke) >= STRANGERS_KEPT:
            del self._first_spoke[next(iter(self._first_spoke))]  # the oldest
        self._first_spoke[identity] = now

    @property
    def members(self) -> list[MemberInfo]:
        return [self._by_address[a] for a in sorted(self._by_address)]

    def addresses(self, cluster: int | None = None) -> list[str]:
        """Lowercase member addresses, sorted (optionally of one cluster)."""
        return [a for a, m in sorted(self._by_address.items()) if cluster in (None, m.cluster)]

    def clusters(self) -> list[int]:
        """The clusters that have at least one registered member, ascending."""
        return sorted({m.cluster for m in self._by_address.values()})

    def cluster_of(self, address: str) -> int:
        member = self._by_address.get(address.lower())
        if member is None:
            raise LookupError(f"{address} is not a registered member")
        return member.cluster

    def peer_id(self, address: str) -> str | None:
        member = self._by_address.get(address.lower())
        return None if member is None else str(member.peer_id)

    def has_peer(self, peer_id: str) -> bool:
        """Whether ``peer_id`` is the registered libp2p identity of an active member."""
        return any(m.peer_id == peer_id for m in self._by_address.values())

    def peer_ids(self, exclude: str | None = None, cluster: int | None = None) -> list[str]:
        """Peer ids of the members (optionally of one cluster), without ``exclude``'s."""
        skip = (exclude or "").lower()
        return [
            m.peer_id
            for a, m in sorted(self._by_address.items())
            if a != skip and cluster in (None, m.cluster)
        ]
