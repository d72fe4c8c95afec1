"""Counts over the tasks projection (per session and status), for the sessions route and the
metrics: one ``GROUP BY`` on a read-only connection of its own, in a thread; and the write
probe of ``/ready``.

A connection of its own rather than the ledger's readers: counting is the only aggregate the
daemon needs, and SQLite in WAL mode lets any number of readers see the last commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections import defaultdict
from pathlib import Path

from ...ledger.retention import pruned_through
from ...ledger.schema import connect

__all__ = ["TaskCounts", "by_status", "count_tasks", "read_pruned_through", "writable"]

# (session_id, status) -> tasks
TaskCounts = dict[tuple[str | None, str], int]


def _count(path: Path, owner: str | None) -> TaskCounts:
    with contextlib.closing(connect(path, readonly=True)) as conn:
        sql = "SELECT session_id, status, count(*) FROM tasks"
        params: tuple[str, ...] = ()
        if owner is not None:
            sql += " WHERE owner = ?"
            params = (owner,)
        rows = conn.execute(sql + " GROUP BY session_id, status", params).fetchall()
    return {(session_id, status): int(n) for session_id, status, n in rows}


async def count_tasks(path: Path, *, owner: str | None = None) -> TaskCounts:
    """Tasks per (session, status), of one daemon token or of all."""
    return await asyncio.to_thread(_count, path, owner)


def by_status(counts: TaskCounts) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for (_sid, status), n in counts.items():
        out[status] += n
    return dict(out)


def _probe_write(path: Path) -> bool:
    if not path.exists():  # sqlite3 would create an empty file
        return False
    # Taking the write lock and letting it go proves the file, its folder and the disk
    # accept a write now, without writing anything; a short wait, as a probe must not hang.
    try:
        conn = sqlite3.connect(path, isolation_level=None, timeout=2.0)
    except sqlite3.Error:
        return False
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
        return True
    except sqlite3.Error:
        return False
    finally:
        conn.close()


async def writable(path: Path) -> bool:
    """Whether the ledger file takes writes now (for ``/ready``)."""
    return await asyncio.to_thread(_probe_write, path)


def _pruned(path: Path) -> int:
    with contextlib.closing(connect(path, readonly=True)) as conn:
        return pruned_through(conn)


async def read_pruned_through(path: Path) -> int:
    """The ledger's retention mark (the highest seq ever pruned; 0: none)."""
    return await asyncio.to_thread(_pruned, path)
