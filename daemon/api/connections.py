"""Connection admission: read deadlines and caps, below the HTTP layer.

uvicorn closes an idle keep-alive connection (``timeout_keep_alive``) but never one that
is still sending its first request: a client that opens a socket and sends half a header
holds a file descriptor for ever, and a thousand of them exhaust the process's limit so
that nobody can connect. Two guards stop that:

- **read deadlines** (:class:`GuardedH11Protocol`): a connection that owes the daemon the
  headers of a request gets ``header_timeout`` seconds for them, measured from the accept
  or from the end of the previous answer; a request body gets ``body_timeout``. Past it the
  connection is answered 408 and closed.
- **caps** (:class:`ConnectionGuard`, the pure part): at most ``max_connections`` HTTP
  connections, and at most ``max_untrusted`` that have not yet shown a valid bearer token.
  A new connection beyond the second cap pushes out the oldest untrusted one, so a flood
  of half-open sockets can never crowd out a client that has authenticated: its
  connection is trusted from its first request with a valid token on.

WebSocket connections leave the guard when they upgrade (after the handshake request was
read in full); they are bounded by uvicorn's ``limit_concurrency`` and the hub's buffers.
"""

from __future__ import annotations

import asyncio
import collections
import random
from collections.abc import Callable
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

__all__ = ["ConnectionGuard", "DenyingWebSocketProtocol", "GuardedH11Protocol", "guarded_protocol"]

# What a connection that missed its deadline gets before the close (h11 cannot answer a
# request it never received, so the bytes are written as they are).
_TIMEOUT_BODY = (
    b'{"error":"RequestTimeout","message":"the request was not sent in time; send it whole"}'
)
_TIMEOUT_ANSWER = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
    b"content-length: " + str(len(_TIMEOUT_BODY)).encode() + b"\r\n\r\n" + _TIMEOUT_BODY
)


class ConnectionGuard:
    """Counts connections and picks the ones to close; knows nothing of sockets.

    ``admit(conn)`` returns the connections to close now (possibly ``conn`` itself, when
    every slot holds a trusted connection); ``trust(conn)`` moves a connection out of the
    untrusted pool for good; ``release(conn)`` forgets it.
    """

    def __init__(self, *, max_connections: int, max_untrusted: int) -> None:
        if max_connections < 1 or max_untrusted < 1:
            raise ValueError("max_connections and max_untrusted must be at least 1")
        self.max_connections = max_connections
        self.max_untrusted = min(max_untrusted, max_connections)
        # Insertion order is age: the first entry is the oldest untrusted connection.
        self._untrusted: collections.OrderedDict[object, None] = collections.OrderedDict()
        self._trusted: set[object] = set()
        self.evicted = 0
        self.refused = 0

    def __len__(self) -> int:
        return len(self._untrusted) + len(self._trusted)

    @property
    def untrusted(self) -> int:
        return len(self._untrusted)

    def admit(self, conn: object) -> list[object]:
        close: list[object] = []
        if len(self._untrusted) >= self.max_untrusted or len(self) >= self.max_connections:
            if self._untrusted:
                oldest, _ = self._untrusted.popitem(last=False)
                close.append(oldest)
                self.evicted += 1
            else:
                self.refused += 1
                return [conn]
        self._untrusted[conn] = None
        return close

    def trust(self, conn: object) -> None:
        if self._untrusted.pop(conn, 0) is None:
            self._trusted.add(conn)

    def is_trusted(self, conn: object) -> bool:
        return conn in self._trusted

    def release(self, conn: object) -> None:
        self._untrusted.pop(conn, None)
        self._trusted.discard(conn)


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with read deadlines and the guard's caps.

    Built per server by :func:`guarded_protocol`, which fills in the class attributes.
    """

    guard: ConnectionGuard
    authorized: Callable[[bytes], bool]
    header_timeout: float
    body_timeout: float

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._seen_request: object = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        for victim in self.guard.admit(self):
            if isinstance(victim, GuardedH11Protocol):
                victim.drop()
        if not transport.is_closing():
            # Spread over +-25 %: a flood opened at once must not all expire (and be
            # reopened) in one turn of the event loop.
            self._arm(self.header_timeout * random.uniform(0.75, 1.25))

    def connection_lost(self, exc: Exception | None) -> None:
        self.guard.release(self)
        self._disarm()
        super().connection_lost(exc)

    def drop(self) -> None:
        """Close at once (pushed out by newer connections, or over the cap)."""
        self.guard.release(self)
        self._disarm()
        self.transport.abort()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        cycle = self.cycle
        if cycle is not None and cycle is not self._seen_request:
            # A new request's headers are in: judge its token once, then give its body
            # (if it has one) its own deadline.
            self._seen_request = cycle
            if not self.guard.is_trusted(self) and self._has_valid_token():
                self.guard.trust(self)
            if self.conn.their_state is h11.SEND_BODY:
                self._arm(self.body_timeout)
            else:
                self._disarm()
        elif (
            cycle is not None
            and not cycle.response_complete
            and self.conn.their_state is not h11.SEND_BODY
        ):
            self._disarm()  # the body is in: the rest is the daemon's to do

    def handle_websocket_upgrade(self, event: h11.Request) -> None:
        self._disarm()
        self.guard.release(self)
        super().handle_websocket_upgrade(event)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm(self.header_timeout)

    def _has_valid_token(self) -> bool:
        for name, value in self.headers or ():
            if name == b"authorization":
                return self.authorized(value)
        return False

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        # Only a client that still owes bytes is cut off; a request being answered is not.
        if self.conn.their_state in (h11.IDLE, h11.SEND_BODY):
            if self.cycle is None or self.cycle.response_complete:
                self.transport.write(_TIMEOUT_ANSWER)
            elif self.cycle is not None:
                self.cycle.disconnected = True
                self.cycle.message_event.set()
            self.guard.release(self)
            self.transport.close()


def guarded_protocol(
    *,
    guard: ConnectionGuard,
    authorized: Callable[[bytes], bool],
    header_timeout: float,
    body_timeout: float,
) -> type[GuardedH11Protocol]:
    """A protocol class for ``uvicorn.Config(http=...)`` bound to one guard."""
    return type(
        "GuardedH11Protocol",
        (GuardedH11Protocol,),
        {
            "guard": guard,
            "authorized": staticmethod(authorized),
            "header_timeout": header_timeout,
            "body_timeout": body_timeout,
        },
    )


class DenyingWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O WebSocket protocol, quiet about refused handshakes.

    uvicorn (0.54) answers an app's denial response (our 401) correctly but then logs
    "ASGI callable returned without completing handshake." at ERROR, once per attempt:
    anyone could fill the log with handshakes that carry no token. A denial is a completed
    handshake; the app logs refusals itself, throttled per source.
    """

    async def send(self, message: Any) -> None:
        await super().send(message)
        if message["type"] == "websocket.http.response.body" and not message.get(
            "more_body", False
        ):
            self.handshake_complete = True
