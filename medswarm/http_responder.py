"""A small read-only HTTP/1.1 responder on trio, shared by the node's status server
(node/status_server.py) and the auditors' dashboard (incentive/audit_server.py).

Each connection carries one request (``Connection: close``). A request head larger than
8 KiB or slower than 5 s is dropped, an answer not taken by the client within 10 s is
abandoned, and a connection beyond ``max_connections`` open at once is closed unanswered.
``GET`` and ``HEAD`` are answered (``HEAD`` without the body); other methods get 405, a
garbled request line 400. The caller's ``respond`` function maps a :class:`Request` to a
:class:`Response` and must not block: it runs in the trio thread.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote

import trio

log = logging.getLogger(__name__)

REQUEST_HEAD_LIMIT = 8192
REQUEST_SECONDS = 5.0
ANSWER_SECONDS = 10.0
MAX_CONNECTIONS = 32
JSON_TYPE = "application/json"
HTML_TYPE = "text/html; charset=utf-8"
TEXT_TYPE = "text/plain"
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}
_REASONS.update({500: "Internal Server Error", 503: "Service Unavailable"})


@dataclass(frozen=True)
class Request:
    """A request's method, percent-decoded path and query parameters."""

    method: str
    path: str
    query: dict[str, str]


@dataclass(frozen=True)
class Response:
    """A status code, content type, body and any extra headers (name, value)."""

    status: int
    content_type: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


def json_response(document: Any, status: int = 200) -> Response:
    """``document`` as indented JSON with sorted keys."""
    body = (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()
    return Response(status, JSON_TYPE, body)


def split_host_port(value: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` too) as (host, port); ValueError saying what is wrong."""
    host, colon, port_text = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not colon or not host:
        raise ValueError("give host:port")
    if not (port_text.isascii() and port_text.isdigit() and len(port_text) <= 5) or not (
        0 <= int(port_text) <= 65535
    ):
        raise ValueError("the port must be a number from 0 (any free port) to 65535")
    if host != "localhost":
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ValueError("the host must be an IP address or localhost") from None
    return host, int(port_text)


def listen_problem(where: str, change: str, what: str, host: str, port: int, exc: OSError) -> str:
    """Why listening on ``host:port`` failed and what to do: ``where`` names the setting as
    given, ``change`` how to set it (e.g. "set [status] bind"), ``what`` the server."""
    if exc.errno == errno.EADDRINUSE:
        return (
            f"{where}: port {port} on {host} is already in use by another process; {change} "
            f'to a free port, or to "{host}:0" to take any free one'
        )
    if exc.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
        return (
            f"{where}: {host} is not an address of this machine; bind to 127.0.0.1 (the "
            f"{what} has no authentication: keep it local)"
        )
    if exc.errno == errno.EACCES:
        return f"{where}: no permission to listen on port {port}; use a port above 1023"
    return f"{where}: cannot listen on {host}:{port}: {exc}"


def listeners_url(listeners: Sequence[trio.SocketListener]) -> str:
    """``http://host:port`` of the first listener (the port it really got)."""
    host, port = listeners[0].socket.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


class HttpResponder:
    """Answers connections with ``respond``; pass :meth:`answer` to ``trio.serve_listeners``."""

    def __init__(
        self,
        respond: Callable[[Request], Response],
        name: str,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        self.respond = respond
        self.name = name  # in log lines
        self.max_connections = max_connections
        self._connections = trio.CapacityLimiter(max_connections)

    async def answer(self, stream: trio.SocketStream) -> None:
        """Read one request from ``stream``, send the answer, close it."""
        if self._connections.statistics().borrowed_tokens >= self.max_connections:
            await stream.aclose()  # a local client hammering the port gets nothing more
            return
        try:
            async with self._connections, stream:
                head = await _read_head(stream)
                if head is None:
                    return
                with trio.move_on_after(ANSWER_SECONDS):
                    await stream.send_all(self._answer_bytes(head))
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass  # the client went away

    def _answer_bytes(self, head: bytes) -> bytes:
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = request_line.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            return _encode(Response(400, TEXT_TYPE, b"bad request\n"), True)
        method, target = parts[0], parts[1]
        if method not in ("GET", "HEAD"):
            return _encode(Response(405, TEXT_TYPE, b"only GET and HEAD\n"), True)
        path, _, query = target.partition("?")
        request = Request(method, unquote(path), dict(parse_qsl(query)))
        try:
            response = self.respond(request)
        except Exception:  # a page must never take the server down
            log.exception("%s: request for %s failed", self.name, path)
            response = Response(500, TEXT_TYPE, b"internal error: see the server's log\n")
        return _encode(response, method == "GET")


async def _read_head(stream: trio.SocketStream) -> bytes | None:
    """The request head up to its blank line; None if it is too large, slow or cut off."""
    head = b""
    with trio.move_on_after(REQUEST_SECONDS):
        while b"\r\n\r\n" not in head and len(head) <= REQUEST_HEAD_LIMIT:
            chunk = await stream.receive_some(REQUEST_HEAD_LIMIT)
            if not chunk:
                return None
            head += chunk
        return head if b"\r\n\r\n" in head else None
    return None


def _encode(response: Response, send_body: bool) -> bytes:
    extra = "".join(f"{name}: {value}\r\n" for name, value in response.headers)
    headers = (
        f"HTTP/1.1 {response.status} {_REASONS[response.status]}\r\n"
        f"Content-Type: {response.content_type}\r\n"
        f"Content-Length: {len(response.body)}\r\n"
        f"{extra}"
        "Cache-Control: no-store\r\n"
        "Connection: close\r\n\r\n"
    )
    return headers.encode("latin-1") + (response.body if send_body else b"")
