"""``GET /ws``: replay from the ledger, then live events, in seq order, no gaps, no dupes.

Order of operations for a subscriber with cursor ``since``:
1. attach a live listener to the hub FIRST (it buffers everything committed from now on);
2. replay ``events_since(since)`` from the ledger: this covers everything committed before
   the listener existed, and possibly some events the listener also holds;
3. stream the listener's events, skipping any seq already sent.
The ledger assigns seqs in commit order and publishes after commit, so every event is in
the replay or the listener (or both), and deduplicating by seq leaves exactly one copy.

A listener whose queue fills up (a client not reading) is closed with 4008 and reason
``resume from <last seq sent>``; the client reconnects with that cursor and loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from starlette.responses import JSONResponse
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from ...protocol import TOPICS, CloseCode, resume_reason
from ..errors import DaemonError
from ..runtime.logs import get_logger
from ..service.hub import Listener, message_text
from .auth import parse_bearer
from .browser import check_same_origin
from .dashboard import browser_owner, own_origin

if TYPE_CHECKING:
    from ..service.endpoint import EndpointService

__all__ = ["Connections", "serve_websocket"]

log = get_logger(__name__)

# A send that does not complete within this long means the client stopped reading.
_SEND_TIMEOUT = 10.0
# Seqs are SQLite integers (64-bit).
_MAX_SEQ = 2**63 - 1


class _Reject(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def _filters(
    websocket: WebSocket,
) -> tuple[int | None, str | None, str | None, frozenset[str] | None]:
    query = websocket.query_params
    since: int | None = None
    if query.get("since") not in (None, ""):
        try:
            since = int(query["since"])
        except ValueError:
            raise _Reject(
                CloseCode.BAD_REQUEST, "since must be an integer seq (0 = from the start)"
            ) from None
        if not 0 <= since <= _MAX_SEQ:
            raise _Reject(CloseCode.BAD_REQUEST, f"since must be a seq in 0..{_MAX_SEQ}")
    topics: frozenset[str] | None = None
    if query.get("topic"):
        topics = frozenset(t.strip() for t in query["topic"].split(",") if t.strip())
        unknown = topics - TOPICS
        if unknown:
            raise _Reject(
                CloseCode.BAD_REQUEST,
                f"unknown topic(s) {', '.join(sorted(unknown))}; use {', '.join(sorted(TOPICS))}",
            )
    return since, query.get("session_id") or None, query.get("task_id") or None, topics


class Connections:
    """Open WebSocket connections, so shutdown can close them with 1001 going away."""

    def __init__(self) -> None:
        self.open: set[WebSocket] = set()
        self.closing = False

    async def close_all(self) -> None:
        self.closing = True
        sockets = list(self.open)

        async def close(ws: WebSocket) -> None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(CloseCode.GOING_AWAY, "going away"), timeout=2)

        await asyncio.gather(*(close(ws) for ws in sockets))


def _websocket_owner(websocket: WebSocket, endpoint: EndpointService) -> str:
    header = websocket.headers.get("authorization")
    if header is None:
        # A browser cannot set headers on a WebSocket: the dashboard's cookie, from its
        # own origin only (a page of another site must not ride on the cookie).
        owner = browser_owner(websocket)
        if owner is not None:
            check_same_origin(websocket.headers, own_origin=own_origin(websocket))
            return owner
    return endpoint.tokens.verify(parse_bearer(header))


async def serve_websocket(
    websocket: WebSocket, endpoint: EndpointService, connections: Connections
) -> None:
    try:
        owner = _websocket_owner(websocket, endpoint)
    except DaemonError as exc:
        # Refuse the handshake with a real 401 where the server supports it.
        with contextlib.suppress(Exception):
            await websocket.send_denial_response(
                JSONResponse(exc.body(), status_code=401, headers={"WWW-Authenticate": "Bearer"})
            )
            return
        await websocket.close(CloseCode.POLICY, exc.message[:120])
        return
    if connections.closing:
        await websocket.close(CloseCode.GOING_AWAY, "going away")
        return
    try:
        since, session_id, task_id, topics = _filters(websocket)
        if session_id is not None:
            session = endpoint.sessions.find(session_id)
            if session is not None and session.owner != owner:
                raise _Reject(CloseCode.NOT_FOUND, f"no session {session_id} for this token")
    except _Reject as exc:
        await websocket.accept()
        await websocket.close(exc.code, exc.reason[:120])
        return

    await websocket.accept()
    connections.open.add(websocket)
    listener = endpoint.hub.attach(
        Listener(
            owner=owner,
            session_id=session_id,
            task_id=task_id,
            topics=topics,
            maxsize=endpoint.config.ws_queue_size,
        )
    )
    reader = asyncio.create_task(_drain_incoming(websocket))
    reader.add_done_callback(lambda _task: listener.wake())
    # Read once, right after attaching (no await in between): every event after ``head``
    # reaches the listener, so a "from now" client can resume from it without a gap.
    head = endpoint.hub.head
    last = since if since is not None else head
    try:
        # At once, before any replay: a client subscribing "from now" learns its position
        # even if nothing happens before it has to reconnect.
        await _send(websocket, _heartbeat(head), last)
        if since is not None:
            async for stored in endpoint.store.events_since(
                since, owner=owner, session_id=session_id, task_id=task_id
            ):
                if listener.lagged:
                    break
                if not listener.matches(stored):
                    continue
                await _send(websocket, message_text(stored), last)
                last = stored.seq
        recheck: Callable[[], object] | None = None
        if websocket.headers.get("authorization") is None:
            # A browser session ends at sign-out or when its token is deleted: look again
            # at each heartbeat and close the stream then.
            recheck = functools.partial(browser_owner, websocket)

        await _live(websocket, endpoint, listener, last, reader, recheck=recheck)
    except DaemonError as exc:
        with contextlib.suppress(Exception):
            await websocket.close(CloseCode.POLICY, exc.message[:120])
    except _Lagged as lag:
        # The close frame queues behind what the client has not read yet: a client that
        # reads again within the timeout gets it; one that never does is dropped.
        with contextlib.suppress(Exception):
            async with asyncio.timeout(_SEND_TIMEOUT):
                await websocket.close(CloseCode.LAGGED, resume_reason(lag.seq))
        log.info("websocket client lagged", owner=owner, resume_from=lag.seq)
    except (WebSocketDisconnect, ConnectionError, asyncio.CancelledError, TimeoutError):
        pass
    finally:
        endpoint.hub.detach(listener)
        connections.open.discard(websocket)
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reader


class _Lagged(Exception):
    def __init__(self, seq: int) -> None:
        super().__init__(seq)
        self.seq = seq


def _heartbeat(head: int) -> str:
    return json.dumps({"type": "heartbeat", "head": head, "time": time.time()})


async def _send(websocket: WebSocket, text: str, last: int) -> None:
    """Send one message; a client that stopped reading (the send stays blocked for
    ``_SEND_TIMEOUT``) is treated as lagged at ``last``, the seq it got before this one."""
    if websocket.application_state != WebSocketState.CONNECTED:
        raise WebSocketDisconnect(1006)
    try:
        # asyncio.timeout, not wait_for: no extra task per message (fan-out to 1000 clients).
        async with asyncio.timeout(_SEND_TIMEOUT):
            await websocket.send_text(text)
    except TimeoutError:
        raise _Lagged(last) from None


async def _live(
    websocket: WebSocket,
    endpoint: EndpointService,
    listener: Listener,
    last: int,
    reader: asyncio.Task[None],
    *,
    recheck: Callable[[], object] | None = None,
) -> None:
    interval = endpoint.config.heartbeat_interval
    next_beat = time.monotonic() + interval
    while True:
        if listener.lagged:
            raise _Lagged(last)
        if reader.done():
            return  # the client went away
        stored = await listener.next(next_beat - time.monotonic())
        if stored is not None:
            if stored.seq > last:
                await _send(websocket, message_text(stored), last)
                last = stored.seq
        elif time.monotonic() >= next_beat:
            if recheck is not None:
                recheck()
            await _send(websocket, _heartbeat(endpoint.hub.head), last)
            next_beat = time.monotonic() + interval


async def _drain_incoming(websocket: WebSocket) -> None:
    """Read and ignore client messages: it notices a disconnect and keeps buffers empty."""
    with contextlib.suppress(Exception):
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
