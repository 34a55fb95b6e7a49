"""The auditors' dashboard server (``medswarm audit serve``): read-only pages over an audit.

    GET /                 overview: verdict, hospitals, charts, rounds, epochs, problems
    GET /round/N          round N's global model and its lineage
    GET /model/HASH       the round whose global model has this SHA-256 (``/model?hash=HASH``
                          from the page's form); for an aggregate or update hash, where it appears
    GET /hospital/ADDR    one hospital's updates, reputation and rewards
    GET /audit.json       the audit as ``medswarm audit --json`` prints it
    GET /health           {"status": "ok", "rounds": N, "ok": true|false, "last_error": ...}

The audit is built before the server listens (a failure stops the command) and rebuilt every
``refresh_seconds`` in a worker thread, never while a request waits; when a rebuild fails the
pages keep the last audit and say so. No authentication: bind it to 127.0.0.1 (the default)
and put a reverse proxy with access control in front to share it. The HTTP handling is the
node's (medswarm/http_responder.py): request heads of at most 8 KiB read within 5 s, one
request per connection, 32 connections at once.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

import trio

from incentive.audit_pages import (
    hospital_page,
    lineage_page,
    message_page,
    overview_page,
    uses_page,
)
from incentive.audit_view import AuditView
from incentive.errors import AuditError
from medswarm.http_responder import (
    HTML_TYPE,
    HttpResponder,
    Request,
    Response,
    json_response,
    listen_problem,
    listeners_url,
)

log = logging.getLogger(__name__)

DEFAULT_BIND = "127.0.0.1:9465"
DEFAULT_REFRESH_SECONDS = 30.0
_HASH = re.compile(r"(0x)?[0-9a-fA-F]{64}")
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_HEADERS = (
    ("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src data:"),
    ("X-Content-Type-Options", "nosniff"),
)


class AuditServer:
    """Serves the audit that ``load`` builds, on ``host:port`` (port 0: any free one)."""

    def __init__(
        self,
        load: Callable[[], AuditView],
        host: str,
        port: int,
        refresh_seconds: float = DEFAULT_REFRESH_SECONDS,
    ) -> None:
        self.load = load
        self.host = host
        self.port = port
        self.refresh_seconds = refresh_seconds
        self.url = ""
        self.view: AuditView | None = None
        self.last_error = ""  # why the last rebuild failed, shown on the pages
        self._http = HttpResponder(self.respond, "audit dashboard")

    async def serve(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Build the audit, listen, signal ``started`` with the URL, answer until cancelled."""
        self.view = await trio.to_thread.run_sync(self.load)
        try:
            listeners = await trio.open_tcp_listeners(self.port, host=self.host)
        except OSError as exc:
            where = f"--bind {self.host}:{self.port}"
            problem = listen_problem(
                where, "set --bind", "audit dashboard", self.host, self.port, exc
            )
            raise AuditError(problem) from exc
        self.url = listeners_url(listeners)
        try:
            async with trio.open_nursery() as nursery:
                if self.refresh_seconds > 0:
                    nursery.start_soon(self._refresh)
                nursery.start_soon(trio.serve_listeners, self._http.answer, listeners)
                task_status.started(self.url)
        finally:
            for listener in listeners:
                listener.socket.close()

    async def _refresh(self) -> None:
        while True:
            await trio.sleep(self.refresh_seconds)
            try:
                self.view = await trio.to_thread.run_sync(self.load)
                self.last_error = ""
            except Exception as exc:  # the chain may be down; the pages show the last audit
                self.last_error = f"the last refresh failed, showing the audit read before: {exc}"
                log.warning("audit dashboard: %s", self.last_error)

    def respond(self, request: Request) -> Response:
        """The answer to one request (pure: reads ``self.view`` only)."""
        view = self.view
        path = request.path.rstrip("/") or "/"
        if view is None:
            return Response(503, "text/plain", b"the audit is being read\n")
        if path == "/":
            return _html(200, overview_page(view, self.last_error))
        if path == "/health":
            return json_response(
                {
                    "status": "ok",
                    "rounds": len(view.rounds),
                    "ok": view.ok,
                    "last_error": self.last_error or None,
                }
            )
        if path == "/audit.json":
            return json_response(view.document)
        if path == "/model" or path.startswith("/model/"):
            digest = request.query.get("hash", "") if path == "/model" else path[len("/model/") :]
            return self._model(view, digest.strip())
        if path.startswith("/round/"):
            number = path[len("/round/") :]
            found = view.round_by_number(int(number)) if number.isdigit() else None
            if found is None:
                return _missing("no such round", f"no round {number} was recorded")
            return _html(200, lineage_page(view, found, self.last_error))
        if path.startswith("/hospital/"):
            account = path[len("/hospital/") :]
            member = view.member(account) if _ADDRESS.fullmatch(account) else None
            if member is None:
                return _missing("no such hospital", f"no member has the account {account}")
            return _html(200, hospital_page(view, member))
        return _missing(
            "not found",
            "try /, /round/N, /model/HASH, /hospital/ADDRESS, /audit.json or /health",
        )

    def _model(self, view: AuditView, digest: str) -> Response:
        if not _HASH.fullmatch(digest):
            return _html(
                400,
                message_page(
                    "not a hash",
                    f"{digest!r} is not a SHA-256 hash: give 64 hex digits, e.g. the output "
                    "of sha256sum on a model file",
                ),
            )
        found = view.round_of_model(digest)
        if found is not None:
            return _html(200, lineage_page(view, found, self.last_error))
        uses = view.uses_of(digest)
        if uses:
            return _html(200, uses_page(view, digest, uses))
        return _missing(
            "unknown model",
            f"no round, aggregate or update of this federation has the hash {digest}",
        )


def _html(status: int, page: str) -> Response:
    return Response(status, HTML_TYPE, page.encode(), _HEADERS)


def _missing(title: str, message: str) -> Response:
    return _html(404, message_page(title, message))
