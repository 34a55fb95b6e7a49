"""The federation's members as the on-chain registry lists them."""

from __future__ import annotations

from collections.abc import Iterable

from incentive.records import MemberInfo


class Membership:
    """Address -> registered member, refreshed from the registry."""

    def __init__(self) -> None:
        self._by_address: dict[str, MemberInfo] = {}

    def update(self, members: Iterable[MemberInfo]) -> None:
        self._by_address = {m.address.lower(): m for m in members if m.peer_id}

    @property
    def members(self) -> list[MemberInfo]:
        return [self._by_address[a] for a in sorted(self._by_address)]

    def addresses(self) -> list[str]:
        return sorted(self._by_address)

    def peer_id(self, address: str) -> str | None:
        member = self._by_address.get(address.lower())
        return None if member is None else str(member.peer_id)
