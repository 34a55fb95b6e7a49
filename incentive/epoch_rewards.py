"""Client of ``contracts/EpochRewards.sol`` (and the optional ``RewardToken``)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

from contracts import load_artifact
from incentive.abi_codec import EventDecoder
from incentive.tx import TransactionSender, TxOutcome

EPOCH_REWARDS = "EpochRewards"
REWARD_TOKEN = "RewardToken"
_NO_TOKEN = "0x" + "00" * 20


def deploy_contract(
    w3: Any,
    deployer_key: str | bytes,
    name: str,
    *args: Any,
    lock: AbstractContextManager[Any] | None = None,
) -> str:
    """Deploy the compiled contract ``name`` with constructor ``args``; its address."""
    artifact = load_artifact(name)
    sender = TransactionSender(w3, deployer_key, lock)
    factory = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    outcome = sender.deploy(name, factory.constructor(*args))
    assert outcome.contract_address is not None  # set by every contract creation
    return outcome.contract_address


def deploy_rewards(
    w3: Any,
    deployer_key: str | bytes,
    consortium: str,
    token: str | None = None,
    lock: AbstractContextManager[Any] | None = None,
) -> str:
    """Deploy an EpochRewards pool for ``consortium`` paying ETH, or ``token`` if given."""
    return deploy_contract(
        w3, deployer_key, EPOCH_REWARDS, consortium, token or _NO_TOKEN, lock=lock
    )


class RewardsClient:
    """Calls and transactions of one account against one EpochRewards pool."""

    def __init__(
        self,
        w3: Any,
        address: str,
        private_key: str | bytes,
        lock: AbstractContextManager[Any] | None = None,
    ) -> None:
        abi = load_artifact(EPOCH_REWARDS).abi
        self.contract = w3.eth.contract(address=address, abi=abi)
        self._sender = TransactionSender(
            w3, private_key, lock, decoder=EventDecoder({address: (EPOCH_REWARDS, abi)})
        )

    @property
    def account(self) -> str:
        return self._sender.address

    def _call(self, function: str, *args: Any) -> Any:
        fn = getattr(self.contract.functions, function)(*args)
        return self._sender.call(EPOCH_REWARDS, function, fn)

    def _transact(self, function: str, *args: Any, value: int = 0) -> TxOutcome:
        fn = getattr(self.contract.functions, function)(*args)
        return self._sender.transact(EPOCH_REWARDS, function, fn, value=value)

    def fund(self, amount: int, *, eth: bool = True) -> TxOutcome:
        """Fund with ``amount`` wei (``eth``) or token units approved beforehand."""
        return self._transact("fund", amount, value=amount if eth else 0)

    def distribute(self) -> TxOutcome:
        return self._transact("distribute")

    def withdraw(self) -> TxOutcome:
        return self._transact("withdraw")

    def credit(self, account: str) -> int:
        return int(self._call("credit", account))

    def unallocated(self) -> int:
        return int(self._call("unallocated"))

    def accounted(self, index: int) -> int:
        return int(self._call("accounted", index))

    def totals(self) -> dict[str, int]:
        """totalFunded, totalCredited, totalWithdrawn and epoch."""
        names = ("totalFunded", "totalCredited", "totalWithdrawn", "epoch")
        return {name: int(self._call(name)) for name in names}
