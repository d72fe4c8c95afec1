"""The web dashboard on the bridge: the daemon's own page, with a picker of endpoints.

The page is the daemon's (``daemon/dashboard/``, served from the package, not copied). On a
bridge it lists the endpoints the signed-in client token may use (``GET /endpoints``) and
sends its API calls and its ``/ws`` to ``/endpoints/NAME/...``: the bridge's ordinary relay,
which the browser's session cookie authenticates in place of the bearer token. A relayed
request reaches the endpoint as every request of that bridge client does (identity
``bridge:<client>``), so the page sees exactly what the client token sees.

Sign-in is the daemon's :class:`BrowserSessions` over the bridge's client tokens: a one-time
link made by ``POST /dashboard/api/link`` with a client token (``orbit-globus ui`` with
``RADICAL_ORBIT_URL`` at the bridge), or the token pasted once; an HttpOnly, SameSite=Strict
cookie; per session only the sha256 of the cookie and of the token that signed in (a token
removed from ``clients.json`` ends its browser sessions, a token narrowed to fewer endpoints
narrows them at once), a CSRF token and the expiry, in ``browser_sessions.json`` (0600) in
the bridge's state folder. A cookie-authenticated request that changes state must come from
the bridge's own origin with the session's CSRF token; a WebSocket from its own origin.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import JSONResponse, Response
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..daemon import errors as daemon_errors
from ..daemon.api.auth import token_digest
from ..daemon.api.browser import CSRF_HEADER, BrowserSessions, check_same_origin, cookie_name
from ..daemon.api.dashboard import add_pages_and_signin, own_origin
from ..protocol import VERSION, CloseCode
from . import frames
from .errors import BadRequest, BridgeError, Forbidden, Unauthorized
from .link import RelayedStream
from .registry import Client, Registry

__all__ = ["RECHECK_INTERVAL", "BrowserAuth", "add_dashboard", "browser_client", "watch_browser"]

# How often a browser's relayed stream looks whether its session still holds (sign-out,
# token removed, expiry): a dictionary lookup and a stat of clients.json, cheap enough to
# end such a page within seconds (the daemon looks at each heartbeat, 5 s by default).
RECHECK_INTERVAL = 2.0


def _as_bridge_error(exc: daemon_errors.DaemonError) -> BridgeError:
    # BrowserSessions speaks the daemon's errors; the bridge answers with its own.
    if exc.status == 403:
        return Forbidden(exc.message)
    if exc.status == 401:
        return Unauthorized(exc.message)
    return BadRequest(exc.message)


class _ClientTokens:
    """The bridge's client tokens as :class:`BrowserSessions` asks about them."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    def client(self, digest: str) -> Client:
        try:
            return self._registry.verify_client_digest(digest)
        except Unauthorized as exc:
            # The daemon's class: BrowserSessions ends a session whose token is gone on it.
            raise daemon_errors.Unauthorized(exc.message) from None

    def verify(self, token: str) -> str:
        return self.client(token_digest(token)).name

    def verify_digest(self, digest: str) -> str:
        return self.client(digest).name


class BrowserAuth:
    """The bridge's browser sessions: cookie -> the client token that signed the browser in."""

    def __init__(self, state_dir: Path, registry: Registry) -> None:
        self.tokens = _ClientTokens(registry)
        self.sessions = BrowserSessions(state_dir, self.tokens)

    def client(self, conn: HTTPConnection) -> Client | None:
        """The client of a request carrying the dashboard's cookie, None without one. An
        ended session, or a state change (or a WebSocket) from another site, raises."""
        cookie = conn.cookies.get(cookie_name(conn.url.port))
        if not cookie:
            return None
        origin = own_origin(conn)
        try:
            if conn.scope["type"] == "websocket":
                # A browser cannot set headers on a WebSocket: its own origin only.
                check_same_origin(conn.headers, own_origin=origin)
            method = str(conn.scope.get("method", "GET"))
            self.sessions.authorize(cookie, method=method, headers=conn.headers, own_origin=origin)
            return self.tokens.client(self.sessions.session(cookie).token)
        except daemon_errors.DaemonError as exc:
            raise _as_bridge_error(exc) from None


def browser_client(conn: HTTPConnection) -> Client | None:
    """The client behind the dashboard's cookie; None without the cookie or the dashboard."""
    auth: BrowserAuth | None = getattr(conn.app.state, "browser", None)
    return None if auth is None else auth.client(conn)


@contextlib.asynccontextmanager
async def watch_browser(websocket: WebSocket, stream: RelayedStream) -> AsyncIterator[None]:
    """While a browser's relayed stream runs, end it (1008) once its session has ended."""
    watcher: asyncio.Task[None] | None = None
    if websocket.headers.get("authorization") is None:
        watcher = asyncio.create_task(_watch(websocket, stream))
    try:
        yield
    finally:
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await watcher


async def _watch(websocket: WebSocket, stream: RelayedStream) -> None:
    while True:
        await asyncio.sleep(RECHECK_INTERVAL)
        try:
            if browser_client(websocket) is not None:
                continue
            reason = "the dashboard session ended: sign in again"
        except BridgeError as exc:
            reason = exc.message
        # Through the stream's own queue: its pump sends the close, as for the endpoint's.
        stream.end(frames.WsClose(id=stream.id, code=CloseCode.POLICY, reason=reason))
        return


# Every answer without a policy of its own (the relayed ones, the bridge's JSON): nothing
# in it may run, load or be framed, in whatever type an endpoint declared.
_INERT = [
    (b"content-security-policy", b"default-src 'none'; sandbox; frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
]


class _InertAnswers:
    """Once the bridge's origin carries a session cookie, a page an endpoint sends through
    the relay must not run there: it could use the cookie on the other endpoints."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_inert(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(name.lower() == b"content-security-policy" for name, _ in headers):
                    message = {**message, "headers": headers + _INERT}
            await send(message)

        await self.app(scope, receive, send_inert)


def add_dashboard(
    app: FastAPI, registry: Registry, *, state_dir: Path, bearer: Callable[[str | None], str]
) -> None:
    """The dashboard's pages and sign-in. Only ``POST /dashboard/api/link`` is for clients
    (``bearer`` reads their Authorization header); the rest is the page's own. Its data comes
    through the relay (``/endpoints/...``)."""
    auth = BrowserAuth(state_dir, registry)
    app.state.browser = auth
    app.add_middleware(_InertAnswers)

    def signed_in(request: Request) -> tuple[Client, str]:
        client = browser_client(request)
        if client is None:
            raise Unauthorized("sign in to the dashboard first")
        return client, request.cookies[cookie_name(request.url.port)]

    add_pages_and_signin(
        app,
        auth.sessions,
        bearer=bearer,
        signed_in=signed_in,
        empty_paste="paste a client token (`orbit-globus-bridge token add`)",
    )

    @app.get("/dashboard/api/me", include_in_schema=False)
    async def dashboard_me(request: Request) -> Response:
        client, cookie = signed_in(request)
        session = auth.sessions.session(cookie)
        body = {
            "owner": client.name,
            "name": client.name,
            "csrf": session.csrf,
            "csrf_header": CSRF_HEADER,
            "version": VERSION,
            "expires": session.expires,
            # The page then picks one of GET /endpoints and reads it through the relay.
            "bridge": True,
        }
        return JSONResponse(body, headers={"Cache-Control": "no-store"})
