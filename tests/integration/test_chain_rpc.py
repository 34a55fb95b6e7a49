"""connect_rpc against a port where nothing listens."""

from __future__ import annotations

import socket
import time

import pytest

from incentive.chain import connect_rpc
from incentive.errors import ChainUnavailable
from medswarm.cli import main

pytestmark = pytest.mark.integration


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_connect_rpc_to_a_closed_port_fails_fast_with_advice() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    started = time.monotonic()

    with pytest.raises(ChainUnavailable) as caught:
        connect_rpc(url, timeout=2.0)

    assert time.monotonic() - started < 5.0
    assert isinstance(caught.value, ConnectionError)
    message = str(caught.value)
    assert url in message
    assert "anvil" in message and "point medswarm at a running node" in message


def test_connect_rpc_rejects_other_schemes() -> None:
    with pytest.raises(ChainUnavailable, match="only http"):
        connect_rpc("ws://127.0.0.1:8546")


def test_audit_of_an_unreachable_chain_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    registry = "0x" + "11" * 20

    code = main(["audit", "--rpc", url, "--registry", registry, "--rpc-timeout", "2"])

    assert code == 2
    assert f"error: no Ethereum JSON-RPC node answers at {url}" in capsys.readouterr().err
