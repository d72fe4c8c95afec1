"""Blocking event stream over the daemon's WebSocket, and a background-thread subscription.

:class:`EventStream` is an iterator of event dicts that reconnects on its own; the
:class:`Subscription` runs one in a thread and hands each event to a callback. Both deliver
each event once and in seq order across reconnects (see :mod:`.stream`).
"""

from __future__ import annotations

import contextlib
import inspect
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.sync.client import ClientConnection, connect

from .closing import Closing
from .errors import OrbitError
from .stream import StreamClosed
from .stream_base import EventStreamBase, SubscriptionBase

__all__ = ["EventCallback", "EventStream", "Subscription"]

EventCallback = Callable[[dict[str, Any]], object]

# websockets >= 17 warns unless a directly used connection says legacy=True; older ones
# have no such flag (and no warning).
_DIRECT: dict[str, Any] = (
    {"legacy": True} if "legacy" in inspect.signature(connect).parameters else {}
)


class EventStream(EventStreamBase[Callable[[], object]], Iterator[dict[str, Any]], Closing):
    """Iterator of daemon events that survives dropped connections.

    Reconnects with jittered exponential backoff and ``since`` = the last delivered seq. With
    ``cursor_file`` the position is saved when the next event is requested (or the stream is
    closed), so a restarted process resumes after the last event it finished with.
    ``give_up_after`` (seconds without a working connection) turns an endless outage into
    :class:`DaemonUnavailable`; None retries forever. ``on_reconnect`` runs after each
    reconnection, before the replay is read.
    """

    _closed: threading.Event
    _flag = threading.Event
    _ws: ClientConnection | None = None

    def __iter__(self) -> EventStream:
        return self

    def __next__(self) -> dict[str, Any]:
        try:
            event = self.get()
        except StreamClosed:
            raise StopIteration from None
        assert event is not None  # get() without a timeout only returns events
        return event

    def _on_exit(self, *, failed: bool) -> None:
        self.close(save=not failed)

    def close(self, *, save: bool = True) -> None:
        """Close the connection; with ``save`` the cursor file records the last event delivered."""
        self._closed.set()
        self._drop()
        if save:
            self._core.save()

    def get(self, timeout: float | None = None) -> dict[str, Any] | None:
        """The next event, or None when ``timeout`` seconds pass first; StreamClosed once closed."""
        self._core.save()
        deadline = None if timeout is None else time.monotonic() + timeout
        while (event := self._pending()) is None:
            ws = self._ws if self._ws is not None else self._connect(deadline)
            wait = self._core.receive_timeout(deadline)
            if ws is None or wait is None:
                return None
            try:
                raw = ws.recv(timeout=wait)
            except TimeoutError:
                if self._core.is_idle():
                    self._drop()
            except ConnectionClosed as exc:
                self._drop()
                self._lost(exc)
            else:
                if (event := self._core.received(raw)) is not None:
                    return event
        return event

    def _drop(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None:
            ws.close()

    def _connect(self, deadline: float | None) -> ClientConnection | None:
        failing_since = time.monotonic()
        while not self._closed.is_set():
            try:
                ws: ClientConnection = connect(self._core.target(), **self._options, **_DIRECT)
            except (InvalidURI, OSError, InvalidHandshake, TimeoutError, ConnectionClosed) as exc:
                # ConnectionClosed: the daemon went away in the middle of the handshake
                # (killed or restarting); websockets raises it while sending the request.
                reason = self._handshake_failed(exc)
            else:
                if self._closed.is_set():
                    ws.close()
                    break
                self._ws = ws
                if self._core.connected() and self._on_reconnect is not None:
                    # E.g. hand the credential to a daemon that restarted and lost it; a
                    # failure here must not end the stream, whose replay is still good.
                    with contextlib.suppress(OrbitError):
                        self._on_reconnect()
                return ws
            delay, expires = self._core.retry_delay(failing_since, reason, deadline)
            self._closed.wait(delay)
            if expires:
                return None
        raise StreamClosed("the event stream is closed")


class Subscription(SubscriptionBase[EventStream, EventCallback], Closing):
    """A background thread feeding stream events to ``callback``, one at a time, in order.

    Stop it with :meth:`stop` (or use it as a context manager). If the callback raises, the
    subscription stops and keeps the exception in :attr:`error`; that event counts as not
    delivered, so a cursor file still points before it.
    """

    def __init__(self, stream: EventStream, callback: EventCallback, *, name: str) -> None:
        super().__init__(stream, callback)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        try:
            while True:
                event = self._stream.get()
                if event is None:
                    continue
                self._callback(event)
                self._done()
        except Exception as exc:
            if self._ended(exc):
                self._stream.close(save=False)

    def stop(self, timeout: float | None = 10.0) -> None:
        """Stop delivering, close the connection and wait up to ``timeout`` for the thread."""
        # Events whose callback returned are committed already; one in flight is not.
        self._stream.close(save=False)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def _on_exit(self, *, failed: bool) -> None:
        self.stop()
