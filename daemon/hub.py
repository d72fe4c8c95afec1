"""Fan-out of committed ledger events to WebSocket clients and waiters.

One ledger subscription feeds the hub; the hub puts each event into the bounded queue of
every listener whose filter matches, without ever waiting. A listener whose queue is full
is marked ``lagged`` (its connection is then closed with 4008 "resume from <seq>"), so a
slow client costs the others nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from typing import Any

from radical.orbit.ledger.errors import SubscriberLagged

from .logs import get_logger
from .store import Store, StoredEvent

__all__ = ["TOPICS", "EventHub", "Listener", "message_for", "topic_of"]

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


@dataclasses.dataclass(eq=False)
class Listener:
    owner: str
    session_id: str | None = None
    task_id: str | None = None
    topics: frozenset[str] | None = None
    maxsize: int = 1000
    queue: asyncio.Queue[StoredEvent] = dataclasses.field(init=False)
    lagged: bool = False
    # Set when the listener lagged, so a waiting reader notices at once.
    alarm: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.queue = asyncio.Queue(maxsize=self.maxsize)

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
        try:
            self.queue.put_nowait(stored)
        except asyncio.QueueFull:
            self.lagged = True
            self.alarm.set()


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

    async def _pump(self, sub: Any) -> None:
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
                    listener.alarm.set()
                with contextlib.suppress(Exception):
                    await sub.aclose() if hasattr(sub, "aclose") else None
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
