"""The HTTP responder the node's status server and the auditors' dashboard share, on real
local sockets."""

from __future__ import annotations

import functools

import pytest
import trio

from medswarm.http_responder import (
    HttpResponder,
    Request,
    Response,
    listeners_url,
    split_host_port,
)

SEEN: list[Request] = []


def respond(request: Request) -> Response:
    SEEN.append(request)
    if request.path == "/broken":
        raise RuntimeError("a page that fails")
    return Response(200, "text/plain", b"hello\n", (("X-Extra", "yes"),))


async def exchange(request: bytes) -> bytes:
    responder = HttpResponder(respond, "test")
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, responder.answer, 0, host="127.0.0.1")
        )
        host, port = listeners_url(listeners).removeprefix("http://").rsplit(":", 1)
        with trio.fail_after(10):
            stream = await trio.open_tcp_stream(host, int(port))
            async with stream:
                await stream.send_all(request)
                data = b""
                while chunk := await stream.receive_some(65536):
                    data += chunk
        nursery.cancel_scope.cancel()
    return data


async def test_the_path_is_decoded_and_the_query_parsed() -> None:
    SEEN.clear()

    answer = await exchange(b"GET /model/a%20b?hash=0xAB&x=1 HTTP/1.1\r\n\r\n")

    assert SEEN[0] == Request("GET", "/model/a b", {"hash": "0xAB", "x": "1"})
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and b"X-Extra: yes\r\n" in answer
    assert answer.endswith(b"\r\n\r\nhello\n")


async def test_a_failing_page_is_a_500_and_head_gets_no_body(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broken = await exchange(b"GET /broken HTTP/1.1\r\n\r\n")
    head = await exchange(b"HEAD / HTTP/1.1\r\n\r\n")

    assert broken.startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
    assert broken.endswith(b"internal error: see the server's log\n")
    assert "test: request for /broken failed" in caplog.text
    assert b"Content-Length: 6\r\n" in head and head.endswith(b"\r\n\r\n")


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("127.0.0.1:9465", ("127.0.0.1", 9465)),
        ("[::1]:0", ("::1", 0)),
        ("localhost:1", ("localhost", 1)),
    ],
)
def test_host_and_port_are_split(value: str, parsed: tuple[str, int]) -> None:
    assert split_host_port(value) == parsed


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("9465", "give host:port"),
        ("127.0.0.1:99999", "the port must be a number from 0 (any free port) to 65535"),
        ("example.org:80", "the host must be an IP address or localhost"),
    ],
)
def test_a_bad_address_says_what_is_wrong(value: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        split_host_port(value)
