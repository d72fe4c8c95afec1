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
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from .closing import AsyncClosing
from .errors import DaemonUnavailable, OrbitError
from .stream import MAX_MESSAGE, Backoff, StreamClosed, StreamCore
from .tls import stream_ssl

__all__ = ["AsyncEventCallback", "AsyncEventStream", "AsyncSubscription"]

AsyncEventCallback = Callable[[dict[str, Any]], Awaitable[object] | object]


class AsyncEventStream(AsyncIterator[dict[str, Any]], AsyncClosing):
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
        ca_bundle: str | None = None,
        on_reconnect: Callable[[], Awaitable[object]] | None = None,
        endpoint_file: Path | None = None,
    ) -> None:
        self._core = StreamCore(
            url=url,
            token=token,
            since=since,
            session_id=session_id,
            task_id=task_id,
            topic=topic,
            cursor_file=cursor_file,
            idle_timeout=idle_timeout,
            give_up_after=give_up_after,
            backoff=backoff,
            endpoint_file=endpoint_file,
        )
        self._open_timeout = open_timeout
        # TLS for a wss:// bridge: verify it against this bundle.
        self._ssl = stream_ssl(url, ca_bundle)
        self._on_reconnect = on_reconnect
        self._ws: ClientConnection | None = None
        self._closed = asyncio.Event()

    @property
    def connects(self) -> int:
        return self._core.connects

    @property
    def pruned_through(self) -> int | None:
        """Set when the stream started behind events that retention deleted: events up to
        this seq of finished tasks are gone, and the task rows (``list_tasks``,
        ``history(view="tasks")``) hold their final state. None: nothing was missed."""
        return self._core.cursor.pruned_through

    @property
    def last_seq(self) -> int | None:
        return self._core.cursor.last_seq

    @property
    def head(self) -> int | None:
        return self._core.cursor.head

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

    def commit(self) -> None:
        """Record the last delivered event in the cursor file now (get() also does this)."""
        self._core.save()

    # A timeout parameter (not asyncio.timeout) so a timeout returns None, like the sync stream.
    async def get(self, timeout: float | None = None) -> dict[str, Any] | None:  # noqa: ASYNC109
        """The next event; None when ``timeout`` seconds pass first."""
        self._core.save()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._closed.is_set():
                raise StreamClosed("the event stream is closed")
            event = self._core.pending()
            if event is not None:
                return event
            ws = self._ws
            if ws is None:
                ws = await self._connect(deadline)
                if ws is None:
                    return None
            wait = self._core.receive_timeout(deadline)
            if wait is None:
                return None
            try:
                raw = await asyncio.wait_for(ws.recv(), wait)
            except TimeoutError:
                if self._core.is_idle():
                    await self._drop()
                continue
            except ConnectionClosed as exc:
                await self._drop()
                fatal = StreamCore.closed_for_good(exc.rcvd)
                if fatal is not None and not self._closed.is_set():
                    self._closed.set()
                    raise fatal from None
                continue
            event = self._core.received(raw)
            if event is not None:
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
            reason = ""
            try:
                ws = await connect(
                    self._core.target(),
                    additional_headers=self._core.headers,
                    open_timeout=self._open_timeout,
                    proxy=None,
                    max_size=MAX_MESSAGE,
                    **self._ssl,
                )
            except InvalidStatus as exc:
                status = exc.response.status_code
                refused = StreamCore.refused(status, bytes(exc.response.body or b""))
                if refused is not None:
                    self._closed.set()
                    raise refused from None
                reason = f"handshake answered HTTP {status}"
            except InvalidURI as exc:
                self._closed.set()
                raise DaemonUnavailable(self._core.url, f"bad WebSocket URL: {exc}") from None
            except (OSError, InvalidHandshake, TimeoutError) as exc:
                reason = str(exc) or type(exc).__name__
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


class AsyncSubscription(AsyncClosing):
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

    async def _on_exit(self, *, failed: bool) -> None:
        await self.stop()
