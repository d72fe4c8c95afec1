"""Live subscription to committed events, with a bounded buffer per subscriber.

The ledger offers each committed batch to every subscriber on the event loop, in seq order.
A subscriber whose buffer would exceed ``maxsize`` events is marked lagged: its buffer is
dropped at once (memory stays bounded, the writer never waits), and its iterator raises
:class:`~.errors.SubscriberLagged` with ``resume_from`` = the last seq it yielded, so the
consumer can continue with ``events_since(resume_from)`` and a new subscription.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import deque
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Protocol

from .errors import SubscriberLagged
from .events import StoredEvent

__all__ = ["CommitSink", "LagBuffer", "LiveFeed"]


class CommitSink(Protocol):
    """Anything the ledger hands each committed batch to, on the event loop, in seq order.

    ``offer`` must never wait: the ledger calls every sink before it wakes the appenders.
    """

    def offer(self, events: list[StoredEvent]) -> None: ...


@dataclasses.dataclass(eq=False, kw_only=True)
class LagBuffer:
    """A bounded buffer of committed events with a single waiter, filled without ever
    waiting: a batch that would take it past ``maxsize`` events marks it lagged and drops
    what it holds (memory stays bounded, the writer never waits); its reader then resumes
    from the ledger. Cheaper than an asyncio.Queue when a thousand of them are fed the same
    event."""

    maxsize: int
    lagged: bool = dataclasses.field(default=False, init=False)
    _buffer: deque[StoredEvent] = dataclasses.field(default_factory=deque, init=False, repr=False)
    _waiter: asyncio.Future[None] | None = dataclasses.field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.maxsize < 1:
            raise ValueError(f"maxsize must be at least 1, got {self.maxsize}")

    def put(self, events: Sequence[StoredEvent]) -> None:
        """Buffer ``events`` (or mark the buffer lagged) and wake the reader."""
        if self.lagged:
            return
        if len(self._buffer) + len(events) > self.maxsize:
            self.lagged = True
            self._buffer.clear()
        else:
            self._buffer.extend(events)
        self.wake()

    def wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


@dataclasses.dataclass(eq=False, kw_only=True)
class LiveFeed(LagBuffer):
    """Async iterator of live events committed after ``start_seq``.

    ``start_seq`` is the ledger head when the subscription was made: replaying
    ``events_since(cursor, until=start_seq)`` first and then iterating gives every event
    after ``cursor`` exactly once. Iteration ends (StopAsyncIteration) when the subscription
    or the ledger is closed (``on_close`` is then told).
    """

    start_seq: int
    on_close: Callable[[LiveFeed], None] = dataclasses.field(repr=False)
    _last: int = dataclasses.field(init=False, repr=False)
    _closed: bool = dataclasses.field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        self._last = self.start_seq

    @property
    def last_seq(self) -> int:
        """The seq of the last event this iterator yielded (``start_seq`` before any)."""
        return self._last

    def offer(self, events: list[StoredEvent]) -> None:
        """Called by the ledger on the event loop with each committed batch, in seq order."""
        if not self._closed:
            self.put(events)

    def close(self) -> None:
        """Stop receiving; events already buffered are still yielded."""
        self._closed = True
        self.on_close(self)
        self.wake()

    def __aiter__(self) -> LiveFeed:
        return self

    async def __anext__(self) -> StoredEvent:
        while True:
            if self._buffer:
                event = self._buffer.popleft()
                self._last = event.seq
                return event
            if self.lagged:
                raise SubscriberLagged(resume_from=self._last)
            if self._closed:
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def __enter__(self) -> LiveFeed:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
