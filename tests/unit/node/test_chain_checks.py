"""The node's checks of its chain that need no chain: the clock against the latest block,
the chain settings, and reading a proof-of-authority block through a stand-in JSON-RPC
server (the checks against a real chain: tests/integration/test_external_chain.py)."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from incentive.chain import connect_rpc
from node.chain_checks import check_clock
from node.config import config_from_dict
from node.errors import ChainSetupError, ConfigError

NOW = 1_800_000_000.0  # 2027-01-15 08:00:00 UTC
QBFT_EXTRA_DATA = "0x" + "f8" + "ab" * 96  # 97 bytes, as Besu's QBFT headers carry


def test_a_block_stamped_past_the_tolerance_ahead_of_this_clock_stops_the_node() -> None:
    with pytest.raises(ChainSetupError) as caught:
        check_clock({"number": 7, "timestamp": int(NOW) + 61}, 60.0, NOW)

    assert str(caught.value) == (
        "this machine's clock is 61 s behind the chain's: its latest block 7 is stamped "
        "2027-01-15 08:01:01 UTC, this clock says 2027-01-15 08:00:00 UTC (chain.max_clock_skew "
        "= 60 s); set the clock right (turn on NTP: `timedatectl set-ntp true`, or chrony) and "
        "start the node again"
    )


def test_an_old_latest_block_is_only_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="node.chain_checks")

    check_clock({"number": 7, "timestamp": int(NOW) + 60}, 60.0, NOW)  # at the tolerance
    check_clock({"number": 3, "timestamp": int(NOW) - 3600}, 60.0, NOW)  # idle, or clock ahead

    assert len(caplog.records) == 1
    assert "latest block 3 is stamped 2027-01-15 07:00:00 UTC, 3600 s before" in caplog.text


@pytest.mark.parametrize(
    ("chain", "message"),
    [
        ({"chain_id": -1}, "chain.chain_id = -1: give the chain's id, or 0"),
        ({"max_clock_skew": -5}, "chain.max_clock_skew = -5.0: give seconds >= 0 (0: no check)"),
        ({"rpc_timeout": 0}, "chain.rpc_timeout = 0.0: give seconds above 0"),
    ],
)
def test_chain_settings_out_of_range_are_config_errors(chain: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        config_from_dict({"chain": chain})


class StandInQbftNode(BaseHTTPRequestHandler):
    """Answers eth_chainId and eth_getBlockByNumber like a Besu QBFT node."""

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        results = {
            "eth_chainId": "0x539",
            "eth_getBlockByNumber": {
                "number": "0x10",
                "hash": "0x" + "11" * 32,
                "parentHash": "0x" + "22" * 32,
                "timestamp": hex(int(NOW)),
                "extraData": QBFT_EXTRA_DATA,
                "miner": "0x" + "33" * 20,
                "gasLimit": "0x1c9c380",
                "gasUsed": "0x0",
                "transactions": [],
            },
        }
        body = json.dumps(
            {"jsonrpc": "2.0", "id": request["id"], "result": results[request["method"]]}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def qbft_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), StandInQbftNode)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_a_proof_of_authority_block_is_read_with_its_long_extra_data(qbft_url: str) -> None:
    w3 = connect_rpc(qbft_url, chain_id=1337, timeout=5.0)

    block = w3.eth.get_block("latest")

    assert block["timestamp"] == int(NOW)
    assert block["proofOfAuthorityData"].hex() == QBFT_EXTRA_DATA[2:]
