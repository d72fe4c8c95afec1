"""What the blocking and the asyncio event streams (and subscriptions) hold alike.

:class:`EventStreamBase` keeps the :class:`~.stream.StreamCore`, the connection options and the
reconnect hook, answers the cursor questions and turns a failed handshake or a lost
connection into "retry" or the error that ends the stream. :mod:`.sync_stream` and
:mod:`.async_stream` add only the socket calls and how they wait.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI

from .errors import DaemonUnavailable
from .stream import MAX_MESSAGE, Backoff, StreamClosed, StreamCore
from .tls import stream_ssl

__all__ = ["EventStreamBase", "SubscriptionBase"]

# The reconnect hook: a plain callable for the blocking stream, a coroutine function for
# the asyncio one.
Hook = TypeVar("Hook", bound=Callable[[], object])


class EventStreamBase(Generic[Hook]):
    # Set once the stream is closed: a threading.Event or an asyncio.Event, as the subclass
    # waits on it.
    _closed: threading.Event | asyncio.Event
    _flag: type[threading.Event] | type[asyncio.Event]

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
        on_reconnect: Hook | None = None,
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
        # websockets' connect() options. The daemon is local: a proxy would only see the
        # bearer token. TLS for a wss:// bridge: verify it against ca_bundle.
        self._options: dict[str, Any] = {
            "additional_headers": self._core.headers,
            "open_timeout": open_timeout,
            "proxy": None,
            "max_size": MAX_MESSAGE,
            **stream_ssl(url, ca_bundle),
        }
        self._on_reconnect = on_reconnect
        self._closed = self._flag()

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

    def commit(self) -> None:
        """Record the last delivered event in the cursor file now (get() also does this)."""
        self._core.save()

    def _pending(self) -> dict[str, Any] | None:
        """The next event already received (None: read the socket); StreamClosed once closed."""
        if self._closed.is_set():
            raise StreamClosed("the event stream is closed")
        return self._core.pending()

    def _lost(self, exc: ConnectionClosed) -> None:
        """The connection closed: raise if the daemon ended the stream for good, else return
        to reconnect."""
        fatal = StreamCore.closed_for_good(exc.rcvd)
        if fatal is not None and not self._closed.is_set():
            self._closed.set()
            raise fatal from None

    def _handshake_failed(self, exc: Exception) -> str:
        """Why a connection attempt failed, to retry after a delay; raises (and closes the
        stream) when no retry can help: a refused token or filter, a bad URL."""
        if isinstance(exc, InvalidStatus):
            status = exc.response.status_code
            refused = StreamCore.refused(status, bytes(exc.response.body or b""))
            if refused is not None:
                self._closed.set()
                raise refused from None
            return f"handshake answered HTTP {status}"
        if isinstance(exc, InvalidURI):
            self._closed.set()
            raise DaemonUnavailable(self._core.url, f"bad WebSocket URL: {exc}") from None
        return str(exc) or type(exc).__name__


Stream = TypeVar("Stream", bound=EventStreamBase[Any])
Callback = TypeVar("Callback", bound=Callable[[dict[str, Any]], object])


class SubscriptionBase(Generic[Stream, Callback]):
    """A worker feeding ``stream``'s events to ``callback``: its counters and its outcome."""

    def __init__(self, stream: Stream, callback: Callback) -> None:
        self._stream = stream
        self._callback = callback
        self.error: BaseException | None = None
        self.delivered = 0

    @property
    def last_seq(self) -> int | None:
        return self._stream.last_seq

    @property
    def connects(self) -> int:
        """How many connections the stream opened (1 + reconnects)."""
        return self._stream.connects

    def _done(self) -> None:
        """The callback returned: the event counts as delivered, the cursor may move past it."""
        self.delivered += 1
        self._stream.commit()

    def _ended(self, exc: Exception) -> bool:
        """Keep why the worker stopped (a thread or task has nobody to raise to); True when
        the callback failed, so the stream must close without saving past that event."""
        if isinstance(exc, StreamClosed):
            if exc.fatal:
                self.error = exc
            return False
        self.error = exc
        return True
