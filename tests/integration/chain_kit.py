"""Helpers for tests that run a federation on the real in-process EVM."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from incentive.chain import EmbeddedChain
from incentive.clients import AdminClient, MemberClient
from incentive.deployment import Deployment
from incentive.events import EventLog
from incentive.records import MemberRecord

HOSPITALS = ["St. Anna", "Charite", "Karolinska", "Gemelli"]


def sha(text: str) -> str:
    """A bare-hex SHA-256, the node's hash form."""
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class Federation:
    """Clients of one deployed federation with four admitted hospitals."""

    chain: EmbeddedChain
    deployment: Deployment
    log: EventLog
    admin: AdminClient
    members: list[MemberClient]  # in admission order
    outsider: MemberClient  # a funded account that was never admitted

    def aggregator_for(self, round: int) -> MemberClient:
        """members[round % count], worked out here rather than asked of the contract."""
        return self.members[round % len(self.members)]

    def not_aggregator_for(self, round: int) -> MemberClient:
        return self.members[(round + 1) % len(self.members)]

    def records(self, round: int, scores: list[int]) -> list[MemberRecord]:
        return [
            MemberRecord(m.address, sha(f"update {round} {m.address}"), 100 + i, score)
            for i, (m, score) in enumerate(zip(self.members, scores, strict=True))
        ]
