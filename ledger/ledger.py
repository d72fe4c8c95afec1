"""The asyncio face of the ledger: append, reads, replay and live subscription.

One writer thread owns the only writing connection (:mod:`.writer`); reads run on a small
pool of read-only connections in their own threads. In WAL mode a reader sees the last
commit and neither waits for the writer nor makes it wait, so reads never slow appends down
beyond sharing the CPU.

Durability: ``append`` returns after the COMMIT of its batch returned with
``synchronous=FULL`` in WAL mode, i.e. after the WAL was fsynced: an acknowledged event
survives a process crash and a power loss. An append cancelled while waiting may still have
been committed (it is then visible to readers and subscribers like any other).
"""

from __future__ import annotations

import asyncio
import functools
import queue
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from ..migrations import Migration, load_migrations
from .errors import EventTypeError, LedgerClosed
from .events import Event, StoredEvent, encode_event
from .feed import CommitSink, LiveFeed
from .fold import SubmissionRow, TaskRow, submission_key
from .schema import connect, migrate
from .store import (
    RawEvent,
    dumps,
    open_submissions,
    pending_submissions,
    projection_snapshot,
    raise_sequence,
    read_event_page,
    read_raw_event_page,
    read_submission,
    read_task,
    read_tasks,
    rebuild,
    sequence_high_water,
)
from .writer import AppendRequest, CallRequest, Encoded, Outcome, Writer

__all__ = ["Ledger"]

T = TypeVar("T")


class _Readers:
    """Read-only connections, one per pool thread at most, opened on first use."""

    def __init__(self, path: Path, *, size: int) -> None:
        self._path = path
        self._executor = ThreadPoolExecutor(max_workers=size, thread_name_prefix="ledger-reader")
        self._idle: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._all: list[sqlite3.Connection] = []

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, self._call, fn)
        except RuntimeError as exc:
            if "shutdown" in str(exc):
                raise LedgerClosed("the ledger was closed") from None
            raise

    def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        try:
            conn = self._idle.get_nowait()
        except queue.Empty:
            conn = connect(self._path, readonly=True)
            self._all.append(conn)
        try:
            return fn(conn)
        finally:
            self._idle.put(conn)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        for conn in self._all:
            conn.close()


def _open_sync(
    path: Path, migrations: Sequence[Migration], min_seq: int = 0
) -> tuple[sqlite3.Connection, int]:
    conn = connect(path)
    try:
        migrate(conn, path=path, migrations=migrations, rebuild=rebuild)
        head, _ = sequence_high_water(conn)
        if head < min_seq:
            raise_sequence(conn, min_seq)
            head, _ = sequence_high_water(conn)
    except BaseException:
        conn.close()
        raise
    return conn, head


class Ledger:
    """Event-sourced task ledger in one SQLite file. Build it with ``await Ledger.open()``."""

    def __init__(
        self,
        *,
        path: Path,
        writer_conn: sqlite3.Connection,
        head: int,
        readers: int,
        max_batch: int,
        page_size: int,
        page_bytes: int = 2**20,
    ) -> None:
        self.path = path
        self._loop = asyncio.get_running_loop()
        self._head = head
        self._page_size = page_size
        # Event data read per page at most (one event at least): a page of a thousand 2 MB
        # events must not be read into memory at once.
        self._page_bytes = page_bytes
        self._closed = False
        self._sinks: set[CommitSink] = set()
        self._readers = _Readers(path, size=readers)
        self._writer = Writer(
            writer_conn, loop=self._loop, deliver=self._deliver, max_batch=max_batch
        )
        self._writer.start()

    @classmethod
    async def open(
        cls,
        path: str | Path,
        *,
        readers: int = 2,
        max_batch: int = 5000,
        page_size: int = 1000,
        migrations: Sequence[Migration] | None = None,
        min_seq: int = 0,
    ) -> Ledger:
        """Open (or create) the ledger at ``path`` and bring its schema up to date.

        ``max_batch`` bounds the events of one group commit; ``page_size`` the rows read per
        query by ``events_since``; ``migrations`` replaces the shipped ones (tests only).
        ``min_seq``: seqs handed out from now on are above it, even if the file's own
        high-water mark is lower (a file restored from a backup older than seqs already
        given to clients). Raises SchemaTooNew for a file written by a newer version,
        MigrationFailed when an upgrade failed (the file is then as it was).
        """
        path = Path(path)
        found = tuple(load_migrations() if migrations is None else migrations)
        conn, head = await asyncio.to_thread(_open_sync, path, found, min_seq)
        return cls(
            path=path,
            writer_conn=conn,
            head=head,
            readers=readers,
            max_batch=max_batch,
            page_size=page_size,
        )

    async def close(self) -> None:
        """Commit what is queued, end subscriptions and close every connection."""
        if self._closed:
            return
        self._closed = True
        self._writer.stop()
        await asyncio.to_thread(self._writer.join)
        # Results of the last batches are delivered by callbacks queued before this point.
        await asyncio.sleep(0)
        for sink in list(self._sinks):
            if isinstance(sink, LiveFeed):
                sink.close()
        await asyncio.to_thread(self._readers.close)

    async def __aenter__(self) -> Ledger:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def commits(self) -> int:
        """Group commits made since open (appends per commit = events / commits)."""
        return self._writer.batches

    # --- appends -------------------------------------------------------------------------

    async def append(self, event: Event) -> StoredEvent:
        """Record one event; returns once it is durable. Raises a RejectedEvent subclass
        (nothing written) when the projection refuses it."""
        return (await self._submit([event]))[0]

    async def append_many(self, events: Iterable[Event]) -> list[StoredEvent]:
        """Record several events in one transaction: all of them or none."""
        batch = list(events)
        if not batch:
            return []
        return await self._submit(batch)

    async def _submit(self, events: list[Event]) -> list[StoredEvent]:
        if self._closed:
            raise LedgerClosed("the ledger was closed; open it again to append")
        encoded: list[Encoded] = []
        for event in events:
            if not isinstance(event, Event):
                raise EventTypeError(
                    kind="append", field="event", expected="an Event", got=type(event).__name__
                )
            kind, task_id, data = encode_event(event)
            encoded.append(
                (
                    kind,
                    event.owner,
                    event.session_id,
                    task_id,
                    submission_key(event),
                    data,
                    dumps(data),
                )
            )
        future: asyncio.Future[list[StoredEvent]] = self._loop.create_future()
        self._writer.put(AppendRequest(events, encoded, future))
        return await future

    def _deliver(self, outcomes: list[Outcome], stored: list[StoredEvent]) -> None:
        """On the event loop, after a COMMIT: publish, then wake the appenders."""
        if stored:
            self._head = stored[-1].seq
            for sink in list(self._sinks):
                sink.offer(stored)
        for future, result in outcomes:
            if future.done():
                continue  # the appender was cancelled
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def rebuild_projections(self) -> None:
        """Recompute tasks and submissions from the events, in one transaction."""
        if self._closed:
            raise LedgerClosed("the ledger was closed")
        future: asyncio.Future[None] = self._loop.create_future()
        self._writer.put(CallRequest(rebuild, future))
        await future

    # --- reads ---------------------------------------------------------------------------

    async def head(self) -> int:
        """The last committed seq (0 when empty); every event up to it was already offered
        to the subscribers."""
        return self._head

    async def task(self, task_id: str) -> TaskRow | None:
        self._check_open()
        return await self._readers.run(lambda conn: read_task(conn, task_id))

    async def tasks(
        self,
        *,
        owner: str | None = None,
        session_id: str | None = None,
        status: str | Sequence[str] | None = None,
        label: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[TaskRow]:
        """Tasks, newest submit first. ``label`` is a glob (``*``, ``?``, ``[...]``,
        case-sensitive; a plain string matches exactly); ``since``/``until`` bound the
        request time (Unix seconds; since inclusive, until exclusive)."""
        self._check_open()
        if limit < 0 or offset < 0:
            raise ValueError(f"limit and offset must be >= 0, got {limit} and {offset}")
        statuses = [status] if isinstance(status, str) else None if status is None else [*status]
        return await self._readers.run(
            lambda conn: read_tasks(
                conn,
                owner=owner,
                session_id=session_id,
                statuses=statuses,
                label=label,
                since=since,
                until=until,
                limit=limit,
                offset=offset,
            )
        )

    async def pending_submissions(self, *, session_id: str | None = None) -> list[SubmissionRow]:
        """Submits recorded but neither submitted nor failed, oldest first."""
        self._check_open()
        return await self._readers.run(
            lambda conn: pending_submissions(conn, session_id=session_id)
        )

    async def open_submissions(self, *, session_id: str | None = None) -> list[SubmissionRow]:
        """Submits Globus has not answered: pending or waiting in the admission queue."""
        self._check_open()
        return await self._readers.run(lambda conn: open_submissions(conn, session_id=session_id))

    async def submission(self, submission_id: str) -> SubmissionRow | None:
        self._check_open()
        return await self._readers.run(lambda conn: read_submission(conn, submission_id))

    async def events_since(
        self,
        seq: int = 0,
        *,
        until: int | None = None,
        owner: str | None = None,
        session_id: str | None = None,
        task_id: str | None = None,
        kinds: Iterable[str] | None = None,
        times: tuple[float | None, float | None] | None = None,
        data: Mapping[str, str] | None = None,
    ) -> AsyncIterator[StoredEvent]:
        """Committed events with seq > ``seq`` (and <= ``until``), in seq order, read a page
        at a time so memory stays bounded however long the history. ``times`` bounds the
        commit time (Unix seconds, from inclusive, until exclusive, either may be None);
        ``data`` keeps the events whose data fields equal these strings (in SQL, e.g.
        ``{"status": "FAILED"}``)."""
        self._check_open()
        kind_list = None if kinds is None else list(kinds)
        data = None if data is None else dict(data)
        cursor = seq
        while True:
            rows, last, more = await self._readers.run(
                functools.partial(
                    read_event_page,
                    after=cursor,
                    until=until,
                    owner=owner,
                    session_id=session_id,
                    task_id=task_id,
                    kinds=kind_list,
                    limit=self._page_size,
                    times=times,
                    data=data,
                    max_bytes=self._page_bytes,
                )
            )
            for event in rows:
                yield event
            if not more or last is None:
                return
            cursor = last

    async def raw_events_since(
        self,
        seq: int = 0,
        *,
        owner: str | None = None,
        session_id: str | None = None,
        task_id: str | None = None,
        times: tuple[float | None, float | None] | None = None,
        data: Mapping[str, str] | None = None,
    ) -> AsyncIterator[RawEvent]:
        """As :meth:`events_since`, each event as ``(seq, time, kind, owner, session_id,
        task_id, data_json)`` with its data as the JSON text stored: for serving events
        as they are, without decoding them (large ones cost their size several times)."""
        self._check_open()
        cursor = seq
        while True:
            rows, last, more = await self._readers.run(
                functools.partial(
                    read_raw_event_page,
                    after=cursor,
                    until=None,
                    owner=owner,
                    session_id=session_id,
                    task_id=task_id,
                    kinds=None,
                    limit=self._page_size,
                    times=times,
                    data=None if data is None else dict(data),
                    max_bytes=self._page_bytes,
                )
            )
            for row in rows:
                yield row
            if not more or last is None:
                return
            cursor = last

    async def projection_snapshot(self) -> tuple[list[Any], list[Any]]:
        """Every row of the projection tables, in key order (for consistency checks)."""
        self._check_open()
        return await self._readers.run(projection_snapshot)

    def subscribe(self, *, maxsize: int = 1000) -> LiveFeed:
        """Live events committed from now on, buffered up to ``maxsize``; see :class:`LiveFeed`."""
        self._check_open()
        feed = LiveFeed(maxsize=maxsize, start_seq=self._head, on_close=self._sinks.discard)
        self._sinks.add(feed)
        return feed

    def attach(self, sink: CommitSink) -> int:
        """Hand every batch committed from now on to ``sink`` (unbuffered: the sink keeps its
        own bounds); returns the head at this moment, the seq the sink's first batch follows."""
        self._check_open()
        self._sinks.add(sink)
        return self._head

    def detach(self, sink: CommitSink) -> None:
        self._sinks.discard(sink)

    def _check_open(self) -> None:
        if self._closed:
            raise LedgerClosed("the ledger was closed; open it again to read")
