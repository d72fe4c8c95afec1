"""The web dashboard's routes: its static pages, browser sign-in and sign-out, and the few
read-only documents only the dashboard needs (who am I, sessions, health).

Everything else the page shows comes from the daemon's ordinary routes (``/globus/history``,
the task and cancel routes, ``/ws``), which accept the browser's session cookie as well as a
bearer token (see :mod:`.browser`). The pages are plain files shipped with the package
(``daemon/dashboard/``), served with a Content-Security-Policy that allows scripts and
styles from this origin only: no inline script, no eval, nothing from another site.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Body, FastAPI, Query, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.requests import HTTPConnection

from ...protocol import VERSION
from ..errors import BadRequest, NotFound, Unauthorized
from .auth import parse_bearer
from .browser import CSRF_HEADER, SESSION_TTL, BrowserSessions, check_same_origin, cookie_name

if TYPE_CHECKING:
    from ..service.endpoint import EndpointService

__all__ = [
    "ASSETS",
    "STATIC_FILES",
    "add_dashboard",
    "add_pages_and_signin",
    "browser_owner",
    "own_origin",
    "security_headers",
    "set_session_cookie",
]

ASSETS = Path(__file__).resolve().parent.parent / "dashboard"
STATIC_FILES = {
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}


def own_origin(conn: HTTPConnection) -> str:
    """The origin the browser sees this daemon at (the Host it addressed)."""
    scheme = {"ws": "http", "wss": "https"}.get(conn.url.scheme, conn.url.scheme)
    return f"{scheme}://{conn.headers.get('host', '')}"


def security_headers(conn: HTTPConnection) -> dict[str, str]:
    ws = own_origin(conn).replace("http", "ws", 1)
    return {
        "Content-Security-Policy": (
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
            f"connect-src 'self' {ws}; base-uri 'none'; form-action 'self'; "
            "frame-ancestors 'none'"
        ),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
        "Cache-Control": "no-store",
    }


def browser_owner(conn: HTTPConnection) -> str | None:
    """The owner of a request made with the dashboard's cookie, None without the cookie.
    A cookie of an ended session, or a state change from another site, raises."""
    sessions: BrowserSessions | None = getattr(conn.app.state, "browser", None)
    cookie = conn.cookies.get(cookie_name(conn.url.port))
    if sessions is None or not cookie:
        return None
    method = conn.scope.get("method", "GET")
    return sessions.authorize(
        cookie, method=method, headers=conn.headers, own_origin=own_origin(conn)
    )


def set_session_cookie(response: Response, request: Request, value: str) -> None:
    response.set_cookie(
        cookie_name(request.url.port),
        value,
        max_age=int(SESSION_TTL),
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def _session_json(session: Any) -> dict[str, Any]:
    if session.expired:
        credential = "expired"
    elif session.clients is None:
        credential = "missing"
    else:
        credential = "valid"
    return {
        "session_id": session.session_id,
        "credential": credential,
        "local_collection": session.local_collection,
    }


def add_pages_and_signin(
    app: FastAPI,
    sessions: BrowserSessions,
    *,
    bearer: Callable[[str | None], str],
    signed_in: Callable[[Request], object],
    empty_paste: str,
) -> None:
    """The dashboard's pages, its sign-in (a one-time link for a client's bearer token, or
    the token pasted once) and sign-out: the same on a daemon and on a bridge (only the link
    route is for clients). ``bearer`` reads a client's Authorization header, ``signed_in``
    refuses a request without a live session cookie, ``empty_paste`` answers an empty paste
    saying where the token is. The routes raise the daemon's errors."""

    def page(request: Request, name: str, media_type: str) -> Response:
        return FileResponse(ASSETS / name, media_type=media_type, headers=security_headers(request))

    @app.get("/dashboard", include_in_schema=False)
    async def dashboard_root() -> Response:
        return RedirectResponse("/dashboard/", status_code=308)

    @app.get("/dashboard/", include_in_schema=False)
    async def dashboard_index(request: Request) -> Response:
        return page(request, "index.html", "text/html; charset=utf-8")

    @app.get("/dashboard/static/{name}", include_in_schema=False)
    async def dashboard_static(name: str, request: Request) -> Response:
        if name not in STATIC_FILES:
            raise NotFound(f"no dashboard file {name!r}")
        return page(request, name, STATIC_FILES[name])

    @app.post("/dashboard/api/link")
    async def dashboard_link(request: Request) -> dict[str, Any]:
        """A one-time sign-in link for the bearer token of this request (`orbit-globus ui`)."""
        nonce = sessions.make_link(bearer(request.headers.get("authorization")))
        return {"url": f"{own_origin(request)}/dashboard/signin?link={nonce}", "expires_in": 60}

    @app.get("/dashboard/signin", include_in_schema=False)
    async def dashboard_signin_link(
        request: Request, link: Annotated[str, Query(max_length=128)] = ""
    ) -> Response:
        # The nonce must not stay in the address bar or the history: always redirect.
        try:
            cookie, _ = sessions.redeem_link(link)
        except Unauthorized:
            return RedirectResponse("/dashboard/?signin=expired", status_code=303)
        response = RedirectResponse("/dashboard/", status_code=303)
        set_session_cookie(response, request, cookie)
        return response

    @app.post("/dashboard/api/signin", include_in_schema=False)
    async def dashboard_signin_token(
        request: Request, token: Annotated[str, Body(embed=True, max_length=512)]
    ) -> Response:
        check_same_origin(request.headers, own_origin=own_origin(request))
        if not token.strip():
            raise BadRequest(empty_paste)
        cookie, session = sessions.sign_in(token.strip())
        response = JSONResponse({"owner": session.owner})
        set_session_cookie(response, request, cookie)
        return response

    @app.post("/dashboard/api/logout", include_in_schema=False)
    async def dashboard_logout(request: Request) -> Response:
        signed_in(request)  # same origin and CSRF token, like every state change
        sessions.sign_out(request.cookies.get(cookie_name(request.url.port), ""))
        response = JSONResponse({"signed_out": True})
        response.delete_cookie(cookie_name(request.url.port), path="/")
        return response


def add_dashboard(app: FastAPI, endpoint: EndpointService) -> None:
    """The dashboard's routes. Only ``POST /dashboard/api/link`` is for clients (and in the
    API description); the others are the page's own, authenticated by its cookie (sessions
    and health by a bearer token as well: a bridge relays them for its copy of the page)."""
    sessions = BrowserSessions(endpoint.config.state_dir, endpoint.tokens)
    app.state.browser = sessions

    def cookie_owner(request: Request) -> str:
        owner = browser_owner(request)
        if owner is None:
            raise Unauthorized("sign in to the dashboard first")
        return owner

    def reader(request: Request) -> str:
        # The page served by a bridge reads these through its relay, which presents the
        # bridge client's own token (bridge/dashboard.py): a bearer token reads them too.
        header = request.headers.get("authorization")
        if header is not None:
            return endpoint.tokens.verify(parse_bearer(header))
        return cookie_owner(request)

    add_pages_and_signin(
        app,
        sessions,
        bearer=parse_bearer,
        signed_in=cookie_owner,
        empty_paste="paste the client token (the daemon's state folder, file 'token')",
    )

    @app.get("/dashboard/api/me", include_in_schema=False)
    async def dashboard_me(request: Request) -> Response:
        owner = cookie_owner(request)
        session = sessions.session(request.cookies[cookie_name(request.url.port)])
        body = {
            "owner": owner,
            "name": endpoint.tokens.name_of(owner),
            "csrf": session.csrf,
            "csrf_header": CSRF_HEADER,
            "head": endpoint.hub.head,
            "endpoint": endpoint.config.name,
            "version": VERSION,
            "expires": session.expires,
        }
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    @app.get("/dashboard/api/sessions", include_in_schema=False)
    async def dashboard_sessions(request: Request) -> dict[str, Any]:
        owner = reader(request)
        mine = [s for s in endpoint.sessions.all() if s.owner == owner]
        return {"sessions": [_session_json(s) for s in mine]}

    @app.get("/dashboard/api/health", include_in_schema=False)
    async def dashboard_health(request: Request) -> dict[str, Any]:
        reader(request)
        sessions_open, open_tasks, head = await endpoint.status_counts()
        connections = getattr(app.state, "connections", None)
        return {
            "endpoint": endpoint.config.name,
            "version": VERSION,
            "uptime": time.time() - endpoint.started,
            "ledger_head": head,
            "sessions": sessions_open,
            "open_tasks": open_tasks,
            "websocket_clients": len(connections.open) if connections is not None else None,
            "poll_interval": endpoint.config.poll_interval,
        }
