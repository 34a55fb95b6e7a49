"""Fixtures: a federation on the real in-process EVM, deployed once, reset per test."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from chain_kit import HOSPITALS, Federation

from incentive.chain import EmbeddedChain
from incentive.clients import AdminClient, MemberClient
from incentive.deploy import deploy_federation
from incentive.deployment import Deployment
from incentive.events import EventLog


@dataclass
class _Base:
    chain: EmbeddedChain
    deployment: Deployment


@pytest.fixture(scope="session")
def base_federation() -> _Base:
    chain = EmbeddedChain(num_accounts=8)
    keys = chain.private_keys
    deployment = deploy_federation(chain.w3, keys[0], chain.lock)
    admin = AdminClient(chain.w3, deployment, keys[0], chain.lock)
    for key, name in zip(keys[1:5], HOSPITALS, strict=True):
        member = MemberClient(chain.w3, deployment, key, chain.lock)
        admin.admit(member.address, name)
        member.register(f"12D3KooW{name.replace(' ', '')}", [f"/ip4/127.0.0.1/tcp/{4000}"])
    return _Base(chain, deployment)


@pytest.fixture
def fed(base_federation: _Base) -> Iterator[Federation]:
    """The session federation, rolled back to its initial state after each test."""
    chain, deployment = base_federation.chain, base_federation.deployment
    snapshot = chain.snapshot()
    log = EventLog()
    keys = chain.private_keys
    yield Federation(
        chain=chain,
        deployment=deployment,
        log=log,
        admin=AdminClient(chain.w3, deployment, keys[0], chain.lock, log),
        members=[MemberClient(chain.w3, deployment, k, chain.lock, log) for k in keys[1:5]],
        outsider=MemberClient(chain.w3, deployment, keys[5], chain.lock, log),
    )
    chain.revert(snapshot)
