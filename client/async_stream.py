"""asyncio event stream over the daemon's WebSocket, and a task-based subscription.

The asyncio twin of :mod:`.sync_stream`: same cursor, de-duplication and backoff (from
:mod:`.stream`), only the socket calls differ.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from .closing import AsyncClosing
from .errors import OrbitError
from .stream import StreamClosed
from .stream_base import EventStreamBase, SubscriptionBase

__all__ = ["AsyncEventCallback", "AsyncEventStream", "AsyncSubscription"]

AsyncEventCallback = Callable[[dict[str, Any]], Awaitable[object] | object]


class AsyncEventStream(
    EventStreamBase[Callable[[], Awaitable[object]]], AsyncIterator[dict[str, Any]], AsyncClosing
):
    """Async iterator of daemon events that reconnects by itself (see :class:`EventStream`)."""

    _closed: asyncio.Event
    _flag = asyncio.Event
    _ws: ClientConnection | None = None

    def __aiter__(self) -> AsyncEventStream:
        return self

    async def __anext__(self) -> dict[str, Any]:
        try:
            event = await self.get()
        except StreamClosed:
            raise StopAsyncIteration from None
        assert event is not None  # get() without a timeout only returns events
        return event

    async def _on_exit(self, *, failed: bool) -> None:
        await self.aclose(save=not failed)

    async def aclose(self, *, save: bool = True) -> None:
        self._closed.set()
        await self._drop()
        if save:
            self._core.save()

    # A timeout parameter (not asyncio.timeout) so a timeout returns None, like the sync stream.
    async def get(self, timeout: float | None = None) -> dict[str, Any] | None:  # noqa: ASYNC109
        """The next event; None when ``timeout`` seconds pass first."""
        self._core.save()
        deadline = None if timeout is None else time.monotonic() + timeout
        while (event := self._pending()) is None:
            ws = self._ws if self._ws is not None else await self._connect(deadline)
            wait = self._core.receive_timeout(deadline)
            if ws is None or wait is None:
                return None
            try:
                raw = await asyncio.wait_for(ws.recv(), wait)
            except TimeoutError:
                if self._core.is_idle():
                    await self._drop()
            except ConnectionClosed as exc:
                await self._drop()
                self._lost(exc)
            else:
                if (event := self._core.received(raw)) is not None:
                    return event
        return event

    async def _drop(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None:
            await ws.close()

    async def _sleep(self, delay: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closed.wait(), delay)

    async def _connect(self, deadline: float | None) -> ClientConnection | None:
        failing_since = time.monotonic()
        while not self._closed.is_set():
            try:
                ws = await connect(self._core.target(), **self._options)
            except (InvalidURI, OSError, InvalidHandshake, TimeoutError) as exc:
                reason = self._handshake_failed(exc)
            else:
                if self._closed.is_set():
                    await ws.close()
                    break
                self._ws = ws
                if self._core.connected() and self._on_reconnect is not None:
                    with contextlib.suppress(OrbitError):
                        await self._on_reconnect()
                return ws
            delay, expires = self._core.retry_delay(failing_since, reason, deadline)
            await self._sleep(delay)
            if expires:
                return None
        raise StreamClosed("the event stream is closed")


class AsyncSubscription(SubscriptionBase[AsyncEventStream, AsyncEventCallback], AsyncClosing):
    """An asyncio task feeding stream events to ``callback`` (plain or async), in order."""

    def __init__(self, stream: AsyncEventStream, callback: AsyncEventCallback) -> None:
        super().__init__(stream, callback)
        self._task = asyncio.get_running_loop().create_task(self._run())

    @property
    def running(self) -> bool:
        return not self._task.done()

    async def _run(self) -> None:
        try:
            while True:
                event = await self._stream.get()
                if event is None:
                    continue
                result = self._callback(event)
                if inspect.isawaitable(result):
                    await result
                self._done()
        except Exception as exc:
            if self._ended(exc):
                await self._stream.aclose(save=False)

    async def stop(self) -> None:
        await self._stream.aclose(save=False)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def wait(self) -> None:
        await asyncio.shield(self._task)

    async def _on_exit(self, *, failed: bool) -> None:
        await self.stop()
