"""Helpers for tests that run a federation on a real anvil process."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from incentive.chain import connect_rpc
from incentive.clients import AdminClient
from incentive.deploy import deploy_federation
from incentive.deployment import Deployment
from incentive.events import read_events_from_chain
from testnet.anvil import ANVIL_CHAIN_ID, AnvilChain, AnvilConfig


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.02) -> None:
    """Poll ``predicate`` until it is true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (our children are reaped, so no zombies)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@contextmanager
def running_anvil(run_dir: Path, **options: Any) -> Iterator[AnvilChain]:
    """An anvil started in ``run_dir``; stopped afterwards even if the test fails."""
    chain = AnvilChain(AnvilConfig(run_dir, **options))
    try:
        chain.start()
        yield chain
    finally:
        chain.stop()


@dataclass
class AnvilFederation:
    chain: AnvilChain
    w3: Any
    deployment: Deployment
    admin: AdminClient
    keys: list[str]


def deploy_on(chain: AnvilChain, accounts: int = 4) -> AnvilFederation:
    """Deploy the federation on ``chain`` with its first account as admin."""
    keys = chain.private_keys(accounts)
    w3 = connect_rpc(chain.url, chain_id=ANVIL_CHAIN_ID, timeout=5.0)
    deployment = deploy_federation(w3, keys[0])
    return AnvilFederation(chain, w3, deployment, AdminClient(w3, deployment, keys[0]), keys)


def count_events(fed: AnvilFederation, name: str) -> int:
    """How many ``name`` events the federation's contracts emitted, read from the chain."""
    return sum(1 for e in read_events_from_chain(fed.w3, fed.deployment) if e.event == name)
