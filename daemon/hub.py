"""Fan-out of committed ledger events to WebSocket clients and waiters.

One ledger subscription feeds the hub; the hub puts each event into the bounded queue of
every listener whose filter matches, without ever waiting. A listener whose queue is full
is marked ``lagged`` (its connection is then closed with 4008 "resume from <seq>"), so a
slow client costs the others nothing.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
from typing import Any

from radical.orbit.ledger.errors import SubscriberLagged
from radical.orbit.ledger.subscription import Subscription

from .logs import get_logger
from .store import Store, StoredEvent

__all__ = ["TOPICS", "EventHub", "Listener", "message_for", "message_text", "topic_of"]

log = get_logger(__name__)

_TRANSFER_STATUS = frozenset(
    {"task_submitted", "delete_submitted", "task_state_changed", "task_progress"}
)
_SESSION = frozenset({"session_opened", "session_closed", "credential_expired"})
TOPICS = frozenset({"transfer_status", "session", "task"})
_STATUS_FIELDS = (
    "task_id",
    "status",
    "label",
    "bytes_transferred",
    "files_transferred",
    "nice_status",
)


def topic_of(kind: str) -> str:
    if kind in _TRANSFER_STATUS:
        return "transfer_status"
    if kind in _SESSION:
        return "session"
    return "task"


def message_for(stored: StoredEvent) -> dict[str, Any]:
    """The JSON envelope of an event, for WebSocket clients and the history route."""
    topic = topic_of(stored.kind)
    if topic == "transfer_status":
        data: dict[str, Any] = {k: stored.data.get(k) for k in _STATUS_FIELDS}
        data.setdefault("bytes_transferred", 0)
        if data["bytes_transferred"] is None:
            data["bytes_transferred"] = 0
        if data["files_transferred"] is None:
            data["files_transferred"] = 0
    else:
        data = dict(stored.data)
    return {
        "type": "event",
        "seq": stored.seq,
        "time": stored.time,
        "topic": topic,
        "kind": stored.kind,
        "session_id": stored.session_id,
        "task_id": stored.task_id,
        "data": data,
    }


_TEXT_CACHE = 4096
_texts: collections.OrderedDict[int, str] = collections.OrderedDict()


def message_text(stored: StoredEvent) -> str:
    """The JSON text of an event's envelope, built once for all listeners that get it
    (the daemon has one ledger, so seq identifies an event)."""
    text = _texts.get(stored.seq)
    if text is None:
        text = json.dumps(message_for(stored), separators=(",", ":"))
        _texts[stored.seq] = text
        if len(_texts) > _TEXT_CACHE:
            _texts.popitem(last=False)
    return text


class Listener:
    """A bounded buffer of matching events with a single waiter (cheaper than a Queue when
    a thousand of them are fed the same event)."""

    def __init__(
        self,
        *,
        owner: str,
        session_id: str | None = None,
        task_id: str | None = None,
        topics: frozenset[str] | None = None,
        maxsize: int = 1000,
    ) -> None:
        self.owner = owner
        self.session_id = session_id
        self.task_id = task_id
        self.topics = topics
        self.maxsize = maxsize
        self.lagged = False
        self._items: collections.deque[StoredEvent] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None

    def matches(self, stored: StoredEvent) -> bool:
        if stored.owner != self.owner:
            return False
        if self.session_id is not None and stored.session_id != self.session_id:
            return False
        if self.task_id is not None and stored.task_id != self.task_id:
            return False
        return self.topics is None or topic_of(stored.kind) in self.topics

    def offer(self, stored: StoredEvent) -> None:
        if self.lagged:
            return
        if len(self._items) >= self.maxsize:
            # Too slow: drop the buffer; the reader closes with "resume from <last sent>".
            self.lagged = True
            self._items.clear()
        else:
            self._items.append(stored)
        self.wake()

    def wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def clear(self) -> None:
        self._items.clear()
        self.lagged = False

    async def next(self, seconds: float) -> StoredEvent | None:
        """The next buffered event; None after ``seconds``, on lag, or when woken."""
        if self._items:
            return self._items.popleft()
        if self.lagged or seconds <= 0:
            return None
        waiter = asyncio.get_running_loop().create_future()
        self._waiter = waiter
        try:
            async with asyncio.timeout(seconds):
                await waiter
        except TimeoutError:
            return None
        finally:
            self._waiter = None
        return self._items.popleft() if self._items else None


class EventHub:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._listeners: set[Listener] = set()
        self._task: asyncio.Task[None] | None = None
        self.head = 0

    def __len__(self) -> int:
        return len(self._listeners)

    async def start(self) -> None:
        self.head = await self._store.head()
        sub = self._store.subscribe(maxsize=100_000)
        self._task = asyncio.create_task(self._pump(sub), name="event-hub")

    async def _pump(self, sub: Subscription) -> None:
        while True:
            try:
                async for stored in sub:
                    self.head = max(self.head, stored.seq)
                    for listener in list(self._listeners):
                        if listener.matches(stored):
                            listener.offer(stored)
                return
            except SubscriberLagged:
                # The hub itself fell behind (should not happen: it never waits). Every
                # listener may have missed events: make them all resume from the ledger.
                log.error("event hub lagged behind the ledger; resetting listeners")
                for listener in list(self._listeners):
                    listener.lagged = True
                    listener.wake()
                sub.close()
                sub = self._store.subscribe(maxsize=100_000)

    def attach(self, listener: Listener) -> Listener:
        self._listeners.add(listener)
        return listener

    def detach(self, listener: Listener) -> None:
        self._listeners.discard(listener)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
