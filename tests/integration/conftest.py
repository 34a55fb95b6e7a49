"""Fixtures: a federation and a consortium on the real in-process EVM, deployed once, reset
per test."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from chain_kit import CLUSTERS, Federation, clients, start_federation
from consortium_kit import Consortium, start_consortium

from contracts.compile import compile_sources
from incentive.chain import EmbeddedChain
from incentive.deployment import Deployment
from incentive.errors import CompilerNotFound
from incentive.events import EventLog


@dataclass
class _Base:
    chain: EmbeddedChain
    deployment: Deployment


@pytest.fixture(scope="session")
def base_federation() -> _Base:
    """Four hospitals in two clusters (0, 0, 1, 1), registered, genesis set."""
    chain = EmbeddedChain(num_accounts=10)
    return _Base(chain, start_federation(chain).deployment)


@pytest.fixture
def chain(base_federation: _Base) -> Iterator[EmbeddedChain]:
    """The session chain, rolled back to its initial state after each test."""
    snapshot = base_federation.chain.snapshot()
    yield base_federation.chain
    base_federation.chain.revert(snapshot)


@pytest.fixture
def fed(base_federation: _Base, chain: EmbeddedChain) -> Federation:
    """The session federation, rolled back after each test."""
    return clients(chain, base_federation.deployment, CLUSTERS, EventLog())


@pytest.fixture(scope="module")
def consortium_base() -> Consortium:
    """A Consortium on its own chain, one per test module (see consortium_kit.CLUSTERS)."""
    return start_consortium(EmbeddedChain(num_accounts=16))


@pytest.fixture
def cons(consortium_base: Consortium) -> Iterator[Consortium]:
    """The module's consortium, rolled back to its initial state after each test."""
    snapshot = consortium_base.chain.snapshot()
    admitted, members = list(consortium_base.admitted), list(consortium_base.members)
    yield consortium_base
    consortium_base.chain.revert(snapshot)
    consortium_base.admitted[:], consortium_base.members[:] = admitted, members


@pytest.fixture
def unstarted(cons: Consortium) -> Consortium:
    """A second consortium on the same chain (gone after the test): two hospitals in
    cluster 0, no genesis yet."""
    return start_consortium(cons.chain, clusters=(0, 0), auditors=0, genesis=None)


@pytest.fixture(scope="session")
def attacker_artifact() -> dict[str, Any]:
    """The reentrant withdrawer of ``solidity/ReentrantWithdrawer.sol``, compiled."""
    source = Path(__file__).parent / "solidity" / "ReentrantWithdrawer.sol"
    try:
        artifacts = compile_sources({"tests/ReentrantWithdrawer.sol": source.read_text("utf-8")})
    except CompilerNotFound as exc:
        pytest.skip(f"the attack contract needs a Solidity compiler: {exc}")
    return artifacts["ReentrantWithdrawer"]
