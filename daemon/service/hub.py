"""Fan-out of committed ledger events to WebSocket clients and waiters.

The hub is attached to the ledger as a commit sink: after each COMMIT the ledger hands it
the batch on the event loop, and the hub puts each event into the bounded buffer of every
listener whose filter matches, without ever waiting. That buffer is the only one between a
commit and a client. A listener whose buffer is full is marked ``lagged`` (its connection is
then closed with CloseCode.LAGGED "resume from <seq>"), so a slow client costs the others
nothing.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
from typing import Any

from ...ledger.feed import LagBuffer
from ...protocol import build_envelope, encode_message, topic_of
from .store import Store, StoredEvent

__all__ = ["EventHub", "Listener", "message_for", "message_text", "text_cache_size"]


def message_for(stored: StoredEvent) -> dict[str, Any]:
    """The JSON envelope of an event, for WebSocket clients and the history route."""
    return build_envelope(
        seq=stored.seq,
        time=stored.time,
        kind=stored.kind,
        session_id=stored.session_id,
        task_id=stored.task_id,
        data=stored.data,
    )


# The cache of envelope texts is bounded in entries and in bytes; an event larger than
# _TEXT_CACHE_ITEM (a submit_requested of a large transfer) is encoded for each use instead.
_TEXT_CACHE = 4096
_TEXT_CACHE_BYTES = 8 * 2**20
_TEXT_CACHE_ITEM = 256 * 2**10
_texts: collections.OrderedDict[int, str] = collections.OrderedDict()
_text_bytes = 0


def message_text(stored: StoredEvent) -> str:
    """The JSON text of an event's envelope, built once for all listeners that get it
    (the daemon has one ledger, so seq identifies an event)."""
    global _text_bytes
    text = _texts.get(stored.seq)
    if text is None:
        text = encode_message(message_for(stored))
        if len(text) <= _TEXT_CACHE_ITEM:
            _texts[stored.seq] = text
            _text_bytes += len(text)
            while len(_texts) > _TEXT_CACHE or _text_bytes > _TEXT_CACHE_BYTES:
                _, dropped = _texts.popitem(last=False)
                _text_bytes -= len(dropped)
    return text


def text_cache_size() -> tuple[int, int]:
    """(entries, characters) held by the envelope text cache."""
    return len(_texts), _text_bytes


@dataclasses.dataclass(eq=False, kw_only=True)
class Listener(LagBuffer):
    """The bounded buffer of one WebSocket client or waiter: the events of its owner that
    match its filter (a session, a task, topics)."""

    owner: str
    session_id: str | None = None
    task_id: str | None = None
    topics: frozenset[str] | None = None
    maxsize: int = 1000

    def matches(self, stored: StoredEvent) -> bool:
        return self.accepts(stored.owner, stored.session_id, stored.task_id, stored.kind)

    def accepts(
        self, owner: str | None, session_id: str | None, task_id: str | None, kind: str
    ) -> bool:
        if owner != self.owner:
            return False
        if self.session_id is not None and session_id != self.session_id:
            return False
        if self.task_id is not None and task_id != self.task_id:
            return False
        return self.topics is None or topic_of(kind) in self.topics

    def offer(self, stored: StoredEvent) -> None:
        # Too slow: the buffer is dropped; the reader closes with "resume from <last sent>".
        self.put((stored,))

    def clear(self) -> None:
        self._buffer.clear()
        self.lagged = False

    async def next(self, seconds: float) -> StoredEvent | None:
        """The next buffered event; None after ``seconds``, on lag, or when woken."""
        if self._buffer:
            return self._buffer.popleft()
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
        return self._buffer.popleft() if self._buffer else None


class EventHub:
    """The ledger's commit sink for the daemon: committed batch -> matching listeners."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._listeners: set[Listener] = set()
        self._attached = False
        self.head = 0

    def __len__(self) -> int:
        return len(self._listeners)

    async def start(self) -> None:
        self.head = self._store.attach(self)
        self._attached = True

    def offer(self, events: list[StoredEvent]) -> None:
        """Called by the ledger on the event loop after each commit, in seq order."""
        for stored in events:
            for listener in list(self._listeners):
                if listener.matches(stored):
                    listener.offer(stored)
        if events:
            self.head = max(self.head, events[-1].seq)

    def attach(self, listener: Listener) -> Listener:
        self._listeners.add(listener)
        return listener

    def detach(self, listener: Listener) -> None:
        self._listeners.discard(listener)

    async def close(self) -> None:
        if self._attached:
            self._store.detach(self)
            self._attached = False
