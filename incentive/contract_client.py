"""One account's calls and transactions against one deployed contract, and deployment.

The clients of the Consortium and EpochRewards contracts build on :class:`ContractClient`;
transactions go through :class:`~incentive.tx.TransactionSender` (signed locally, receipts
awaited, reverts named).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

from eth_account import Account

from contracts import load_artifact
from incentive.abi_codec import EventDecoder
from incentive.chain_stats import ChainCallStats
from incentive.retry import DEFAULT_RETRY, RetryPolicy
from incentive.tx import TransactionSender, TxOutcome


def deploy_contract(
    w3: Any,
    deployer_key: str | bytes,
    name: str,
    *args: Any,
    lock: AbstractContextManager[Any] | None = None,
) -> tuple[str, TxOutcome]:
    """Deploy the compiled contract ``name`` with constructor ``args``; its address and the
    deployment's outcome."""
    artifact = load_artifact(name)
    sender = TransactionSender(w3, deployer_key, lock)
    factory = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    outcome = sender.deploy(name, factory.constructor(*args))
    assert outcome.contract_address is not None  # set by every contract creation
    return outcome.contract_address, outcome


class ContractClient:
    """Calls and transactions of one account against the contract ``name`` at ``address``."""

    name: str = ""

    def __init__(
        self,
        w3: Any,
        address: str,
        private_key: str | bytes,
        lock: AbstractContextManager[Any] | None = None,
        retry: RetryPolicy = DEFAULT_RETRY,
    ) -> None:
        abi = load_artifact(self.name).abi
        self.contract = w3.eth.contract(address=address, abi=abi)
        self._sender = TransactionSender(
            w3, private_key, lock, decoder=EventDecoder({address: (self.name, abi)}), retry=retry
        )

    @property
    def account(self) -> str:
        """Checksummed address of the signing account."""
        return self._sender.address

    @property
    def chain_stats(self) -> ChainCallStats:
        """Latency of this client's chain requests and its transactions in flight."""
        return self._sender.stats

    @staticmethod
    def account_of(private_key: str | bytes) -> str:
        """The checksummed address of a private key."""
        return str(Account.from_key(private_key).address)

    def _call(self, function: str, *args: Any) -> Any:
        fn = getattr(self.contract.functions, function)(*args)
        return self._sender.call(self.name, function, fn)

    def _transact(self, function: str, *args: Any, value: int = 0) -> TxOutcome:
        fn = getattr(self.contract.functions, function)(*args)
        return self._sender.transact(self.name, function, fn, value=value)
