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
from pathlib import Path
from typing import Any

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.sync.client import ClientConnection, connect

from .closing import Closing
from .errors import DaemonUnavailable, OrbitError
from .stream import MAX_MESSAGE, Backoff, StreamClosed, StreamCore
from .tls import stream_ssl

__all__ = ["EventCallback", "EventStream", "Subscription"]

EventCallback = Callable[[dict[str, Any]], object]

# websockets >= 17 warns unless a directly used connection says legacy=True; older ones
# have no such flag (and no warning).
_DIRECT: dict[str, Any] = (
    {"legacy": True} if "legacy" in inspect.signature(connect).parameters else {}
)


class EventStream(Iterator[dict[str, Any]], Closing):
    """Iterator of daemon events that survives dropped connections.

    Reconnects with jittered exponential backoff and ``since`` = the last delivered seq. With
    ``cursor_file`` the position is saved when the next event is requested (or the stream is
    closed), so a restarted process resumes after the last event it finished with.
    ``give_up_after`` (seconds without a working connection) turns an endless outage into
    :class:`DaemonUnavailable`; None retries forever. ``on_reconnect`` runs after each
    reconnection, before the replay is read.
    """

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
        on_reconnect: Callable[[], object] | None = None,
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
        self._closed = threading.Event()

    @property
    def connects(self) -> int:
        """How many connections the stream opened (1 + reconnects)."""
        return self._core.connects

    @property
    def pruned_through(self) -> int | None:
        """Set when the stream started behind events that retention deleted: events up to
        this seq of finished tasks are gone, and the task rows (``list_tasks``,
        ``history(view="tasks")``) hold their final state. None: nothing was missed."""
        return self._core.cursor.pruned_through

    @property
    def last_seq(self) -> int | None:
        """Seq of the last event delivered (None before the first event or heartbeat)."""
        return self._core.cursor.last_seq

    @property
    def head(self) -> int | None:
        """The daemon's last committed seq, as told by its latest heartbeat."""
        return self._core.cursor.head

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
        while True:
            if self._closed.is_set():
                raise StreamClosed("the event stream is closed")
            event = self._core.pending()
            if event is not None:
                return event
            ws = self._ws
            if ws is None:
                ws = self._connect(deadline)
                if ws is None:
                    return None
            wait = self._core.receive_timeout(deadline)
            if wait is None:
                return None
            try:
                raw = ws.recv(timeout=wait)
            except TimeoutError:
                if self._core.is_idle():
                    self._drop()
                continue
            except ConnectionClosed as exc:
                self._drop()
                fatal = StreamCore.closed_for_good(exc.rcvd)
                if fatal is not None and not self._closed.is_set():
                    self._closed.set()
                    raise fatal from None
                continue
            event = self._core.received(raw)
            if event is not None:
                return event

    def commit(self) -> None:
        """Record the last delivered event in the cursor file now (get() also does this)."""
        self._core.save()

    def _drop(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None:
            ws.close()

    def _connect(self, deadline: float | None) -> ClientConnection | None:
        failing_since = time.monotonic()
        while not self._closed.is_set():
            reason = ""
            try:
                ws: ClientConnection = connect(
                    self._core.target(),
                    additional_headers=self._core.headers,
                    open_timeout=self._open_timeout,
                    # The daemon is local; a proxy would only see the bearer token.
                    proxy=None,
                    max_size=MAX_MESSAGE,
                    **self._ssl,
                    **_DIRECT,
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
            except (OSError, InvalidHandshake, TimeoutError, ConnectionClosed) as exc:
                # ConnectionClosed: the daemon went away in the middle of the handshake
                # (killed or restarting); websockets raises it while sending the request.
                reason = str(exc) or type(exc).__name__
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


class Subscription(Closing):
    """A background thread feeding stream events to ``callback``, one at a time, in order.

    Stop it with :meth:`stop` (or use it as a context manager). If the callback raises, the
    subscription stops and keeps the exception in :attr:`error`; that event counts as not
    delivered, so a cursor file still points before it.
    """

    def __init__(self, stream: EventStream, callback: EventCallback, *, name: str) -> None:
        self._stream = stream
        self._callback = callback
        self.error: BaseException | None = None
        self.delivered = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def last_seq(self) -> int | None:
        return self._stream.last_seq

    @property
    def connects(self) -> int:
        """How many connections the stream opened (1 + reconnects)."""
        return self._stream.connects

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
                self.delivered += 1
                self._stream.commit()
        except StreamClosed as exc:
            if exc.fatal:
                self.error = exc
        except Exception as exc:
            # Kept for the application to inspect: a thread has nobody to raise to.
            self.error = exc
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
