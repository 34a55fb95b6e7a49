"""The federation's members as the on-chain registry lists them."""

from __future__ import annotations

from collections.abc import Iterable

from incentive.records import MemberInfo


class Membership:
    """Address -> registered member (with its cluster), refreshed from the registry.

    Only members that registered a libp2p peer id count: they are the ones that can speak.
    """

    def __init__(self) -> None:
        self._by_address: dict[str, MemberInfo] = {}
        self._barred: set[str] = set()

    def update(self, members: Iterable[MemberInfo]) -> None:
        listed = list(members)
        self._by_address = {m.address.lower(): m for m in listed if m.peer_id and m.active}
        self._barred = {m.address.lower() for m in listed if not m.active}

    def is_barred(self, address: str) -> bool:
        """Whether the registry lists ``address`` as a member that may no longer take part
        (excluded or removed), as opposed to one it does not know."""
        return address.lower() in self._barred

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
