"""Set up a federation whose rounds the Consortium contract keeps (``federation.ledger =
"consortium"``): deploy, set the genesis, fund the reward pool; record it for the auditor.

The launcher's admin account is the consortium's single governor (threshold 1), so each
governance action runs as soon as it is proposed. A real consortium has several admins and a
higher threshold (``medswarm consortium deploy``); nothing in the round loop depends on it.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from incentive.consortium import ConsortiumClient, deploy_consortium
from incentive.consortium_audit import read_events
from incentive.deployment import ConsortiumDeployment
from incentive.epoch_rewards import RewardsClient, deploy_rewards
from incentive.events import EventLog


def deploy_consortium_federation(
    w3: Any,
    admin_key: str,
    genesis: bytes,
    pool_wei: int,
    lock: AbstractContextManager[Any] | None = None,
) -> ConsortiumDeployment:
    """Deploy a Consortium governed by ``admin_key``'s account alone, set ``genesis``, and
    deploy its ETH EpochRewards pool funded with ``pool_wei`` (hospitals are admitted later,
    :meth:`ConsortiumClient.propose_admit`)."""
    admin_account = ConsortiumClient.account_of(admin_key)
    address, _ = deploy_consortium(w3, admin_key, [admin_account], 1, lock=lock)
    ConsortiumClient(w3, address, admin_key, lock).propose_genesis(genesis)
    rewards = deploy_rewards(w3, admin_key, address, lock=lock)
    if pool_wei:
        RewardsClient(w3, rewards, admin_key, lock).fund(pool_wei)
    return ConsortiumDeployment(int(w3.eth.chain_id), address, rewards)


def write_consortium_record(out_dir: Path, w3: Any, deployment: ConsortiumDeployment) -> Path:
    """Write ``chain/deployment.json`` and every event to ``chain/events.jsonl`` (what
    ``medswarm audit consortium --events`` reads); the events file's path."""
    chain_dir = out_dir / "chain"
    chain_dir.mkdir(parents=True, exist_ok=True)
    (chain_dir / "deployment.json").write_text(deployment.to_json())
    events = read_events(w3, deployment.consortium, deployment.rewards)
    return EventLog(events).write_jsonl(chain_dir / "events.jsonl")
