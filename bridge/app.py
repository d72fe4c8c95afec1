"""HTTP and WebSocket routes of the bridge (FastAPI): authenticate, pick the link, relay.

    GET  /endpoints                      the endpoints this client token may use
    ANY  /endpoints/{name}/{path}        relayed to the endpoint's own ``/{path}``
    WS   /endpoints/{name}/ws            the endpoint's event stream, relayed
    WS   /link                           an endpoint's link (enrollment token)
    GET  /dashboard/                     the web dashboard (dashboard.py; its cookie works
                                         on the routes above as the client token does)

Request bodies are held in memory only while in transit: they may carry a Globus credential
(register), so they are never logged, stored or put in an error message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, FastAPI, Request, WebSocket
from fastapi.responses import JSONResponse, Response
from starlette.requests import HTTPConnection
from starlette.websockets import WebSocketDisconnect

from ..daemon.api import auth
from ..daemon.api.validation import answer_refusals
from ..daemon.errors import DaemonError
from ..protocol import VERSION, CloseCode, resume_reason
from . import frames
from .config import BridgeConfig
from .dashboard import add_dashboard, browser_client, watch_browser
from .errors import BadRequest, BridgeError, EndpointNotFound, EndpointOffline, Unauthorized
from .link import EndpointLink, Links, RelayedStream
from .registry import Client, Registry
from .relay import StreamCursor, relay_timeout

__all__ = ["create_app"]

log = logging.getLogger(__name__)

# Same limit as the daemon's: a larger body would be refused there anyway.
MAX_BODY = 4 * 2**20
# A send to a bridge client that does not complete within this long: it stopped reading.
_SEND_TIMEOUT = 10.0
_HELLO_TIMEOUT = 10.0
_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


def parse_bearer(header: str | None) -> str:
    return auth.parse_bearer(
        header, source="a token from `orbit-globus-bridge token add`", refuse=Unauthorized
    )


class Bridge:
    """The bridge's state shared by its routes."""

    def __init__(self, config: BridgeConfig, registry: Registry) -> None:
        self.config = config
        self.registry = registry
        self.links = Links()

    def describe(self, client: Client) -> list[dict[str, Any]]:
        documents = []
        for name in self.registry.endpoint_names():
            if not client.may_use(name):
                continue
            info = self.registry.endpoint_info(name)
            documents.append(
                {
                    "name": name,
                    "online": self.links.online(name),
                    "version": info.get("version"),
                    "plugins": info.get("plugins", []),
                    "local_collection": info.get("local_collection"),
                    # Where the endpoint's API is on the bridge: clients append their paths.
                    "path": f"/endpoints/{name}",
                }
            )
        return documents

    def link_for(self, client: Client, name: str) -> EndpointLink:
        if not client.may_use(name) or name not in self.registry.endpoint_names():
            raise EndpointNotFound(name)
        return self.links.get(name)


def _bridge(request: Request) -> Bridge:
    bridge: Bridge = request.app.state.bridge
    return bridge


def _client(conn: HTTPConnection) -> Client:
    bridge: Bridge = conn.app.state.bridge
    return auth.bearer_or_cookie(
        conn.headers.get("authorization"),
        cookie=lambda: browser_client(conn),
        bearer=lambda header: bridge.registry.verify_client(parse_bearer(header)),
    )


Who = Annotated[Client, Depends(_client)]
Br = Annotated[Bridge, Depends(_bridge)]


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY:
        raise _TooLarge()
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise _TooLarge()
        chunks.append(chunk)
    return b"".join(chunks)


def _relayed_path(request: Request, path: str) -> str:
    """The endpoint-side path exactly as the client encoded it (``%2F`` stays ``%2F``), so
    the daemon decodes it as it would for a local client."""
    raw = request.scope.get("raw_path")
    if isinstance(raw, bytes):
        text = raw.decode("latin-1")
        rest = text.removeprefix("/endpoints/")
        cut = rest.find("/")
        if rest != text and cut >= 0:
            return rest[cut:]
    return "/" + quote(path)


class _TooLarge(BridgeError):
    status = 413
    code = "PayloadTooLarge"

    def __init__(self) -> None:
        super().__init__(f"request bodies are limited to {MAX_BODY} bytes")


def create_app(bridge: Bridge) -> FastAPI:
    app = FastAPI(
        title="orbit-globus bridge",
        version=VERSION,
        description="Relays clients to orbit endpoint daemons connected to it.",
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    answer_refusals(app)
    app.state.bridge = bridge

    @app.exception_handler(BridgeError)
    async def _bridge_error(_request: Request, exc: BridgeError) -> JSONResponse:
        headers = _error_headers(exc)
        return JSONResponse(exc.body(), status_code=exc.status, headers=headers)

    @app.exception_handler(DaemonError)
    async def _daemon_error(_request: Request, exc: DaemonError) -> JSONResponse:
        # The dashboard's pages and sign-in are the daemon's routes, raising its errors
        # (same body, same codes as the bridge's).
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse(exc.body(), status_code=exc.status, headers=headers)

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error: %s", type(exc).__name__)
        return JSONResponse(
            {"error": "InternalError", "message": "the bridge failed; see its log"},
            status_code=500,
        )

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi(_client: Who) -> dict[str, Any]:
        return app.openapi()

    @app.get("/endpoints")
    async def list_endpoints(client: Who, bridge: Br) -> dict[str, Any]:
        return {"endpoints": bridge.describe(client)}

    @app.api_route("/endpoints/{name}/{path:path}", methods=_METHODS)
    async def relay(name: str, path: str, request: Request, client: Who, bridge: Br) -> Response:
        link = bridge.link_for(client, name)
        body = await _read_body(request)
        answer = await link.request(
            owner=client.name,
            method=request.method,
            path=_relayed_path(request, path),
            query=request.url.query,
            content_type=request.headers.get("content-type"),
            body=body,
            answer_within=relay_timeout(path, body, default=bridge.config.relay_timeout),
        )
        if not 100 <= answer.status <= 599:
            raise EndpointOffline(name, "it sent an answer with an invalid status")
        return Response(
            answer.body,
            status_code=answer.status,
            media_type=answer.content_type,
            headers=answer.headers or None,
        )

    @app.websocket("/endpoints/{name}/ws")
    async def relay_stream(websocket: WebSocket, name: str) -> None:
        await _relay_stream(websocket, bridge, name)

    @app.websocket("/link")
    async def link(websocket: WebSocket) -> None:
        await _serve_link(websocket, bridge)

    if bridge.config.dashboard:
        add_dashboard(app, bridge.registry, state_dir=bridge.config.state_dir, bearer=parse_bearer)
    return app


def _error_headers(exc: BridgeError) -> dict[str, str] | None:
    if exc.status == 401:
        return {"WWW-Authenticate": "Bearer"}
    if isinstance(exc, EndpointOffline):
        # Endpoints reconnect within seconds of coming back; say when trying again helps.
        return {"Retry-After": "5"}
    return None


async def _deny(websocket: WebSocket, exc: BridgeError) -> None:
    headers = _error_headers(exc)
    await _deny_raw(websocket, exc.status, exc.body(), headers=headers)


async def _deny_raw(
    websocket: WebSocket,
    status: int,
    body: Any,
    *,
    headers: dict[str, str] | None = None,
    raw: bytes | None = None,
) -> None:
    response: Response
    if raw is not None:
        response = Response(raw, status_code=status, media_type="application/json")
    else:
        response = JSONResponse(body, status_code=status, headers=headers)
    try:
        await websocket.send_denial_response(response)
    except RuntimeError:
        # A server without the denial extension: accept and close with a policy code.
        await websocket.accept()
        await websocket.close(CloseCode.POLICY, f"HTTP {status}")


async def _relay_stream(websocket: WebSocket, bridge: Bridge, name: str) -> None:
    try:
        client = _client(websocket)
        link = bridge.link_for(client, name)
        stream = await link.open_stream(
            owner=client.name,
            query=websocket.url.query,
            accept_within=bridge.config.stream_open_timeout,
        )
    except BridgeError as exc:
        await _deny(websocket, exc)
        return
    try:
        opened = stream.opened.result()
        if isinstance(opened, frames.WsRefused):
            await _deny_raw(websocket, opened.status, None, raw=opened.body)
            return
        if isinstance(opened, frames.WsClose):
            await _deny(websocket, EndpointOffline(name, "its link dropped"))
            return
        await websocket.accept()
        async with watch_browser(websocket, stream):
            await _pump(websocket, stream)
    finally:
        await link.close_stream(stream)


async def _pump(websocket: WebSocket, stream: RelayedStream) -> None:
    """Send the stream's messages to the client until either side ends it."""
    cursor = StreamCursor(websocket.url.query)
    # The client's disconnect arrives in the same queue as the messages (as None): one
    # await per message, no task per message (900 streams through one bridge).
    reader = asyncio.create_task(_client_gone(websocket, stream))
    try:
        while True:
            frame = await stream.messages.get()
            if frame is None:
                return  # the client went away
            if stream.lagged:
                await _close_lagged(websocket, cursor)
                return
            if isinstance(frame, frames.WsClose):
                await _close(websocket, frame.code, frame.reason)
                return
            try:
                async with asyncio.timeout(_SEND_TIMEOUT):
                    await websocket.send_text(frame.text)
            except TimeoutError:
                await _close_lagged(websocket, cursor)
                return
            cursor.sent(frame.text)
    except (WebSocketDisconnect, ConnectionError):
        return
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reader


async def _close_lagged(websocket: WebSocket, cursor: StreamCursor) -> None:
    if cursor.last is None:
        # Nothing sent yet, not even the first heartbeat: no position to name; the client
        # reconnects as it would after a restart of the stream.
        await _close(websocket, CloseCode.SERVICE_RESTART, "fell behind before the first message")
    else:
        await _close(websocket, CloseCode.LAGGED, resume_reason(cursor.last))


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    # 1005/1006 are not codes one may send; the client retries after either.
    if code in (1005, 1006) or not (1000 <= code <= 4999):
        code = CloseCode.INTERNAL_ERROR
    with contextlib.suppress(Exception):
        async with asyncio.timeout(_SEND_TIMEOUT):
            await websocket.close(code, reason[:120])


async def _client_gone(websocket: WebSocket, stream: RelayedStream) -> None:
    """Read and drop what the client sends; on its disconnect wake the pump."""
    with contextlib.suppress(Exception):
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
    stream.messages.put_nowait(None)


async def _serve_link(websocket: WebSocket, bridge: Bridge) -> None:
    try:
        name = bridge.registry.verify_endpoint(parse_bearer(websocket.headers.get("authorization")))
    except BridgeError as exc:
        await _deny(websocket, exc)
        return
    await websocket.accept()
    try:
        async with asyncio.timeout(_HELLO_TIMEOUT):
            hello = frames.decode(await websocket.receive_text())
        if not isinstance(hello, frames.Hello):
            raise BadRequest("the first link frame must be hello")
    except (BridgeError, TimeoutError, WebSocketDisconnect, RuntimeError, KeyError):
        with contextlib.suppress(Exception):
            await websocket.close(CloseCode.POLICY, "send hello first")
        return
    info = {k: hello.endpoint.get(k) for k in ("version", "plugins", "local_collection")}
    bridge.registry.remember_info(name, info)
    link = EndpointLink(
        name,
        info,
        websocket.send_text,
        hangup=lambda: websocket.close(CloseCode.SERVICE_RESTART, "replaced by a newer link"),
        stream_queue=bridge.config.stream_queue,
    )
    old = bridge.links.attach(link)
    if old is not None:
        # The endpoint reconnected before the bridge noticed its old link die.
        old.close()
        if old.hangup is not None:
            with contextlib.suppress(Exception):
                await old.hangup()
    log.info("endpoint %s connected", name)
    try:
        while True:
            link.received(frames.decode(await websocket.receive_text()))
    except BridgeError as exc:
        log.warning("endpoint %s broke the link protocol: %s", name, exc.message)
        with contextlib.suppress(Exception):
            await websocket.close(CloseCode.POLICY, "protocol violation")
    except (WebSocketDisconnect, RuntimeError, KeyError):
        pass
    finally:
        bridge.links.detach(link)
        log.info("endpoint %s disconnected", name)
