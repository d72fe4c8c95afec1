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

A client that connects with ``batch=1`` gets the replay as batch messages (many envelopes in
one message, see :func:`radical.orbit.protocol.batch_text`), at most ``REPLAY_BATCH`` events
and at most about ``REPLAY_BATCH_BYTES`` each; live events still come one per message.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

from starlette.responses import JSONResponse
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from ...protocol import (
    BATCH_PARAM,
    TOPICS,
    CloseCode,
    batch_text,
    envelope_text,
    kinds_of,
    resume_reason,
)
from ..errors import DaemonError
from ..runtime.logs import get_logger
from ..runtime.metrics import NOTIFICATION_LAG_SECONDS
from ..runtime.throttle import Throttle
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
# Refused handshakes are logged once per source address per this many seconds.
REFUSAL_LOG_INTERVAL = 60.0
_refusals = Throttle(interval=REFUSAL_LOG_INTERVAL)


def _log_refusal(websocket: WebSocket, reason: str) -> None:
    source = websocket.client.host if websocket.client is not None else "?"
    held = _refusals.allow(source)
    if held is not None:
        log.warning(
            "websocket handshake refused",
            source=source,
            reason=reason,
            refused_before_unlogged=held,
            interval=REFUSAL_LOG_INTERVAL,
        )


# Events per replay batch: a page of the ledger's reads, which also ends at the ledger's
# page_bytes of event data (1 MiB). A batch whose text still passes REPLAY_BATCH_BYTES (the
# envelopes add a little to each event) is sent in halves; one event alone may be bigger (a
# submit carries its whole request, up to the per-submit budget; the client accepts
# messages up to 16 MB).
REPLAY_BATCH = 1000
REPLAY_BATCH_BYTES = 2**20


class _Reject(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def _filters(
    websocket: WebSocket,
) -> tuple[int | None, str | None, str | None, frozenset[str] | None, bool]:
    query = websocket.query_params
    batch = query.get(BATCH_PARAM, "0")
    if batch not in ("0", "1"):
        raise _Reject(CloseCode.BAD_REQUEST, f"{BATCH_PARAM} must be 0 or 1")
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
    session_id, task_id = query.get("session_id") or None, query.get("task_id") or None
    return since, session_id, task_id, topics, batch == "1"


class Connections:
    """Open WebSocket connections, so shutdown can close them with 1001 going away."""

    def __init__(self) -> None:
        # Each open WebSocket and the id of the token it authenticated with.
        self.open: dict[WebSocket, str] = {}
        self.closing = False

    async def _close(self, sockets: list[WebSocket], code: int, reason: str) -> None:
        async def close(ws: WebSocket) -> None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(code, reason), timeout=2)

        await asyncio.gather(*(close(ws) for ws in sockets))

    async def close_all(self) -> None:
        self.closing = True
        await self._close(list(self.open), CloseCode.GOING_AWAY, "going away")

    async def close_owned_by(self, owners: set[str]) -> int:
        """Close the WebSockets of revoked tokens (1008: reconnecting cannot help)."""
        sockets = [ws for ws, owner in self.open.items() if owner in owners]
        for ws in sockets:
            self.open.pop(ws, None)
        await self._close(sockets, CloseCode.POLICY, "the client token was revoked")
        return len(sockets)


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
        _log_refusal(websocket, exc.message)
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
        since, session_id, task_id, topics, batched = _filters(websocket)
        if session_id is not None:
            session = endpoint.sessions.find(session_id)
            if session is not None and session.owner != owner:
                raise _Reject(CloseCode.NOT_FOUND, f"no session {session_id} for this token")
    except _Reject as exc:
        await websocket.accept()
        await websocket.close(exc.code, exc.reason[:120])
        return

    await websocket.accept()
    connections.open[websocket] = owner
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
        await _send(websocket, _heartbeat(head, endpoint.pruned_through), last)
        if since is not None:
            if batched:
                pages = endpoint.store.envelope_pages(
                    since,
                    owner=owner,
                    session_id=session_id,
                    task_id=task_id,
                    kinds=kinds_of(topics),
                    page_size=REPLAY_BATCH,
                )
                last = await _replay_batched(websocket, pages, listener, last)
            else:
                # Stored JSON spliced into the envelope: a replay of large events never holds
                # them decoded.
                async for seq, at, kind, owner_, sess, tid, data in endpoint.store.raw_events_since(
                    since, owner=owner, session_id=session_id, task_id=task_id
                ):
                    if listener.lagged:
                        break
                    if not listener.accepts(owner_, sess, tid, kind):
                        continue
                    text = envelope_text(
                        seq=seq, time=at, kind=kind, session_id=sess, task_id=tid, data_json=data
                    )
                    await _send(websocket, text, last)
                    last = seq
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
        connections.open.pop(websocket, None)
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reader


class _Lagged(Exception):
    def __init__(self, seq: int) -> None:
        super().__init__(seq)
        self.seq = seq


def _heartbeat(head: int, pruned_through: int = 0) -> str:
    message: dict[str, object] = {"type": "heartbeat", "head": head, "time": time.time()}
    if pruned_through:
        # Retention deleted events of finished tasks up to this seq: a client replaying
        # from below it missed some and reads the task rows instead.
        message["pruned_through"] = pruned_through
    return json.dumps(message)


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


async def _replay_batched(
    websocket: WebSocket,
    pages: AsyncIterator[list[tuple[int, str]]],
    listener: Listener,
    last: int,
) -> int:
    """Send the replay as batch messages, one per ledger page of envelope texts; returns
    the last seq sent. Stops early (the caller then closes with LAGGED) when the live
    buffer overflowed meanwhile."""
    async for page in pages:
        if listener.lagged:
            break
        last = await _send_batch(websocket, page, last)
    return last


async def _send_batch(websocket: WebSocket, page: list[tuple[int, str]], last: int) -> int:
    """Send one page as a batch (in halves while its text is too big); the last seq."""
    text = batch_text([envelope for _, envelope in page])
    if len(text) > REPLAY_BATCH_BYTES and len(page) > 1:
        half = len(page) // 2
        last = await _send_batch(websocket, page[:half], last)
        return await _send_batch(websocket, page[half:], last)
    await _send(websocket, text, last)
    return page[-1][0]


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
                NOTIFICATION_LAG_SECONDS.observe(max(0.0, time.time() - stored.time))
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
