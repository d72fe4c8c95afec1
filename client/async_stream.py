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
from types import TracebackType
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from . import calls
from .errors import DaemonUnavailable, OrbitError
from .stream import (
    Backoff,
    CursorFile,
    ReplayCursor,
    StreamClosed,
    decode_message,
    handshake_error,
    is_fatal_close,
    starting_seq,
)

__all__ = ["AsyncEventCallback", "AsyncEventStream", "AsyncSubscription"]

AsyncEventCallback = Callable[[dict[str, Any]], Awaitable[object] | object]

# Not 403: see sync_stream (uvicorn's answer while the daemon shuts down).
_FATAL_HANDSHAKE = frozenset({400, 401, 404, 422})


class AsyncEventStream(AsyncIterator[dict[str, Any]]):
    """Async iterator of daemon events that reconnects by itself (see :class:`EventStream`)."""

    def __init__(
        self,
        *,
        url: str,
        token: str,
        since: int | None = None,
        session_id: str | None = None,
        task_id: str | None = None,
        topic: str | None = None,
        cursor_file: str | None = None,
        # Timeouts
        open_timeout: float = 10.0,
        idle_timeout: float = 30.0,
        give_up_after: float | None = None,
        backoff: Backoff | None = None,
        on_reconnect: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        self._url = url
        self._auth = {"Authorization": f"Bearer {token}"}
        self._filters = {"session_id": session_id, "task_id": task_id, "topic": topic}
        self._cursor_file = CursorFile(cursor_file) if cursor_file else None
        self._cursor = ReplayCursor(starting_seq(since, self._cursor_file))
        self._open_timeout = open_timeout
        self._idle_timeout = idle_timeout
        self._give_up_after = give_up_after
        self._backoff = backoff or Backoff()
        self._on_reconnect = on_reconnect
        self._ws: ClientConnection | None = None
        self._closed = asyncio.Event()
        self._unsaved: int | None = None
        self._last_message = 0.0
        self.connects = 0

    @property
    def last_seq(self) -> int | None:
        return self._cursor.last_seq

    @property
    def head(self) -> int | None:
        return self._cursor.head

    def __aiter__(self) -> AsyncEventStream:
        return self

    async def __anext__(self) -> dict[str, Any]:
        try:
            event = await self.get()
        except StreamClosed:
            raise StopAsyncIteration from None
        assert event is not None  # get() without a timeout only returns events
        return event

    async def __aenter__(self) -> AsyncEventStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose(save=exc is None)

    async def aclose(self, *, save: bool = True) -> None:
        self._closed.set()
        ws, self._ws = self._ws, None
        if ws is not None:
            await ws.close()
        if save:
            self.commit()

    def commit(self) -> None:
        """Record the last delivered event in the cursor file now (get() also does this)."""
        if self._cursor_file is not None and self._unsaved is not None:
            self._cursor_file.save(self._unsaved)
            self._unsaved = None

    # A timeout parameter (not asyncio.timeout) so a timeout returns None, like the sync stream.
    async def get(self, timeout: float | None = None) -> dict[str, Any] | None:  # noqa: ASYNC109
        """The next event; None when ``timeout`` seconds pass first."""
        self.commit()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._closed.is_set():
                raise StreamClosed("the event stream is closed")
            ws = self._ws
            if ws is None:
                ws = await self._connect(deadline)
                if ws is None:
                    return None
            wait = self._idle_timeout
            if deadline is not None:
                wait = min(wait, deadline - time.monotonic())
                if wait <= 0:
                    return None
            try:
                raw = await asyncio.wait_for(ws.recv(), wait)
            except TimeoutError:
                if time.monotonic() - self._last_message >= self._idle_timeout:
                    await self._drop()
                continue
            except ConnectionClosed as exc:
                await self._drop()
                code = exc.rcvd.code if exc.rcvd is not None else None
                if is_fatal_close(code) and not self._closed.is_set():
                    reason = exc.rcvd.reason if exc.rcvd is not None else ""
                    self._closed.set()
                    raise StreamClosed(
                        f"the daemon ended the stream: {code} {reason}", fatal=True
                    ) from None
                continue
            self._last_message = time.monotonic()
            self._backoff.reset()
            event = self._cursor.accept(decode_message(raw))
            if event is not None:
                self._unsaved = self._cursor.last_seq
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
            target = calls.websocket_url(self._url, since=self._cursor.last_seq, **self._filters)
            reason = ""
            try:
                ws = await connect(
                    target,
                    additional_headers=self._auth,
                    open_timeout=self._open_timeout,
                    proxy=None,
                    max_size=2**22,
                )
            except InvalidStatus as exc:
                status = exc.response.status_code
                if status in _FATAL_HANDSHAKE:
                    self._closed.set()
                    raise handshake_error(status, bytes(exc.response.body or b"")) from None
                reason = f"handshake answered HTTP {status}"
            except InvalidURI as exc:
                self._closed.set()
                raise DaemonUnavailable(self._url, f"bad WebSocket URL: {exc}") from None
            except (OSError, InvalidHandshake, TimeoutError) as exc:
                reason = str(exc) or type(exc).__name__
            else:
                if self._closed.is_set():
                    await ws.close()
                    break
                self._ws = ws
                self.connects += 1
                self._last_message = time.monotonic()
                if self.connects > 1 and self._on_reconnect is not None:
                    with contextlib.suppress(OrbitError):
                        await self._on_reconnect()
                return ws
            now = time.monotonic()
            if self._give_up_after is not None and now - failing_since >= self._give_up_after:
                raise DaemonUnavailable(self._url, reason)
            delay = self._backoff.next_delay()
            if deadline is not None and now + delay >= deadline:
                await self._sleep(max(0.0, deadline - now))
                return None
            await self._sleep(delay)
        raise StreamClosed("the event stream is closed")


class AsyncSubscription:
    """An asyncio task feeding stream events to ``callback`` (plain or async), in order."""

    def __init__(self, stream: AsyncEventStream, callback: AsyncEventCallback) -> None:
        self._stream = stream
        self._callback = callback
        self.error: BaseException | None = None
        self.delivered = 0
        self._task = asyncio.get_running_loop().create_task(self._run())

    @property
    def last_seq(self) -> int | None:
        return self._stream.last_seq

    @property
    def connects(self) -> int:
        """How many connections the stream opened (1 + reconnects)."""
        return self._stream.connects

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
                self.delivered += 1
                self._stream.commit()
        except StreamClosed as exc:
            if exc.fatal:
                self.error = exc
        except Exception as exc:
            self.error = exc
            await self._stream.aclose(save=False)

    async def stop(self) -> None:
        await self._stream.aclose(save=False)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def wait(self) -> None:
        await asyncio.shield(self._task)

    async def __aenter__(self) -> AsyncSubscription:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
