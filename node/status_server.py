"""The node's status server: a small HTTP/1.1 responder in the node's trio nursery.

Off unless ``[status] bind`` is set (node/config.py). Read-only, no authentication: bind it
to 127.0.0.1 (the default host) and let a local Prometheus or a reverse proxy reach it.

    GET /          a dashboard page: rounds and their hashes, members' contributions and
                   reputation (node/dashboard.py)
    GET /health    200 {"status": "ok", "round": N}, or 503 once the node left the federation
    GET /status    the node's state as JSON (node/status_report.py)
    GET /metrics   Prometheus text exposition

Each connection carries one request (``Connection: close``); a request head larger than
8 KiB or slower than 5 s is dropped, and so is a connection beyond 32 open at once. ``HEAD``
is answered too; other methods get 405. The members' standings (contribution, reputation)
are read from the chain after each round and every 30 s otherwise, never while a request
waits.
"""

from __future__ import annotations

import errno
import json
import logging
from typing import TYPE_CHECKING, Any

import trio

from medswarm.prometheus import CONTENT_TYPE as METRICS_CONTENT_TYPE
from node.config import parse_bind
from node.dashboard import dashboard_html
from node.errors import StatusError
from node.round_book import Standing
from node.status_report import health_document, metrics_text, status_document

if TYPE_CHECKING:
    from node.hospital import HospitalNode

log = logging.getLogger(__name__)

REQUEST_HEAD_LIMIT = 8192
REQUEST_SECONDS = 5.0
STANDINGS_SECONDS = 30.0
MAX_CONNECTIONS = 32  # answered at once; more are closed at once
POLL_SECONDS = 0.25  # how often the standings task looks for a finished round
JSON_TYPE = "application/json"
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}
_REASONS.update({500: "Internal Server Error", 503: "Service Unavailable"})


class StatusServer:
    """Serves one node's status on ``bind`` (``host:port``; port 0 picks a free one)."""

    def __init__(self, node: HospitalNode, bind: str) -> None:
        self.node = node
        self.bind = bind
        self.url = ""  # http://host:port once listening
        self.standings: dict[str, Standing] = {}
        self._connections = trio.CapacityLimiter(MAX_CONNECTIONS)

    async def serve(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Listen, signal ``started`` with the URL, and answer until cancelled."""
        host, port = parse_bind(self.bind)
        try:
            listeners = await trio.open_tcp_listeners(port, host=host)
        except OSError as exc:
            raise StatusError(_listen_problem(self.bind, host, port, exc)) from exc
        bound_host, bound_port = listeners[0].socket.getsockname()[:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        self.url = f"http://{shown}:{bound_port}"
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._refresh_standings)
                nursery.start_soon(trio.serve_listeners, self._answer, listeners)
                log.info("%s: status on %s (/health, /status, /metrics)", self.node.name, self.url)
                task_status.started(self.url)
        finally:
            for listener in listeners:
                listener.socket.close()

    async def _answer(self, stream: trio.SocketStream) -> None:
        if self._connections.statistics().borrowed_tokens >= MAX_CONNECTIONS:
            await stream.aclose()  # a local client hammering the port gets nothing more
            return
        try:
            async with self._connections, stream:
                head = await _read_head(stream)
                if head is None:
                    return
                status, content_type, body, send_body = self._respond(head)
                await stream.send_all(_response(status, content_type, body, send_body))
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass  # the client went away
        except Exception:  # a status page must never take the node down
            log.exception("%s: status request failed", self.node.name)

    def _respond(self, head: bytes) -> tuple[int, str, bytes, bool]:
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = request_line.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            return 400, "text/plain", b"bad request\n", True
        method, target = parts[0], parts[1].split("?", 1)[0]
        if method not in ("GET", "HEAD"):
            return 405, "text/plain", b"only GET and HEAD\n", True
        send_body = method == "GET"
        node = self.node
        if target == "/health":
            healthy, document = health_document(node)
            return (200 if healthy else 503), JSON_TYPE, _json(document), send_body
        if target == "/status":
            return 200, JSON_TYPE, _json(status_document(node, self.standings)), send_body
        if target == "/metrics":
            return 200, METRICS_CONTENT_TYPE, metrics_text(node).encode(), send_body
        if target == "/":
            page = dashboard_html(node, self.standings)
            return 200, "text/html; charset=utf-8", page.encode(), send_body
        return 404, "text/plain", b"not found: try /health, /status, /metrics or /\n", send_body

    async def _refresh_standings(self) -> None:
        seen: int | None = None
        next_read = 0.0
        while True:
            now = trio.current_time()
            if self.node.completed_round != seen or now >= next_read:
                seen = self.node.completed_round
                next_read = now + STANDINGS_SECONDS
                try:
                    self.standings = await self.node.book.standings()
                except Exception as exc:  # the chain may be down; the page shows the last read
                    log.warning("%s: cannot read members' standings: %s", self.node.name, exc)
            await trio.sleep(POLL_SECONDS)


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


def _response(status: int, content_type: str, body: bytes, send_body: bool) -> bytes:
    headers = (
        f"HTTP/1.1 {status} {_REASONS[status]}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Cache-Control: no-store\r\n"
        "Connection: close\r\n\r\n"
    )
    return headers.encode("latin-1") + (body if send_body else b"")


def _json(document: Any) -> bytes:
    return (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()


def _listen_problem(bind: str, host: str, port: int, exc: OSError) -> str:
    where = f"status.bind = {bind!r}"
    if exc.errno == errno.EADDRINUSE:
        return (
            f"{where}: port {port} on {host} is already in use by another process; set "
            f'[status] bind to a free port, or to "{host}:0" to take any free one'
        )
    if exc.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
        return (
            f"{where}: {host} is not an address of this machine; bind to 127.0.0.1 (the "
            "status server has no authentication: keep it local)"
        )
    if exc.errno == errno.EACCES:
        return f"{where}: no permission to listen on port {port}; use a port above 1023"
    return f"{where}: cannot listen on {host}:{port}: {exc}"
