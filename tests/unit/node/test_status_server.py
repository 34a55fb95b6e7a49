"""The status server's HTTP handling and its errors, on real local sockets (the figures it
serves from a running node: tests/integration/test_node_status.py)."""

from __future__ import annotations

import dataclasses
import socket
from types import SimpleNamespace
from typing import Any

import pytest
import trio

from gossip.blobs import BlobStore
from medswarm.cli import run_reporting_errors
from node.config import MedswarmConfig, StatusSettings, config_from_dict
from node.data import SiteData
from node.errors import ConfigError, StatusError
from node.hospital import HospitalNode
from node.round_book import Standing
from node.simulate import initial_weights
from node.status_server import StatusServer


class FakeBook:
    def __init__(self) -> None:
        self.reads = 0

    async def standings(self) -> dict[str, Standing]:
        self.reads += 1
        return {"0xabc": Standing(contribution=5, reputation=9000)}


def fake_node() -> Any:
    """Only what the server touches outside the documents."""
    return SimpleNamespace(name="test-node", completed_round=0, book=FakeBook())


async def exchange(url: str, request: bytes) -> bytes:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with trio.fail_after(10):
        stream = await trio.open_tcp_stream(host, int(port))
        async with stream:
            await stream.send_all(request)
            data = b""
            while chunk := await stream.receive_some(65536):
                data += chunk
    return data


async def test_requests_it_cannot_answer_get_clear_status_codes() -> None:
    server = StatusServer(fake_node(), "127.0.0.1:0")
    async with trio.open_nursery() as nursery:
        url = await nursery.start(server.serve)

        missing = await exchange(url, b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n")
        posted = await exchange(url, b"POST /status HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
        garbage = await exchange(url, b"hello\r\n\r\n")
        head_only = await exchange(url, b"HEAD /nothing HTTP/1.1\r\n\r\n")
        nursery.cancel_scope.cancel()

    assert missing.startswith(b"HTTP/1.1 404 Not Found\r\n")
    assert missing.endswith(b"not found: try /health, /status, /metrics or /\n")
    assert b"Connection: close\r\n" in missing
    assert posted.startswith(b"HTTP/1.1 405 Method Not Allowed\r\n")
    assert garbage.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    head, _, body = head_only.partition(b"\r\n\r\n")
    length = len(b"not found: try /health, /status, /metrics or /\n")
    assert head.startswith(b"HTTP/1.1 404") and f"Content-Length: {length}".encode() in head
    assert body == b""


async def test_an_oversized_request_head_is_dropped_without_an_answer() -> None:
    server = StatusServer(fake_node(), "127.0.0.1:0")
    async with trio.open_nursery() as nursery:
        url = await nursery.start(server.serve)

        try:
            answer = await exchange(url, b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\n\r\n")
        except trio.BrokenResourceError:  # closed with the rest of the request unread: a reset
            answer = b""
        nursery.cancel_scope.cancel()

    assert answer == b""


async def test_standings_are_read_at_start_and_kept() -> None:
    node = fake_node()
    server = StatusServer(node, "127.0.0.1:0")
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        with trio.fail_after(5):
            while not server.standings:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()

    assert server.standings == {"0xabc": Standing(5, 9000)}
    assert node.book.reads == 1


async def test_a_port_in_use_names_the_port_and_what_to_change() -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        server = StatusServer(fake_node(), f"127.0.0.1:{port}")
        with pytest.raises(StatusError) as caught:
            await server.serve()
    finally:
        taken.close()

    assert str(caught.value) == (
        f"status.bind = '127.0.0.1:{port}': port {port} on 127.0.0.1 is already in use by "
        'another process; set [status] bind to a free port, or to "127.0.0.1:0" to take any '
        "free one"
    )


async def test_an_address_not_of_this_machine_is_refused() -> None:
    server = StatusServer(fake_node(), "192.0.2.1:9464")  # TEST-NET-1, never local

    with pytest.raises(StatusError, match=r"192\.0\.2\.1 is not an address of this machine"):
        await server.serve()


def test_the_status_table_is_off_unless_bind_is_set() -> None:
    assert config_from_dict({}).status == StatusSettings(bind="")
    assert config_from_dict({"status": {"bind": "[::1]:0"}}).status.bind == "[::1]:0"


@pytest.mark.parametrize(
    ("bind", "problem"),
    [
        ("9464", "give host:port"),
        ("127.0.0.1:http", "the port must be a number from 0 (any free port) to 65535"),
        ("127.0.0.1:70000", "the port must be a number from 0 (any free port) to 65535"),
        ("status.example:9464", "the host must be an IP address or localhost"),
    ],
)
def test_a_bad_bind_is_a_config_error_with_an_example(bind: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config_from_dict({"status": {"bind": bind}})

    assert str(caught.value) == (
        f'config: status.bind = {bind!r}: {problem}, e.g. "127.0.0.1:9464" (or '
        '"127.0.0.1:0" for any free port)'
    )


class StandInBook:
    """What a node needs of its book before its first round."""

    kind = "ledger"
    address = "0x00000000000000000000000000000000000000aa"

    def bind(self, node: Any) -> None:
        pass


def test_a_node_whose_status_port_is_taken_stops_with_the_error_on_the_command_line(
    heart_sites: tuple[SiteData, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    config = dataclasses.replace(MedswarmConfig(), status=StatusSettings(bind=f"127.0.0.1:{port}"))
    node = HospitalNode(
        config,
        heart_sites[0],
        StandInBook(),  # type: ignore[arg-type]
        "0x" + "11" * 32,
        BlobStore(),
        initial_weights(heart_sites, 0),
    )

    async def start() -> int:
        async with trio.open_nursery() as nursery:
            await node.start(nursery)
            nursery.cancel_scope.cancel()
        return 0

    try:
        code = run_reporting_errors(lambda: trio.run(start))
    finally:
        taken.close()

    assert code == 2
    assert capsys.readouterr().err == (
        f"error: status.bind = '127.0.0.1:{port}': port {port} on 127.0.0.1 is already in use "
        'by another process; set [status] bind to a free port, or to "127.0.0.1:0" to take any '
        "free one\n"
    )
