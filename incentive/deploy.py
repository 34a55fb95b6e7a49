"""Deploying a federation: Registry, Ledger and RewardPool, wired together."""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from contracts import load_artifact
from incentive.deployment import LEDGER, REGISTRY, REWARD_POOL, Deployment, event_decoder
from incentive.events import EventLog
from incentive.retry import DEFAULT_RETRY, RetryPolicy
from incentive.tx import TransactionSender, TxOutcome

logger = logging.getLogger(__name__)


def deploy_federation(
    w3: Any,
    admin_key: str | bytes,
    lock: AbstractContextManager[Any] | None = None,
    event_log: EventLog | None = None,
    *,
    retry: RetryPolicy = DEFAULT_RETRY,
) -> Deployment:
    """Deploy the three contracts from ``admin_key`` and name Ledger and RewardPool in the
    Registry; the admin account becomes the consortium admin."""
    sender = TransactionSender(w3, admin_key, lock, event_log, retry=retry)

    def deploy(name: str, *args: Any) -> tuple[str, TxOutcome]:
        artifact = load_artifact(name)
        factory = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
        outcome = sender.deploy(name, factory.constructor(*args))
        assert outcome.contract_address is not None  # set by every contract creation
        logger.info("deployed %s at %s (gas %d)", name, outcome.contract_address, outcome.gas_used)
        return outcome.contract_address, outcome

    registry, registry_tx = deploy(REGISTRY)
    ledger, ledger_tx = deploy(LEDGER, registry)
    rewards, rewards_tx = deploy(REWARD_POOL, registry, ledger)
    with lock if lock is not None else nullcontext():
        chain_id = int(w3.eth.chain_id)
    deployment = Deployment(
        chain_id=chain_id,
        registry=registry,
        ledger=ledger,
        rewards=rewards,
        admin=sender.address,
        registry_block=registry_tx.block_number,
        ledger_block=ledger_tx.block_number,
        rewards_block=rewards_tx.block_number,
        registry_tx=registry_tx.tx_hash,
        ledger_tx=ledger_tx.tx_hash,
        rewards_tx=rewards_tx.tx_hash,
    )
    sender.decoder = event_decoder(deployment)
    registry_contract = w3.eth.contract(address=registry, abi=load_artifact(REGISTRY).abi)
    sender.transact(
        REGISTRY, "setContracts", registry_contract.functions.setContracts(ledger, rewards)
    )
    return deployment
