"""Retention: delete the old events of finished tasks, keep every task's final row.

A task that ended (SUCCEEDED or FAILED) before the cut-off loses all its events (its
``submit_requested``, ``task_submitted``, state changes, progress and cancels); a submit that
failed before the cut-off loses its two. Their rows in ``tasks`` and ``submissions`` stay as
they are: the final state, counters, label and times remain queryable. Nothing else is
touched: session events, and every event of a task still running, stay.

Seqs are never reused (AUTOINCREMENT keeps the high-water mark), so a cursor stays valid; the
highest seq ever pruned is kept in the ``retention`` table (``pruned_through``) so that a
client whose cursor lies below it can be told that it may have missed events and should
read the task rows instead (the daemon says so in its WebSocket heartbeats).

A projection rebuild keeps the rows whose creating event was pruned
(:func:`.store.retained_rows`), so pruned tasks survive a migration too.

Runs on a connection of its own (the daemon's writer notices another connection's commits
and reloads its caches), in transactions of ``chunk`` tasks so that appends wait at most
one short transaction.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..migrations import load_migrations
from ..protocol import TERMINAL_STATUSES
from .schema import connect, migrate
from .store import rebuild

__all__ = ["PruneResult", "prune", "prune_file", "pruned_through"]

_FINISHED = tuple(sorted(TERMINAL_STATUSES))


@dataclass(frozen=True, slots=True)
class PruneResult:
    tasks: int  # finished tasks whose events were deleted
    failed_submits: int  # failed submissions whose events were deleted
    events: int  # events deleted
    pruned_through: int  # the highest seq ever pruned (0: never)


def pruned_through(conn: sqlite3.Connection) -> int:
    """The highest seq a prune ever deleted (0 when nothing was ever pruned)."""
    row = conn.execute("SELECT pruned_through FROM retention WHERE id = 1").fetchone()
    return int(row[0]) if row is not None else 0


def _victims(
    conn: sqlite3.Connection, before: float, after_task: str, chunk: int
) -> list[tuple[str, str, int | None]]:
    """(task_id, submission_id, requested_seq) of finished tasks completed before ``before``
    that still have events (a cancel recorded after a prune is pruned next time), in task
    id order after ``after_task``."""
    return conn.execute(
        "SELECT t.task_id, t.submission_id, s.requested_seq FROM tasks t "
        "LEFT JOIN submissions s ON s.submission_id = t.submission_id "
        "WHERE t.status IN (?, ?) AND t.completion_time < ? AND t.task_id > ? "
        "AND EXISTS (SELECT 1 FROM events e WHERE e.task_id = t.task_id) "
        "ORDER BY t.task_id LIMIT ?",
        (*_FINISHED, before, after_task, chunk),
    ).fetchall()


def _delete(conn: sqlite3.Connection, where: str, keys: Sequence[object]) -> tuple[int, int]:
    """Delete the events matching ``where`` (one ``?`` per key); (count, highest seq)."""
    marks = ",".join("?" * len(keys))
    high = conn.execute(f"SELECT max(seq) FROM events WHERE {where} IN ({marks})", keys)  # noqa: S608
    top = high.fetchone()[0]
    cursor = conn.execute(f"DELETE FROM events WHERE {where} IN ({marks})", keys)  # noqa: S608
    return cursor.rowcount, int(top or 0)


def _record(conn: sqlite3.Connection, high: int) -> int:
    now = time.time()
    conn.execute(
        "INSERT INTO retention (id, pruned_through, pruned_at) VALUES (1, ?, ?) "
        "ON CONFLICT (id) DO UPDATE SET "
        "pruned_through = max(pruned_through, excluded.pruned_through), "
        "pruned_at = excluded.pruned_at",
        (high, now),
    )
    return pruned_through(conn)


def prune(conn: sqlite3.Connection, *, before: float, chunk: int = 500) -> PruneResult:
    """Delete the events of tasks finished before ``before`` (Unix seconds) and of submits
    that failed before it. ``conn`` is a writing connection in autocommit mode."""
    tasks = submits = events = 0
    high = 0
    last = ""
    while True:
        conn.execute("BEGIN IMMEDIATE")
        try:
            batch = _victims(conn, before, last, chunk)
            if batch:
                last = batch[-1][0]
                n, top = _delete(conn, "task_id", [task_id for task_id, _, _ in batch])
                seqs = [seq for _, _, seq in batch if seq is not None]
                m, top2 = _delete(conn, "seq", seqs) if seqs else (0, 0)
                tasks += len(batch)
                events += n + m
                high = max(high, top, top2)
                if high:
                    _record(conn, high)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        if len(batch) < chunk:
            break
    conn.execute("BEGIN IMMEDIATE")
    try:
        failed = conn.execute(
            "SELECT requested_seq, last_seq FROM submissions WHERE state = 'failed' "
            "AND request_time < ? AND EXISTS (SELECT 1 FROM events e WHERE e.seq = requested_seq)",
            (before,),
        ).fetchall()
        for start in range(0, len(failed), chunk):
            part = failed[start : start + chunk]
            n, top = _delete(conn, "seq", [seq for pair in part for seq in pair])
            events += n
            high = max(high, top)
        submits = len(failed)
        through = _record(conn, high) if high else pruned_through(conn)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return PruneResult(tasks=tasks, failed_submits=submits, events=events, pruned_through=through)


def prune_file(path: Path, *, before: float, vacuum: bool = False) -> PruneResult:
    """:func:`prune` on the ledger file at ``path`` (a connection of its own); ``vacuum``
    then gives the freed pages back to the file system (it rewrites the whole file: best
    with the daemon stopped)."""
    conn = connect(path)
    try:
        # A file last opened by an older version gets its migrations first, as at open.
        migrate(conn, path=path, migrations=load_migrations(), rebuild=rebuild)
        result = prune(conn, before=before)
        if vacuum:
            conn.execute("VACUUM")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return result
    finally:
        conn.close()
