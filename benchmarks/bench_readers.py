"""The ledger's read side, old against new in the same run: the hand-written pool of sqlite3
connections in a thread pool (the ledger's until commit d14fedc) against ``aiosqlite``.

    .venv/bin/python benchmarks/bench_readers.py [--tasks N] [--rounds R] [--dir PATH]

One ledger file of ``--tasks`` finished tasks (3 events each, see ``history_fill.py``).
Both read paths run the ledger's own queries (``radical.orbit.ledger.store``) on the same
file with the same connection settings, two connections each; the old one maps rows in its
reader thread as it did, the new one is the ledger itself (rows mapped on the event loop).
Figures per round, old and new back to back, median of the rounds: replay
``events_since(0)`` (pages of 1000) in events/s, and the mean time of each history query
(tasks by label, label glob, status, time range; events by status, label) over repeats.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from harness import scratch_folder
from history_fill import OWNER, RUN, fill, label_of

from radical.orbit.ledger import Ledger, StoredEvent, TaskRow
from radical.orbit.ledger.schema import connect
from radical.orbit.ledger.store import Query, events_query, stored_events, task_rows, tasks_query

__all__ = ["main"]

T = TypeVar("T")
PAGE = 1000


class ThreadPoolReads:
    """The ledger's reader pool before aiosqlite: read-only sqlite3 connections, one per
    pool thread, each query and its row mapping run in the thread."""

    def __init__(self, path: Path, *, size: int = 2) -> None:
        self._path = path
        self._executor = ThreadPoolExecutor(max_workers=size, thread_name_prefix="old-reader")
        self._idle: list[sqlite3.Connection] = []
        self._all: list[sqlite3.Connection] = []

    async def fetch(self, query: Query, mapper: Callable[[Sequence[Any]], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._call, query, mapper)

    def _call(self, query: Query, mapper: Callable[[Sequence[Any]], T]) -> T:
        conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = connect(self._path, readonly=True)
            self._all.append(conn)
        try:
            return mapper(conn.execute(query.sql, query.params).fetchall())
        finally:
            self._idle.append(conn)

    async def tasks(self, **filters: Any) -> list[TaskRow]:
        status = filters.pop("status", None)
        query = tasks_query(
            owner=filters.get("owner"),
            session_id=None,
            statuses=None if status is None else [status],
            label=filters.get("label"),
            since=filters.get("since"),
            until=filters.get("until"),
            limit=filters.get("limit", 100),
            offset=0,
        )
        return await self.fetch(query, task_rows)

    async def events(self, *, limit: int, **filters: Any) -> list[StoredEvent]:
        out: list[StoredEvent] = []
        cursor = 0
        while True:
            query = events_query(
                after=cursor,
                until=None,
                owner=filters.get("owner"),
                session_id=None,
                task_id=None,
                kinds=None,
                limit=PAGE,
                times=filters.get("times"),
                data=filters.get("data"),
            )
            rows = await self.fetch(query, stored_events)
            out.extend(rows)
            if len(rows) < PAGE or len(out) >= limit:
                return out[:limit]
            cursor = rows[-1].seq

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        for conn in self._all:
            conn.close()


class NewReads:
    """The ledger's public reads (aiosqlite)."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    async def tasks(self, **filters: Any) -> list[TaskRow]:
        return await self._ledger.tasks(**filters)

    async def events(self, *, limit: int, **filters: Any) -> list[StoredEvent]:
        out: list[StoredEvent] = []
        async for event in self._ledger.events_since(0, **filters):
            out.append(event)
            if len(out) >= limit:
                break
        return out


async def _replay(reads: ThreadPoolReads | NewReads, head: int) -> tuple[float, float]:
    """Events/s and process CPU microseconds per event."""
    start, cpu = time.perf_counter(), time.process_time()
    count = len(await reads.events(limit=head + 1))
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    assert count == head, (count, head)
    return count / wall, cpu / count * 1e6


def _queries(
    tasks: int, times: tuple[float, float]
) -> dict[str, Callable[[ThreadPoolReads | NewReads], Awaitable[int]]]:
    middle = tasks // 2
    run = middle // RUN
    since, until = times

    async def by_label(r: ThreadPoolReads | NewReads) -> int:
        return len(await r.tasks(owner=OWNER, label=label_of(middle)))

    async def by_glob(r: ThreadPoolReads | NewReads) -> int:
        return len(await r.tasks(owner=OWNER, label=f"run-{run:04d}-*"))

    async def by_status(r: ThreadPoolReads | NewReads) -> int:
        return len(await r.tasks(owner=OWNER, status="FAILED"))

    async def by_time(r: ThreadPoolReads | NewReads) -> int:
        return len(await r.tasks(owner=OWNER, since=since, until=until))

    async def events_by_status(r: ThreadPoolReads | NewReads) -> int:
        return len(await r.events(owner=OWNER, data={"status": "FAILED"}, limit=100))

    async def events_by_label(r: ThreadPoolReads | NewReads) -> int:
        return len(await r.events(owner=OWNER, data={"label": label_of(middle)}, limit=100))

    return {
        "tasks by label": by_label,
        "tasks by label glob": by_glob,
        "tasks by status": by_status,
        "tasks by time range": by_time,
        "events by status": events_by_status,
        "events by label": events_by_label,
    }


async def _time_query(
    fn: Callable[[ThreadPoolReads | NewReads], Awaitable[int]],
    reads: ThreadPoolReads | NewReads,
    repeats: int,
) -> tuple[float, float, int]:
    """Mean wall and process CPU milliseconds per query, and the rows it found."""
    found = await fn(reads)  # warm
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(repeats):
        await fn(reads)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return wall / repeats * 1000, cpu / repeats * 1000, found


async def _run(folder: Path, *, tasks: int, rounds: int, repeats: int) -> dict[str, Any]:
    path = folder / "ledger.db"
    async with await Ledger.open(path) as ledger:
        await fill(ledger, tasks=tasks)
        head = await ledger.head()
        middle = await ledger.task(f"task-{tasks // 2:07d}")
        assert middle is not None
        window = (middle.request_time, middle.request_time + 0.5)
        old = ThreadPoolReads(path)
        new = NewReads(ledger)
        queries = _queries(tasks, window)
        figures: dict[str, dict[str, list[tuple[float, float]]]] = {}
        found: dict[str, int] = {}
        paths = (("old", old), ("new", new))
        try:
            # Old and new alternate figure by figure, so that the machine's load drifts
            # between them as little as possible.
            for _ in range(rounds):
                for name, reads in paths:
                    rate, us = await _replay(reads, head)
                    figures.setdefault("replay", {}).setdefault(name, []).append((rate, us))
                for qname, fn in queries.items():
                    for name, reads in paths:
                        ms, cpu_ms, count = await _time_query(fn, reads, repeats)
                        assert found.setdefault(qname, count) == count, (qname, count)
                        figures.setdefault(qname, {}).setdefault(name, []).append((ms, cpu_ms))
        finally:
            old.close()
        return {"head": head, "figures": figures, "found": found}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100_000, help="finished tasks (x3 events)")
    parser.add_argument("--rounds", type=int, default=3, help="measurements of each figure")
    parser.add_argument("--repeats", type=int, default=20, help="runs of each query per round")
    parser.add_argument("--dir", type=Path, default=None, help="folder for the database file")
    args = parser.parse_args(argv)
    with scratch_folder("readers", under=args.dir) as folder:
        out = asyncio.run(_run(folder, tasks=args.tasks, rounds=args.rounds, repeats=args.repeats))
    print(
        f"{args.tasks:,} finished tasks, {out['head']:,} events; median of {args.rounds} rounds; "
        "CPU = process CPU time (all threads)\n"
        f"{'read path':<22} {'unit':<9} {'old wall':>9} {'new wall':>9} {'new/old':>7} "
        f"{'old CPU':>8} {'new CPU':>8} {'new/old':>7}  rows"
    )
    for name, by in out["figures"].items():
        old = [statistics.median(x[i] for x in by["old"]) for i in (0, 1)]
        new = [statistics.median(x[i] for x in by["new"]) for i in (0, 1)]
        replay = name == "replay"
        unit = "events/s" if replay else "ms"
        wall = f"{old[0]:>9,.0f} {new[0]:>9,.0f}" if replay else f"{old[0]:>9.2f} {new[0]:>9.2f}"
        # For the replay, CPU is microseconds per event; for queries, milliseconds per query.
        print(
            f"{name:<22} {unit:<9} {wall} {new[0] / old[0]:>7.2f} "
            f"{old[1]:>8.2f} {new[1]:>8.2f} {new[1] / old[1]:>7.2f}  {out['found'].get(name, '')}"
        )


if __name__ == "__main__":
    main()
