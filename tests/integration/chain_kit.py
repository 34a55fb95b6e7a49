"""Helpers for tests that run a federation on the real in-process EVM."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import pytest

from incentive.candidates import aggregator_candidates
from incentive.chain import EmbeddedChain
from incentive.clients import AdminClient, MemberClient
from incentive.deploy import deploy_federation
from incentive.deployment import Deployment
from incentive.errors import ContractReverted
from incentive.events import EventLog
from incentive.records import MemberRecord
from incentive.tx import TxOutcome

HOSPITALS = ["St. Anna", "Charite", "Karolinska", "Gemelli"]
CLUSTERS = [0, 0, 1, 1]


def sha(text: str) -> str:
    """A bare-hex SHA-256, the node's hash form."""
    return hashlib.sha256(text.encode()).hexdigest()


GENESIS = sha("initial model")


@dataclass
class Federation:
    """Clients of one deployed federation; members in admission order with their clusters."""

    chain: EmbeddedChain
    deployment: Deployment
    log: EventLog
    admin: AdminClient
    members: list[MemberClient]
    clusters: list[int]
    outsider: MemberClient  # a funded account that was never admitted

    def in_cluster(self, cluster: int) -> list[MemberClient]:
        return [m for m, c in zip(self.members, self.clusters, strict=True) if c == cluster]

    def candidates(self, round: int, cluster: int) -> list[MemberClient]:
        """The failover order, worked out in Python rather than asked of the contract."""
        by_address = {m.address: m for m in self.in_cluster(cluster)}
        return [by_address[a] for a in aggregator_candidates(round, cluster, by_address)]

    def records(
        self, round: int, scores: Sequence[int], cluster: int | None = None
    ) -> list[MemberRecord]:
        """One record per member (``scores`` in admission order), optionally of one cluster."""
        return [
            MemberRecord(m.address, sha(f"update {round} {m.address}"), 100 + i, score)
            for i, (m, c, score) in enumerate(zip(self.members, self.clusters, scores, strict=True))
            if cluster is None or c == cluster
        ]

    def record_clusters(
        self, round: int, scores: Sequence[int], previous: str
    ) -> dict[int, TxOutcome]:
        """Each cluster's first candidate records its members' records."""
        return {
            c: self.candidates(round, c)[0].record_cluster(
                round, c, sha(f"aggregate {round} {c}"), previous, self.records(round, scores, c)
            )
            for c in sorted(set(self.clusters))
        }

    def finish_round(self, round: int, scores: Sequence[int], previous: str) -> str:
        """Record every cluster and have a quorum attest; returns the final hash."""
        self.record_clusters(round, scores, previous)
        global_hash = sha(f"global {round}")
        quorum = (2 * len(self.members) + 2) // 3
        for member in self.members[:quorum]:
            member.attest(round, global_hash)
        return global_hash


def start_federation(
    chain: EmbeddedChain,
    clusters: Sequence[int] = CLUSTERS,
    genesis: str | None = GENESIS,
    log: EventLog | None = None,
) -> Federation:
    """Deploy from key 0, admit keys 1..n into ``clusters``, register them, set genesis."""
    log = log if log is not None else EventLog()
    keys = chain.private_keys
    deployment = deploy_federation(chain.w3, keys[0], chain.lock, log)
    fed = clients(chain, deployment, clusters, log)
    for member, cluster, name in zip(fed.members, clusters, _names(len(clusters)), strict=True):
        fed.admin.admit(member.address, name, cluster)
        member.register(f"12D3KooW{name.replace(' ', '')}", ["/ip4/127.0.0.1/tcp/4000"])
    if genesis is not None:
        fed.admin.set_genesis(genesis)
    return fed


def clients(
    chain: EmbeddedChain, deployment: Deployment, clusters: Sequence[int], log: EventLog
) -> Federation:
    """Clients for admin (key 0), members (keys 1..n) and an outsider (key n+1)."""
    keys = chain.private_keys
    n = len(clusters)
    return Federation(
        chain=chain,
        deployment=deployment,
        log=log,
        admin=AdminClient(chain.w3, deployment, keys[0], chain.lock, log),
        members=[MemberClient(chain.w3, deployment, k, chain.lock, log) for k in keys[1 : n + 1]],
        clusters=list(clusters),
        outsider=MemberClient(chain.w3, deployment, keys[n + 1], chain.lock, log),
    )


def _names(n: int) -> list[str]:
    return HOSPITALS[:n] + [f"Hospital {i}" for i in range(len(HOSPITALS), n)]


def reverted_with(error: str, call: object, *args: object) -> ContractReverted:
    """Run ``call(*args)`` and check it reverts with the custom error ``error``."""
    assert callable(call)
    with pytest.raises(ContractReverted) as caught:
        call(*args)
    assert caught.value.error_name == error, str(caught.value)
    return caught.value
