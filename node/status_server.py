"""The node's status server: the shared HTTP responder (medswarm/http_responder.py) in the
node's trio nursery.

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

import logging
from typing import TYPE_CHECKING, Any

import trio

from medswarm.http_responder import (
    HTML_TYPE,
    TEXT_TYPE,
    HttpResponder,
    Request,
    Response,
    json_response,
    listen_problem,
    listeners_url,
)
from medswarm.prometheus import CONTENT_TYPE as METRICS_CONTENT_TYPE
from node.config import parse_bind
from node.dashboard import dashboard_html
from node.errors import StatusError
from node.round_book import Standing
from node.status_report import health_document, metrics_text, status_document

if TYPE_CHECKING:
    from node.hospital import HospitalNode

log = logging.getLogger(__name__)

STANDINGS_SECONDS = 30.0
POLL_SECONDS = 0.25  # how often the standings task looks for a finished round


class StatusServer:
    """Serves one node's status on ``bind`` (``host:port``; port 0 picks a free one)."""

    def __init__(self, node: HospitalNode, bind: str) -> None:
        self.node = node
        self.bind = bind
        self.url = ""  # http://host:port once listening
        self.standings: dict[str, Standing] = {}
        self._http = HttpResponder(self._respond, f"{node.name}: status")

    async def serve(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Listen, signal ``started`` with the URL, and answer until cancelled."""
        host, port = parse_bind(self.bind)
        try:
            listeners = await trio.open_tcp_listeners(port, host=host)
        except OSError as exc:
            where = f"status.bind = {self.bind!r}"
            problem = listen_problem(where, "set [status] bind", "status server", host, port, exc)
            raise StatusError(problem) from exc
        self.url = listeners_url(listeners)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._refresh_standings)
                nursery.start_soon(trio.serve_listeners, self._http.answer, listeners)
                log.info("%s: status on %s (/health, /status, /metrics)", self.node.name, self.url)
                task_status.started(self.url)
        finally:
            for listener in listeners:
                listener.socket.close()

    def _respond(self, request: Request) -> Response:
        node = self.node
        target = request.path
        if target == "/health":
            healthy, document = health_document(node)
            return json_response(document, 200 if healthy else 503)
        if target == "/status":
            return json_response(status_document(node, self.standings))
        if target == "/metrics":
            return Response(200, METRICS_CONTENT_TYPE, metrics_text(node).encode())
        if target == "/":
            return Response(200, HTML_TYPE, dashboard_html(node, self.standings).encode())
        return Response(404, TEXT_TYPE, b"not found: try /health, /status, /metrics or /\n")

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
