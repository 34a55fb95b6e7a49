"""Calls and transactions ride out a chain that goes away and comes back (real anvil)."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from anvil_kit import AnvilFederation, count_events, deploy_on, running_anvil, wait_until
from eth_account import Account
from web3 import HTTPProvider, Web3

from incentive.clients import AdminClient
from incentive.deployment import Deployment
from incentive.errors import ChainUnavailable, ContractReverted
from incentive.retry import RetryPolicy
from incentive.tx import TxOutcome

pytestmark = pytest.mark.integration

JOIN_TIMEOUT = 30.0


class Background:
    """Runs one call in a thread and keeps its result or exception."""

    def __init__(self, fn: Any) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self.thread.start()

    def _run(self, fn: Any) -> None:
        try:
            self.result = fn()
        except BaseException as exc:
            self.error = exc

    def join(self) -> Any:
        self.thread.join(JOIN_TIMEOUT)
        assert not self.thread.is_alive(), f"call still running after {JOIN_TIMEOUT} s"
        if self.error is not None:
            raise self.error
        return self.result


def address_of(key: str) -> str:
    return str(Account.from_key(key).address)


def wait_for_state_dump(fed: AnvilFederation) -> None:
    """Wait until anvil's periodic dump holds every block mined so far."""
    latest = int(fed.w3.eth.block_number)

    def dumped() -> bool:
        try:
            return int(json.loads(fed.chain.state_file.read_text())["best_block_number"]) >= latest
        except (OSError, ValueError, KeyError):
            return False

    wait_until(dumped, timeout=5.0)


def test_a_transaction_started_while_the_chain_is_down_is_mined_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with running_anvil(tmp_path) as chain:
        fed = deploy_on(chain)
        hospital = address_of(fed.keys[1])
        chain.stop()

        started = time.monotonic()
        admitting = Background(lambda: fed.admin.admit(hospital, "Karolinska"))
        time.sleep(1.0)  # the scenario: the chain comes back about a second later
        chain.start()
        outcome: TxOutcome = admitting.join()
        elapsed = time.monotonic() - started

        assert elapsed >= 1.0
        assert [e.args["member"] for e in outcome.named("MemberAdmitted")] == [hospital]
        assert count_events(fed, "MemberAdmitted") == 1
        assert fed.admin.is_member(hospital)
        assert "unreachable" in caplog.text


def test_a_lost_reply_resends_the_same_bytes_and_the_transaction_counts_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with running_anvil(tmp_path) as chain:
        fed = deploy_on(chain)
        hospital = address_of(fed.keys[1])
        real_send = fed.w3.eth.send_raw_transaction
        sent: list[bytes] = []

        def reply_lost_once(raw: bytes) -> Any:
            sent.append(bytes(raw))
            tx_hash = real_send(raw)  # the node accepts (and automines) it...
            if len(sent) == 1:  # ...but the first reply never arrives
                raise requests.ConnectionError("connection reset by peer")
            return tx_hash

        monkeypatch.setattr(fed.w3.eth, "send_raw_transaction", reply_lost_once)
        outcome = fed.admin.admit(hospital, "Gemelli")

        assert len(sent) == 2 and sent[0] == sent[1]
        assert outcome.tx_hash == "0x" + Web3.keccak(sent[0]).hex().removeprefix("0x")
        assert count_events(fed, "MemberAdmitted") == 1


def test_a_transaction_the_restarted_chain_lost_is_sent_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with running_anvil(tmp_path) as chain:
        fed = deploy_on(chain)
        hospital = address_of(fed.keys[1])
        wait_for_state_dump(fed)
        fed.w3.provider.make_request("evm_setAutomine", [False])  # keep the next tx pending
        real_send = fed.w3.eth.send_raw_transaction
        sent: list[bytes] = []
        first_sent = threading.Event()

        def record(raw: bytes) -> Any:
            sent.append(bytes(raw))
            tx_hash = real_send(raw)
            first_sent.set()
            return tx_hash

        monkeypatch.setattr(fed.w3.eth, "send_raw_transaction", record)
        admitting = Background(lambda: fed.admin.admit(hospital, "Charite"))
        assert first_sent.wait(timeout=10.0)
        chain.kill()  # the pending transaction dies with the process
        time.sleep(1.0)  # the scenario: the chain comes back about a second later
        chain.start()  # automining again, from the last dump (before the transaction)
        admitting.join()

        assert len(sent) == 2 and sent[0] == sent[1]
        assert "lost transaction" in caplog.text
        assert count_events(fed, "MemberAdmitted") == 1
        assert fed.admin.is_member(hospital)


def test_a_revert_is_not_retried(tmp_path: Path) -> None:
    with running_anvil(tmp_path) as chain:
        fed = deploy_on(chain)
        not_admin = AdminClient(fed.w3, fed.deployment, fed.keys[1])

        started = time.monotonic()
        with pytest.raises(ContractReverted) as caught:
            not_admin.admit(address_of(fed.keys[2]), "Nobody")

        assert caught.value.error_name == "NotAdmin"
        assert time.monotonic() - started < 1.0


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_with_no_chain_at_all_calls_and_transactions_give_up_after_the_budget() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    w3 = Web3(HTTPProvider(url, exception_retry_configuration=None))
    key = "0x" + "42" * 32
    address = address_of(key)
    deployment = Deployment(31337, address, address, address, address, registry_block=0)
    budget = RetryPolicy(first_delay=0.1, max_delay=0.4, total=1.5)
    admin = AdminClient(w3, deployment, key, retry=budget)

    for attempt in (lambda: admin.is_member(address), lambda: admin.admit(address, "X")):
        started = time.monotonic()
        with pytest.raises(ChainUnavailable) as caught:
            attempt()
        elapsed = time.monotonic() - started

        assert 1.5 <= elapsed < 3.0
        assert url in str(caught.value) and "after retrying for 1.5 s" in str(caught.value)
