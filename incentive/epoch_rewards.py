"""Client of ``contracts/EpochRewards.sol`` (and the optional ``RewardToken``)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

from incentive.contract_client import ContractClient, deploy_contract
from incentive.tx import TxOutcome

EPOCH_REWARDS = "EpochRewards"
REWARD_TOKEN = "RewardToken"
_NO_TOKEN = "0x" + "00" * 20


def deploy_rewards(
    w3: Any,
    deployer_key: str | bytes,
    consortium: str,
    token: str | None = None,
    lock: AbstractContextManager[Any] | None = None,
) -> str:
    """Deploy an EpochRewards pool for ``consortium`` paying ETH, or ``token`` if given."""
    address, _ = deploy_contract(
        w3, deployer_key, EPOCH_REWARDS, consortium, token or _NO_TOKEN, lock=lock
    )
    return address


class RewardsClient(ContractClient):
    """Calls and transactions of one account against one EpochRewards pool."""

    name = EPOCH_REWARDS

    def fund(self, amount: int, *, eth: bool = True) -> TxOutcome:
        """Fund with ``amount`` wei (``eth``) or token units approved beforehand."""
        return self._transact("fund", amount, value=amount if eth else 0)

    def pay_for_model(self, model_hash: bytes, amount: int, *, eth: bool = True) -> TxOutcome:
        """Pay for using a model; the pot is paid out at once if hospitals accrued
        contribution (``EpochClosed`` in the outcome)."""
        return self._transact("payForModel", model_hash, amount, value=amount if eth else 0)

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
