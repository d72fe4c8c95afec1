"""The bridge's side of one endpoint's link: requests and streams in flight over it.

An :class:`EndpointLink` multiplexes many relayed requests and event streams over the one
WebSocket an endpoint keeps open. Each request waits for its own answer with its own timeout;
a link that goes away fails everything in flight at once with 503 naming the endpoint, so a
client never hangs on an endpoint that vanished. :class:`Links` holds the links that are up.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Awaitable, Callable
from typing import Any

from ..protocol import CloseCode
from . import frames
from .errors import EndpointOffline, ProtocolViolation, RelayTimeout

__all__ = ["EndpointLink", "Links", "RelayedStream"]

Sender = Callable[[str], Awaitable[None]]

# Stream messages a bridge client may have queued before it is closed with 4008.
DEFAULT_STREAM_QUEUE = 1000


class RelayedStream:
    """One client's event stream relayed from the endpoint: its messages and its end."""

    def __init__(self, stream_id: int, *, maxsize: int) -> None:
        self.id = stream_id
        self.opened: asyncio.Future[frames.WsAccept | frames.WsRefused | frames.WsClose] = (
            asyncio.get_running_loop().create_future()
        )
        # None: the bridge client went away (put there by its reader).
        self.messages: asyncio.Queue[frames.WsMessage | frames.WsClose | None] = asyncio.Queue()
        self._maxsize = maxsize
        self.lagged = False

    def deliver(self, frame: frames.WsMessage | frames.WsClose) -> None:
        if isinstance(frame, frames.WsMessage) and self.messages.qsize() >= self._maxsize:
            # The client does not read fast enough: its pump closes it with 4008 and a
            # cursor; the rest is not queued (it would grow without bound).
            self.lagged = True
            return
        self.messages.put_nowait(frame)

    def end(self, frame: frames.WsClose) -> None:
        if not self.opened.done():
            self.opened.set_result(frame)
        self.messages.put_nowait(frame)


class EndpointLink:
    """One connected endpoint: ``send`` writes a frame to its WebSocket."""

    def __init__(
        self,
        name: str,
        info: dict[str, Any],
        send: Sender,
        *,
        hangup: Callable[[], Awaitable[None]] | None = None,
        stream_queue: int = DEFAULT_STREAM_QUEUE,
    ) -> None:
        self.name = name
        self.info = info
        self._send = send
        # Closes this link's WebSocket: used when a newer link of the endpoint replaces it.
        self.hangup = hangup
        self._lock = asyncio.Lock()
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[frames.Response]] = {}
        self._streams: dict[int, RelayedStream] = {}
        self._stream_queue = stream_queue
        self.closed = False

    async def _write(self, frame: frames.Frame) -> None:
        if self.closed:
            raise EndpointOffline(self.name)
        text = frames.encode(frame)
        try:
            async with self._lock:
                await self._send(text)
        except Exception as exc:
            raise EndpointOffline(self.name, "its link failed while sending") from exc

    async def request(
        self,
        *,
        owner: str,
        method: str,
        path: str,
        query: str,
        content_type: str | None,
        body: bytes,
        answer_within: float,
    ) -> frames.Response:
        """Relay one request and wait at most ``answer_within`` seconds for its answer."""
        request_id = next(self._ids)
        future: asyncio.Future[frames.Response] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            await self._write(
                frames.Request(
                    id=request_id,
                    owner=owner,
                    method=method,
                    path=path,
                    query=query,
                    content_type=content_type,
                    body=body,
                    timeout=answer_within,
                )
            )
            async with asyncio.timeout(answer_within):
                return await future
        except TimeoutError:
            await self._cancel(request_id)
            raise RelayTimeout(self.name, answer_within) from None
        except asyncio.CancelledError:
            # The client went away: tell the endpoint to stop working on it.
            await asyncio.shield(self._cancel(request_id))
            raise
        finally:
            self._pending.pop(request_id, None)

    async def _cancel(self, request_id: int) -> None:
        with contextlib.suppress(EndpointOffline):
            await self._write(frames.Cancel(id=request_id))

    async def open_stream(self, *, owner: str, query: str, accept_within: float) -> RelayedStream:
        """Open the endpoint's event stream; the caller reads ``messages`` and must call
        :meth:`close_stream` when done. Raises if the endpoint does not accept in time."""
        stream = RelayedStream(next(self._ids), maxsize=self._stream_queue)
        self._streams[stream.id] = stream
        try:
            await self._write(frames.WsOpen(id=stream.id, owner=owner, query=query))
            async with asyncio.timeout(accept_within):
                await stream.opened
        except TimeoutError:
            await self.close_stream(stream, code=CloseCode.GOING_AWAY)
            raise RelayTimeout(self.name, accept_within) from None
        except BaseException:
            await asyncio.shield(self.close_stream(stream, code=CloseCode.GOING_AWAY))
            raise
        return stream

    async def close_stream(self, stream: RelayedStream, *, code: int = 1000) -> None:
        if self._streams.pop(stream.id, None) is not None:
            with contextlib.suppress(EndpointOffline):
                await self._write(frames.WsClose(id=stream.id, code=code))

    def received(self, frame: frames.Frame) -> None:
        """Dispatch one frame from the endpoint (called by the link's reader)."""
        if isinstance(frame, frames.Response):
            future = self._pending.get(frame.id)
            if future is not None and not future.done():
                future.set_result(frame)
            return
        if isinstance(frame, frames.WsAccept | frames.WsRefused):
            stream = self._streams.get(frame.id)
            if stream is not None and not stream.opened.done():
                stream.opened.set_result(frame)
            if isinstance(frame, frames.WsRefused):
                self._streams.pop(frame.id, None)
            return
        if isinstance(frame, frames.WsMessage):
            if (stream := self._streams.get(frame.id)) is not None:
                stream.deliver(frame)
            return
        if isinstance(frame, frames.WsFanout):
            for stream_id in frame.ids:
                if (stream := self._streams.get(stream_id)) is not None:
                    stream.deliver(frames.WsMessage(id=stream_id, text=frame.text))
            return
        if isinstance(frame, frames.WsClose):
            if (stream := self._streams.pop(frame.id, None)) is not None:
                stream.end(frame)
            return
        raise ProtocolViolation(f"an endpoint may not send {type(frame).__name__} frames")

    def close(self) -> None:
        """The link is gone: fail every request in flight, end every stream (1012 restart,
        which a client retries from its cursor)."""
        self.closed = True
        for future in self._pending.values():
            if not future.done():
                future.set_exception(EndpointOffline(self.name, "its link dropped mid-request"))
        self._pending.clear()
        for stream in self._streams.values():
            stream.end(
                frames.WsClose(
                    id=stream.id, code=CloseCode.SERVICE_RESTART, reason="endpoint link lost"
                )
            )
        self._streams.clear()

    @property
    def in_flight(self) -> int:
        return len(self._pending) + len(self._streams)


class Links:
    """The endpoint links that are up, by endpoint name."""

    def __init__(self) -> None:
        self._links: dict[str, EndpointLink] = {}

    def get(self, name: str) -> EndpointLink:
        link = self._links.get(name)
        if link is None or link.closed:
            raise EndpointOffline(name)
        return link

    def online(self, name: str) -> bool:
        link = self._links.get(name)
        return link is not None and not link.closed

    def attach(self, link: EndpointLink) -> EndpointLink | None:
        """Make ``link`` the endpoint's link; returns the one it replaces (to be closed)."""
        old = self._links.get(link.name)
        self._links[link.name] = link
        return old

    def detach(self, link: EndpointLink) -> None:
        if self._links.get(link.name) is link:
            del self._links[link.name]
        link.close()

    def all(self) -> list[EndpointLink]:
        return list(self._links.values())
