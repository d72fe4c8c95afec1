"""The asyncio face of the ledger: append, reads, replay and live subscription.

One writer thread owns the only writing connection (:mod:`.writer`); reads run on a small
pool of read-only ``aiosqlite`` connections (each runs its queries in its own thread). In WAL
mode a reader sees the last commit and neither waits for the writer nor makes it wait, so
reads never slow appends down beyond sharing the CPU.

Durability: ``append`` returns after the COMMIT of its batch returned with
``synchronous=FULL`` in WAL mode, i.e. after the WAL was fsynced: an acknowledged event
survives a process crash and a power loss. An append cancelled while waiting may still have
been committed (it is then visible to readers and subscribers like any other).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import aiosqlite

from ..migrations import Migration, load_migrations
from .errors import EventTypeError, LedgerClosed
from .events import Event, StoredEvent, encode_event
from .feed import CommitSink, LiveFeed
from .fold import (
    OPEN_SUBMISSION_STATES,
    CancelRow,
    SessionRow,
    SubmissionRow,
    TaskRow,
    submission_key,
)
from .schema import CONNECT_OPTIONS, READER_PRAGMAS, connect, migrate
from .store import (
    ENVELOPE_COLUMNS,
    RAW_EVENT_COLUMNS,
    Query,
    RawEvent,
    bounded_rows,
    cancel_rows,
    dumps,
    envelope_texts,
    events_query,
    open_sessions_query,
    pending_cancels_query,
    raise_sequence,
    raw_events,
    rebuild,
    sequence_high_water,
    session_rows,
    snapshot_queries,
    stored_events,
    submission_rows,
    submissions_query,
    task_query,
    task_rows,
    tasks_query,
)
from .writer import AppendRequest, CallRequest, Encoded, Outcome, Writer

__all__ = ["Ledger"]


class _ReadPool:
    """Read-only ``aiosqlite`` connections, opened on first need, lent one per query.

    Each aiosqlite connection runs its queries in its own thread; the rows come back to the
    event loop, which maps them to typed rows. ``size`` bounds the connections (and threads):
    a query that finds them all busy waits for one.
    """

    def __init__(self, path: Path, *, size: int) -> None:
        self._path = path
        self._size = size
        self._idle: list[aiosqlite.Connection] = []
        self._all: list[aiosqlite.Connection] = []
        self._freed = asyncio.Condition()
        self._closed = False

    async def fetch(self, query: Query) -> list[Any]:
        conn = await self._acquire()
        try:
            return list(await conn.execute_fetchall(query.sql, query.params))
        finally:
            self._idle.append(conn)
            async with self._freed:
                self._freed.notify()

    async def page(
        self, query: Query, *, max_bytes: int | None, size_column: int
    ) -> tuple[list[Any], bool]:
        """The query's rows up to ``max_bytes`` (see :func:`.store.bounded_rows`), read
        row by row in the connection's own thread: a byte bound needs the rows one at a
        time, which aiosqlite's public calls would bring to the event loop one hop each."""
        conn = await self._acquire()
        try:
            # aiosqlite's queue of calls for its thread; _conn is its sqlite3 connection.
            run: Callable[..., Awaitable[tuple[list[Any], bool]]] = conn._execute
            return await run(
                bounded_rows, conn._conn, query, max_bytes=max_bytes, size_column=size_column
            )
        finally:
            self._idle.append(conn)
            async with self._freed:
                self._freed.notify()

    async def _acquire(self) -> aiosqlite.Connection:
        while True:
            if self._closed:
                raise LedgerClosed("the ledger was closed")
            if self._idle:
                return self._idle.pop()
            if len(self._all) < self._size:
                return await self._open()
            async with self._freed:
                await self._freed.wait()

    async def _open(self) -> aiosqlite.Connection:
        conn = await aiosqlite.connect(self._path, **CONNECT_OPTIONS)
        self._all.append(conn)
        try:
            for pragma in READER_PRAGMAS:
                await conn.execute_fetchall(pragma, [])
        except BaseException:
            self._all.remove(conn)
            await conn.close()
            raise
        return conn

    async def close(self) -> None:
        """Close every connection once its queued queries are done."""
        self._closed = True
        async with self._freed:
            self._freed.notify_all()
        for conn in self._all:
            await conn.close()
        self._all.clear()
        self._idle.clear()


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
        self._readers = _ReadPool(path, size=readers)
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
        await self._readers.close()

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
        """Recompute every projection (tasks, submissions, sessions, cancels) from the
        events, in one transaction."""
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
        rows = task_rows(await self._readers.fetch(task_query(task_id)))
        return rows[0] if rows else None

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
        query = tasks_query(
            owner=owner,
            session_id=session_id,
            statuses=statuses,
            label=label,
            since=since,
            until=until,
            limit=limit,
            offset=offset,
        )
        return task_rows(await self._readers.fetch(query))

    async def pending_submissions(self, *, session_id: str | None = None) -> list[SubmissionRow]:
        """Submits recorded but neither submitted nor failed, oldest first."""
        self._check_open()
        query = submissions_query(states=["pending"], session_id=session_id)
        return submission_rows(await self._readers.fetch(query))

    async def open_sessions(self) -> list[SessionRow]:
        """Sessions whose last event opened them, oldest first."""
        self._check_open()
        return session_rows(await self._readers.fetch(open_sessions_query()))

    async def pending_cancels(self, *, session_id: str | None = None) -> list[CancelRow]:
        """Cancels requested and not answered yet (a crash or a fault in between), oldest
        first."""
        self._check_open()
        query = pending_cancels_query(session_id=session_id)
        return cancel_rows(await self._readers.fetch(query))

    async def open_submissions(self, *, session_id: str | None = None) -> list[SubmissionRow]:
        """Submits Globus has not answered: pending or waiting in the admission queue."""
        self._check_open()
        query = submissions_query(states=OPEN_SUBMISSION_STATES, session_id=session_id)
        return submission_rows(await self._readers.fetch(query))

    async def submission(self, submission_id: str) -> SubmissionRow | None:
        self._check_open()
        rows = submission_rows(
            await self._readers.fetch(submissions_query(submission_id=submission_id))
        )
        return rows[0] if rows else None

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
        page_size: int | None = None,
    ) -> AsyncIterator[StoredEvent]:
        """Committed events with seq > ``seq`` (and <= ``until``), in seq order, read a page
        at a time so memory stays bounded however long the history. ``times`` bounds the
        commit time (Unix seconds, from inclusive, until exclusive, either may be None);
        ``data`` keeps the events whose data fields equal these strings (in SQL, e.g.
        ``{"status": "FAILED"}``). ``page_size`` replaces the ledger's rows per query (a
        caller that wants 100 events reads 100 rows, not a page of 1000)."""
        self._check_open()
        kind_list = None if kinds is None else list(kinds)
        data = None if data is None else dict(data)

        def query(after: int, limit: int) -> Query:
            return events_query(
                after=after,
                until=until,
                owner=owner,
                session_id=session_id,
                task_id=task_id,
                kinds=kind_list,
                limit=limit,
                times=times,
                data=data,
            )

        async for found in self._event_pages(seq, page_size, query):
            for event in stored_events(found):
                yield event

    async def raw_events_since(
        self,
        seq: int = 0,
        *,
        owner: str | None = None,
        session_id: str | None = None,
        task_id: str | None = None,
        times: tuple[float | None, float | None] | None = None,
        data: Mapping[str, str] | None = None,
        page_size: int | None = None,
    ) -> AsyncIterator[RawEvent]:
        """As :meth:`events_since`, each event as ``(seq, time, kind, owner, session_id,
        task_id, data_json)`` with its data as the JSON text stored: for serving events
        as they are, without decoding them (large ones cost their size several times).
        ``page_size`` replaces the ledger's rows per query."""
        self._check_open()

        def query(after: int, limit: int) -> Query:
            return events_query(
                after=after,
                until=None,
                owner=owner,
                session_id=session_id,
                task_id=task_id,
                kinds=None,
                limit=limit,
                times=times,
                data=None if data is None else dict(data),
                columns=RAW_EVENT_COLUMNS,
            )

        async for found in self._event_pages(seq, page_size, query):
            for row in raw_events(found):
                yield row

    async def _event_pages(
        self, seq: int, page_size: int | None, query: Callable[[int, int], Query]
    ) -> AsyncIterator[list[Any]]:
        """The non-empty pages of event rows after ``seq``: ``query(after, limit)`` reads
        one (bounded in rows, and in bytes by the data column); each next page starts after
        the last row of the one before."""
        cursor = seq
        page = self._page_size if page_size is None else max(1, page_size)
        while True:
            found, cut = await self._readers.page(
                query(cursor, page), max_bytes=self._page_bytes, size_column=6
            )
            if not found:
                return
            yield found
            if not (cut or len(found) >= page):
                return
            cursor = found[-1][0]

    async def envelope_pages(
        self,
        seq: int = 0,
        *,
        owner: str | None = None,
        session_id: str | None = None,
        task_id: str | None = None,
        kinds: Iterable[str] | None = None,
        page_size: int | None = None,
    ) -> AsyncIterator[list[tuple[int, str]]]:
        """Pages of ``(seq, envelope JSON text)`` of the committed events after ``seq``, as
        :func:`radical.orbit.protocol.build_envelope` describes them, built by SQLite (see
        :mod:`.envelopes`): what a replay sends without decoding and encoding each event.
        ``page_size`` replaces the ledger's rows per page."""
        self._check_open()
        kind_list = None if kinds is None else list(kinds)
        page = self._page_size if page_size is None else max(1, page_size)

        def read(after: int) -> asyncio.Task[tuple[list[Any], bool]]:
            query = events_query(
                after=after,
                until=None,
                owner=owner,
                session_id=session_id,
                task_id=task_id,
                kinds=kind_list,
                limit=page,
                columns=ENVELOPE_COLUMNS,
            )
            return asyncio.ensure_future(
                self._readers.page(query, max_bytes=self._page_bytes, size_column=2)
            )

        # The next page is read (in its connection's thread, SQLite building the JSON
        # outside the GIL) while the caller sends the current one. Pages end at the
        # ledger's byte bound too, so two pages in memory stay about two page_bytes.
        pending = read(seq)
        try:
            while True:
                found, cut = await pending
                more = bool(found) and (cut or len(found) >= page)
                if more:
                    pending = read(found[-1][0])
                texts = envelope_texts(found)
                if texts:
                    yield texts
                if not more:
                    return
        finally:
            if not pending.done():
                pending.cancel()
                with contextlib.suppress(asyncio.CancelledError, LedgerClosed):
                    await pending

    async def projection_snapshot(self) -> dict[str, list[Any]]:
        """Every row of the projection tables by table, in key order (for consistency
        checks)."""
        self._check_open()
        return {
            table: await self._readers.fetch(query) for table, query in snapshot_queries().items()
        }

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
