"""Signing, sending and confirming transactions for one account.

Transactions are signed locally (eth-account) and sent raw, so the same code runs against the
in-process chain, anvil or a consortium node; every transaction waits for its receipt. A
revert surfaces as :class:`ContractReverted` naming the contract's custom error. Each
:class:`TransactionSender` is one lane: its transactions go out one at a time, so nonces stay
ordered when several threads share a client.

While the node cannot be reached, every request is retried with backoff (``RetryPolicy``,
:mod:`incentive.retry`). A transaction is signed once and the same raw bytes are re-sent after
an outage, so it keeps its nonce and hash: it is mined at most once, and it is sent again if a
restarted node lost it.

A transaction can pass its pre-flight call and still revert once mined, when another
transaction changed the state in between (two aggregators racing to record the same cluster).
The sender then replays the call against the state after the transaction's block, so the
revert still names its custom error (``ClusterAlreadyRecorded``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

from eth_account import Account
from web3.exceptions import ContractLogicError, TransactionNotFound

from incentive.abi_codec import EventDecoder, revert_data
from incentive.chain_stats import ChainCallStats
from incentive.deployment import error_decoder
from incentive.errors import ChainError, ContractReverted, TransactionTimeout
from incentive.events import EventLog, EventRecord, decode_logs
from incentive.retry import DEFAULT_RETRY, RetryPolicy, call_with_retry, endpoint, is_unreachable

logger = logging.getLogger(__name__)

# Head-room over the estimate: the state can change between estimate and mining (an
# attestation estimated as an ordinary vote may be mined as the one that finalizes the round,
# which costs about twice as much). Unused gas is not charged.
GAS_MARGIN = 1.5
GAS_EXTRA = 80_000
DEFAULT_TIP_WEI = 10**9
# On the in-process chain gas estimation runs the EVM a dozen times (a binary search in
# Python); a single eth_call catches reverts just as well, and unused gas costs nothing there.
EMBEDDED_GAS_LIMIT = 10_000_000
# How nodes answer a raw transaction they already hold or have mined (geth, anvil, Besu,
# Nethermind), and one whose nonce is used up.
_ALREADY_KNOWN = ("already known", "already imported", "known transaction", "alreadyknown")
_NONCE_USED = ("nonce too low", "nonce_too_low", "oldnonce")


@dataclass(frozen=True)
class TxOutcome:
    """A mined, successful transaction and the federation events it emitted."""

    tx_hash: str
    block_number: int
    gas_used: int
    events: tuple[EventRecord, ...]
    contract_address: str | None = None

    def named(self, event: str) -> list[EventRecord]:
        """The emitted events called ``event``."""
        return [e for e in self.events if e.event == event]


def _with_margin(estimate: Any) -> int:
    return int(int(estimate) * GAS_MARGIN) + GAS_EXTRA


def _is_embedded(w3: Any) -> bool:
    from web3 import EthereumTesterProvider

    return isinstance(getattr(w3, "provider", None), EthereumTesterProvider)


def _is_revert(exc: BaseException) -> bool:
    if isinstance(exc, ContractLogicError):
        return True
    # eth-tester raises its own TransactionFailed("execution reverted: ...")
    return type(exc).__name__ == "TransactionFailed" or "revert" in str(exc).lower()


def reverted(contract: str, function: str, exc: BaseException) -> ChainError:
    """Translate an exception from a call or gas estimate into the project's error type."""
    if not _is_revert(exc):
        return ChainError(f"{contract}.{function} failed: {exc}")
    data = revert_data(exc)
    decoded = error_decoder(contract).decode(data) if data else None
    if decoded is not None:
        return ContractReverted(contract, function, decoded.name, decoded.args)
    return ContractReverted(contract, function, None, detail=str(exc))


class TransactionSender:
    """Sends one account's transactions; holds ``lock`` around every chain request.

    ``stats`` times its requests and counts its transactions in flight
    (:mod:`incentive.chain_stats`).
    """

    def __init__(
        self,
        w3: Any,
        private_key: str | bytes,
        lock: AbstractContextManager[Any] | None = None,
        event_log: EventLog | None = None,
        decoder: EventDecoder | None = None,
        *,
        receipt_timeout: float = 120.0,
        retry: RetryPolicy = DEFAULT_RETRY,
    ) -> None:
        self.w3 = w3
        self.account = Account.from_key(private_key)
        self.event_log = event_log
        self.decoder = decoder
        self.receipt_timeout = receipt_timeout
        self.retry = retry
        self._chain_lock: AbstractContextManager[Any] = lock if lock is not None else nullcontext()
        self._lane = threading.Lock()
        self._chain_id: int | None = None
        self._embedded = _is_embedded(w3)
        self.stats = ChainCallStats()

    @property
    def address(self) -> str:
        """Checksummed address of the signing account."""
        return str(self.account.address)

    def call(self, contract: str, function: str, fn: Any) -> Any:
        """Run a view function; reverts raise ContractReverted."""

        def attempt() -> Any:
            with self._chain_lock:
                return fn.call({"from": self.address})

        try:
            with self.stats.timed("call"):
                return self._retrying(attempt, f"{contract}.{function}")
        except ChainError:
            raise
        except Exception as exc:
            raise reverted(contract, function, exc) from exc

    def transact(self, contract: str, function: str, fn: Any, *, value: int = 0) -> TxOutcome:
        """Sign, send and confirm a contract function call."""
        if self._embedded:

            def gas_limit(params: dict[str, Any]) -> int:
                fn.call(params)  # raises on revert
                return EMBEDDED_GAS_LIMIT

        else:

            def gas_limit(params: dict[str, Any]) -> int:
                return _with_margin(fn.estimate_gas(params))

        def replay(block: int) -> None:
            fn.call({"from": self.address, "value": value}, block_identifier=block)

        return self._send(contract, function, gas_limit, fn.build_transaction, value, replay)

    def deploy(self, contract: str, constructor: Any) -> TxOutcome:
        """Deploy a contract; the outcome's ``contract_address`` is set."""

        def gas_limit(params: dict[str, Any]) -> int:
            return _with_margin(constructor.estimate_gas(params))

        return self._send(contract, "constructor", gas_limit, constructor.build_transaction, 0)

    def _send(
        self,
        contract: str,
        function: str,
        gas_limit: Callable[[dict[str, Any]], int],
        build: Callable[[dict[str, Any]], Any],
        value: int,
        replay: Callable[[int], None] | None = None,
    ) -> TxOutcome:
        what = f"{contract}.{function}"
        with self._lane, self.stats.timed("transaction"), self.stats.in_flight():
            signed = self._retrying(
                lambda: self._sign(contract, function, gas_limit, build, value), what
            )
            self._retrying(lambda: self._submit(signed, what), what)
            receipt = self._wait_for_receipt(signed, what)
            tx_hash = signed.hash
        hex_hash = _hex(tx_hash)
        if int(receipt["status"]) != 1:
            raise self._failure(contract, function, hex_hash, int(receipt["blockNumber"]), replay)
        events = decode_logs(self.decoder, receipt["logs"]) if self.decoder is not None else []
        if self.event_log is not None and events:
            self.event_log.extend(events)
        created = receipt.get("contractAddress")
        logger.debug(
            "%s.%s mined in block %s, gas %s",
            contract,
            function,
            receipt["blockNumber"],
            receipt["gasUsed"],
        )
        return TxOutcome(
            tx_hash=hex_hash,
            block_number=int(receipt["blockNumber"]),
            gas_used=int(receipt["gasUsed"]),
            events=tuple(events),
            contract_address=str(created) if created else None,
        )

    def read(self, fn: Callable[[], Any], what: str) -> Any:
        """Run a read-only chain request ``fn`` under the lock, retried while the chain is
        unreachable (then :class:`ChainError`)."""

        def attempt() -> Any:
            with self._chain_lock:
                return fn()

        with self.stats.timed("read"):
            return self._retrying(attempt, what)

    def _retrying(self, fn: Callable[[], Any], what: str) -> Any:
        return call_with_retry(fn, self.retry, endpoint(self.w3), what)

    def _sign(
        self,
        contract: str,
        function: str,
        gas_limit: Callable[[dict[str, Any]], int],
        build: Callable[[dict[str, Any]], Any],
        value: int,
    ) -> Any:
        """Estimate gas, pick fees and the nonce, and sign; nothing is sent yet."""
        with self._chain_lock:
            params: dict[str, Any] = {"from": self.address, "value": value}
            try:
                gas = gas_limit(params)
            except Exception as exc:
                if is_unreachable(exc):
                    raise
                raise reverted(contract, function, exc) from exc
            params.update(self._fee_fields())
            params.update(
                gas=gas,
                nonce=int(self.w3.eth.get_transaction_count(self.address, "pending")),
                chainId=self._cached_chain_id(),
            )
            try:
                return self.account.sign_transaction(build(params))
            except Exception as exc:
                if is_unreachable(exc):
                    raise
                raise ChainError(f"{contract}.{function}: signing failed: {exc}") from exc

    def _submit(self, signed: Any, what: str) -> None:
        """Send the signed bytes; a node that already has them (or mined them) is fine."""
        try:
            with self._chain_lock:
                self.w3.eth.send_raw_transaction(signed.raw_transaction)
        except Exception as exc:
            if is_unreachable(exc):
                raise
            message = str(exc).lower()
            if any(m in message for m in _ALREADY_KNOWN):
                logger.debug("%s: node already holds transaction %s", what, _hex(signed.hash))
                return
            if any(m in message for m in _NONCE_USED):
                if self._receipt(signed) is not None:
                    logger.debug("%s: transaction %s already mined", what, _hex(signed.hash))
                    return
                raise ChainError(
                    f"{what}: transaction {_hex(signed.hash)} can never be mined: its nonce is "
                    f"used by another transaction from {self.address}; sign with each key in "
                    "one client only"
                ) from exc
            raise ChainError(f"{what}: sending failed: {exc}") from exc

    def _receipt(self, signed: Any) -> Any:
        try:
            with self._chain_lock:
                return self.w3.eth.get_transaction_receipt(signed.hash)
        except TransactionNotFound:
            return None

    def _poll(self, signed: Any, what: str) -> Any:
        """The receipt, or None; re-sends the transaction if the node no longer knows it."""
        receipt = self._receipt(signed)
        if receipt is not None or self._embedded:
            return receipt
        try:
            with self._chain_lock:
                self.w3.eth.get_transaction(signed.hash)
            return None  # pending
        except TransactionNotFound:
            pass
        # Mined in between, or lost (a node restarted from older state): send it again.
        receipt = self._receipt(signed)
        if receipt is None:
            logger.warning("%s: node lost transaction %s; re-sending it", what, _hex(signed.hash))
            self._submit(signed, what)
        return receipt

    def _failure(
        self,
        contract: str,
        function: str,
        hex_hash: str,
        block: int,
        replay: Callable[[int], None] | None,
    ) -> ContractReverted:
        """The error for a mined transaction that failed, named by replaying it if possible."""
        if replay is not None:
            try:
                with self._chain_lock:
                    replay(block)
            except Exception as exc:
                error = reverted(contract, function, exc)
                if isinstance(error, ContractReverted) and error.error_name is not None:
                    logger.debug("%s failed in block %d: %s", hex_hash, block, error)
                    return error
        return ContractReverted(
            contract,
            function,
            None,
            detail=(
                f"transaction {hex_hash} failed in block {block} "
                "(out of gas, or the state changed after the gas estimate)"
            ),
        )

    def _cached_chain_id(self) -> int:
        if self._chain_id is None:
            self._chain_id = int(self.w3.eth.chain_id)
        return self._chain_id

    def _fee_fields(self) -> dict[str, int]:
        base_fee = self.w3.eth.get_block("latest").get("baseFeePerGas")
        if base_fee is None:
            return {"gasPrice": int(self.w3.eth.gas_price)}
        try:
            tip = int(self.w3.eth.max_priority_fee)
        except Exception:  # nodes without eth_maxPriorityFeePerGas
            tip = DEFAULT_TIP_WEI
        return {"maxPriorityFeePerGas": tip, "maxFeePerGas": 2 * int(base_fee) + tip}

    def _wait_for_receipt(self, signed: Any, what: str) -> Any:
        deadline = time.monotonic() + self.receipt_timeout
        delay = 0.01
        while True:
            receipt = self._retrying(lambda: self._poll(signed, what), what)
            if receipt is not None:
                return receipt
            if time.monotonic() >= deadline:
                raise TransactionTimeout(
                    f"transaction {_hex(signed.hash)} not mined within "
                    f"{self.receipt_timeout:.0f} s; is the chain producing blocks?"
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.5)


def _hex(tx_hash: Any) -> str:
    return "0x" + bytes(tx_hash).hex()
