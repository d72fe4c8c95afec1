"""The single writer thread: group commit of every append waiting when it wakes.

Appends arrive on a thread-safe queue. The writer takes the first one, then everything else
already queued (up to ``max_batch`` events), and commits them in one ``BEGIN IMMEDIATE`` ...
``COMMIT``. Each append is folded one event at a time against the projection rows of this
transaction (loaded once per batch), so a refused event fails alone with its own error while
the rest of the batch commits; an ``append_many`` is all or nothing. Only after ``COMMIT``
returned (WAL fsynced, ``synchronous=FULL``) are results handed to the event loop, in one
``call_soon_threadsafe`` per batch, in seq order.

Seqs are given by the writer from ``sqlite_sequence`` (the AUTOINCREMENT high-water mark, read
inside the transaction), so they never repeat, even after the newest events were deleted or
when another process appended to the same file in between.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import queue
import sqlite3
import threading
import time
from collections import ChainMap
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import RejectedEvent, StorageError
from .events import TERMINAL_STATUSES, Event, StoredEvent
from .fold import (
    OPEN_SUBMISSION_STATES,
    CancelRow,
    Projections,
    SessionRow,
    SubmissionRow,
    TaskRow,
    cancel_key,
    session_key,
    step,
)
from .store import (
    insert_events,
    insert_tasks,
    load_cancels,
    load_sessions,
    load_submissions,
    load_tasks,
    sequence_high_water,
    update_tasks,
    upsert_cancels,
    upsert_sessions,
    upsert_submissions,
)

__all__ = ["AppendRequest", "CallRequest", "Encoded", "Outcome", "Writer"]

# Rows kept in each write-through cache before it is emptied (a few MB at most).
_CACHE_MAX = 20_000


@dataclass(slots=True)
class AppendRequest:
    """Events of one ``append``/``append_many`` with their encoded envelope and JSON."""

    events: list[Event]
    # (kind, owner, session_id, task_id, submission_key, data, data_json) per event, computed
    # on the event loop so that the writer thread's share of the GIL goes to folding and SQL.
    encoded: list[Encoded]
    future: asyncio.Future[list[StoredEvent]]


@dataclass(slots=True)
class CallRequest:
    """Run ``fn(conn)`` in the writer, in its own transaction (e.g. a projection rebuild)."""

    fn: Callable[[sqlite3.Connection], Any]
    future: asyncio.Future[Any]


Outcome = tuple["asyncio.Future[Any]", "Any | BaseException"]
Encoded = tuple[str, str | None, str | None, str | None, str | None, dict[str, Any], str]
Deliver = Callable[[list[Outcome], list[StoredEvent]], None]
_STOP = object()


class Writer:
    def __init__(
        self,
        conn: sqlite3.Connection,
        *,
        loop: asyncio.AbstractEventLoop,
        deliver: Deliver,
        max_batch: int,
    ) -> None:
        self._conn = conn
        self._loop = loop
        self._deliver = deliver
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[AppendRequest | CallRequest | object] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="ledger-writer", daemon=True)
        self.batches = 0  # commits made; the benchmark reports events per commit
        # Write-through caches of what this connection committed. They are dropped whenever
        # PRAGMA data_version says another connection committed to the file meanwhile.
        self._data_version: int | None = None
        self._high = 0
        self._last_time = 0.0
        self._task_cache: dict[str, TaskRow] = {}
        self._sub_cache: dict[str, SubmissionRow] = {}

    def start(self) -> None:
        self._thread.start()

    def put(self, request: AppendRequest | CallRequest) -> None:
        self._queue.put(request)

    def stop(self) -> None:
        """Ask the thread to finish what is queued, close the connection and exit."""
        self._queue.put(_STOP)

    def join(self) -> None:
        self._thread.join()

    # --- thread --------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            carry: object | None = None
            while True:
                item = carry if carry is not None else self._queue.get()
                carry = None
                if item is _STOP:
                    return
                if isinstance(item, CallRequest):
                    self._call(item)
                    continue
                assert isinstance(item, AppendRequest)
                batch = [item]
                size = len(item.events)
                while size < self._max_batch:
                    try:
                        nxt = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if not isinstance(nxt, AppendRequest):
                        carry = nxt
                        break
                    batch.append(nxt)
                    size += len(nxt.events)
                self._commit(batch)
        finally:
            self._conn.close()

    def _send(self, outcomes: list[Outcome], stored: list[StoredEvent]) -> None:
        # A closed loop means nobody is waiting any more.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._deliver, outcomes, stored)

    def _call(self, request: CallRequest) -> None:
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = request.fn(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            finally:
                self._data_version = None  # the call may have rewritten anything
        except Exception as exc:  # handed to the awaiting coroutine, never lost
            self._send([(request.future, exc)], [])
            return
        self._send([(request.future, result)], [])

    def _commit(self, batch: list[AppendRequest]) -> None:
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                folded = self._fold(batch)
                insert_events(conn, folded.rows)
                insert_tasks(conn, folded.new_tasks)
                update_tasks(conn, folded.changed_tasks, keys=True)
                update_tasks(conn, folded.same_status_tasks, keys=False)
                upsert_submissions(conn, folded.submissions)
                upsert_sessions(conn, folded.sessions)
                upsert_cancels(conn, folded.cancels)
                conn.execute("COMMIT")
            except BaseException:
                self._data_version = None
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except Exception as exc:
            # Every waiting append learns that nothing of the batch was written; the thread
            # lives on so that a transient failure (disk full) does not wedge the ledger.
            error: Exception = exc
            if isinstance(exc, sqlite3.Error):
                error = StorageError(f"the ledger could not commit: {exc}; nothing was written")
                error.__cause__ = exc
            self._send([(req.future, error) for req in batch], [])
            return
        self.batches += 1
        self._remember(folded)
        self._send(folded.outcomes, folded.stored)

    def _remember(self, folded: _Folded) -> None:
        if folded.stored:
            self._high = folded.stored[-1].seq
            self._last_time = folded.stored[-1].time
        cache = self._task_cache
        if len(cache) > _CACHE_MAX:
            cache.clear()
        for row in (*folded.new_tasks, *folded.changed_tasks, *folded.same_status_tasks):
            # Finished tasks change rarely (cancel events only): no need to keep them.
            if row.status in TERMINAL_STATUSES:
                cache.pop(row.task_id, None)
            else:
                cache[row.task_id] = row
        subs = self._sub_cache
        if len(subs) > _CACHE_MAX:
            subs.clear()
        for sub in folded.submissions:
            if sub.state in OPEN_SUBMISSION_STATES:
                # Without its request: the fold never needs it again, and it may be MBs.
                subs[sub.submission_id] = dataclasses.replace(sub, request=None)
            else:
                subs.pop(sub.submission_id, None)

    def _fold(self, batch: list[AppendRequest]) -> _Folded:
        """Fold every request against this transaction's rows; refused ones fail alone."""
        conn = self._conn
        version = conn.execute("PRAGMA data_version").fetchone()[0]
        if version != self._data_version:
            self._task_cache.clear()
            self._sub_cache.clear()
            self._high, self._last_time = sequence_high_water(conn)
            self._data_version = version
        high = self._high
        # One timestamp per commit, never going backwards even if the wall clock does.
        now = max(time.time(), self._last_time)
        tkeys: set[str] = set()
        skeys: set[str] = set()
        # Sessions and cancels change rarely (a few events per session or cancel): their
        # keys are found per event and their rows read per batch, without a cache.
        session_keys: set[str] = set()
        cancel_keys: set[str] = set()
        for request in batch:
            for encoded in request.encoded:
                if encoded[3] is not None:
                    tkeys.add(encoded[3])
                if encoded[4] is not None:
                    skeys.add(encoded[4])
            for event in request.events:
                if (key := session_key(event)) is not None:
                    session_keys.add(key)
                elif (key := cancel_key(event)) is not None:
                    cancel_keys.add(key)
        tasks = {k: task for k in tkeys if (task := self._task_cache.get(k)) is not None}
        if len(tasks) < len(tkeys):
            tasks.update(load_tasks(conn, tkeys.difference(tasks)))
        before = dict(tasks)
        subs = {k: sub for k in skeys if (sub := self._sub_cache.get(k)) is not None}
        if len(subs) < len(skeys):
            subs.update(load_submissions(conn, skeys.difference(subs)))
        sessions: dict[str, SessionRow] = load_sessions(conn, session_keys) if session_keys else {}
        cancels: dict[str, CancelRow] = load_cancels(conn, cancel_keys) if cancel_keys else {}
        maps = Projections(tasks=tasks, submissions=subs, sessions=sessions, cancels=cancels)
        dirty_tasks: set[str] = set()
        dirty_subs: set[str] = set()
        dirty_sessions: set[str] = set()
        dirty_cancels: set[str] = set()
        out = _Folded()
        new_tuple = tuple.__new__  # builds a StoredEvent without its Python-level __new__
        seq = high
        for request in batch:
            single = len(request.events) == 1
            # step() leaves the maps untouched when it refuses, so a single event can fold
            # straight into them; a multi-event append folds into its own layer first.
            layer = (
                maps
                if single
                else Projections(
                    tasks=ChainMap({}, tasks),
                    submissions=ChainMap({}, subs),
                    sessions=ChainMap({}, sessions),
                    cancels=ChainMap({}, cancels),
                )
            )
            task_map = layer.tasks
            mine: list[StoredEvent] = []
            rows: list[tuple[Any, ...]] = []
            this = seq
            try:
                for event, (kind, owner, session_id, tid, _, data, text) in zip(
                    request.events, request.encoded, strict=True
                ):
                    this += 1
                    step(layer, event, seq=this, time=now)
                    if tid is not None and (owner is None or session_id is None):
                        # A task event (e.g. from the poller) inherits its task's owner and
                        # session, so that replay filtered by either finds it.
                        row = task_map[tid]
                        owner = row.owner if owner is None else owner
                        session_id = row.session_id if session_id is None else session_id
                    mine.append(
                        new_tuple(StoredEvent, (this, now, kind, owner, session_id, tid, data))
                    )
                    rows.append((this, now, kind, owner, session_id, tid, text))
            except RejectedEvent as exc:
                out.outcomes.append((request.future, exc))
                continue
            if single:
                encoded = request.encoded[0]
                if encoded[3] is not None:
                    dirty_tasks.add(encoded[3])
                if encoded[4] is not None:
                    dirty_subs.add(encoded[4])
                event = request.events[0]
                if (key := session_key(event)) is not None and key in sessions:
                    dirty_sessions.add(key)
                elif (key := cancel_key(event)) is not None:
                    dirty_cancels.add(key)
            else:
                for mine_map, base, dirty in (
                    (layer.tasks, tasks, dirty_tasks),
                    (layer.submissions, subs, dirty_subs),
                    (layer.sessions, sessions, dirty_sessions),
                    (layer.cancels, cancels, dirty_cancels),
                ):
                    assert isinstance(mine_map, ChainMap)
                    top = mine_map.maps[0]
                    base.update(top)
                    dirty.update(top)
            out.rows.extend(rows)
            seq = this
            out.stored.extend(mine)
            out.outcomes.append((request.future, mine))
        for key in dirty_tasks:
            old, new = before.get(key), tasks[key]
            if old is None:
                out.new_tasks.append(new)
            elif old.status == new.status and old.label == new.label:
                out.same_status_tasks.append(new)
            else:
                out.changed_tasks.append(new)
        out.sessions = [sessions[k] for k in dirty_sessions]
        out.cancels = [cancels[k] for k in dirty_cancels]
        out.submissions = [subs[k] for k in dirty_subs]
        return out


@dataclass(slots=True)
class _Folded:
    """What one batch writes and answers."""

    rows: list[tuple[Any, ...]] = field(default_factory=list)
    stored: list[StoredEvent] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    new_tasks: list[TaskRow] = field(default_factory=list)
    changed_tasks: list[TaskRow] = field(default_factory=list)
    same_status_tasks: list[TaskRow] = field(default_factory=list)
    submissions: list[SubmissionRow] = field(default_factory=list)
    sessions: list[SessionRow] = field(default_factory=list)
    cancels: list[CancelRow] = field(default_factory=list)
