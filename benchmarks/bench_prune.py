"""Retention: the ledger's size and event count before and after a prune, and its cost.

    .venv/bin/python benchmarks/bench_prune.py [--tasks N] [--progress P] [--items I] [--dir PATH]

Builds a ledger of ``--tasks`` transfers of ``--items`` items each, every one with its submit
pair, ``--progress`` progress events and (for 90% of them) a final state change: 80% finish
before the cut-off, 10% after it, 10% are still running. Then prunes everything finished
before the cut-off (``ledger.retention.prune_file``, as ``orbit-globus-endpoint prune`` does)
and measures the file (database + WAL) before, after the prune (SQLite keeps the freed pages
for reuse: the file does not shrink) and after ``VACUUM`` (``prune --vacuum``).
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import time
from pathlib import Path

from harness import scratch_folder

from radical.orbit.ledger import (
    Ledger,
    SubmitRequested,
    TaskProgress,
    TaskStateChanged,
    TaskSubmitted,
)
from radical.orbit.ledger.events import TransferItem, TransferRequest
from radical.orbit.ledger.retention import prune_file

__all__ = ["main"]


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*") if p.is_file())


def _count(path: Path, table: str) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # noqa: S608


async def _fill(path: Path, *, tasks: int, progress: int, items: int) -> float:
    """The ledger described above; returns the cut-off (Unix seconds)."""
    request = TransferRequest(
        source="src",
        destination="dst",
        items=tuple(
            TransferItem(source=f"/data/in/run/{i:05d}.h5", destination=f"/~/out/{i:05d}.h5")
            for i in range(items)
        ),
        label="bench",
    )
    ledger = await Ledger.open(path)
    cutoff = 0.0
    try:
        batch: list[object] = []
        for n in range(tasks):
            session_id = f"s{n % 10}"
            batch += [
                SubmitRequested(
                    owner="bench",
                    session_id=session_id,
                    submission_id=f"sub-{n}",
                    type="TRANSFER",
                    request=request,
                ),
                TaskSubmitted(
                    owner="bench", session_id=session_id, submission_id=f"sub-{n}", task_id=f"t{n}"
                ),
            ]
            batch += [
                TaskProgress(
                    owner="bench",
                    session_id=session_id,
                    task_id=f"t{n}",
                    bytes_transferred=p * 1000,
                    files_transferred=p,
                )
                for p in range(1, progress + 1)
            ]
            if len(batch) > 2000:
                await ledger.append_many(batch)  # type: ignore[arg-type]
                batch = []
        await ledger.append_many(batch)  # type: ignore[arg-type]
        ends = [
            TaskStateChanged(
                owner="bench",
                session_id=f"s{n % 10}",
                task_id=f"t{n}",
                status="SUCCEEDED",
                bytes_transferred=progress * 1000,
                files_transferred=progress,
            )
            for n in range(tasks)
        ]
        old, recent = int(tasks * 0.8), int(tasks * 0.9)
        await ledger.append_many(ends[:old])
        await asyncio.sleep(0.05)
        cutoff = time.time()
        await asyncio.sleep(0.05)
        await ledger.append_many(ends[old:recent])
    finally:
        await ledger.close()
    return cutoff


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--progress", type=int, default=10)
    parser.add_argument("--items", type=int, default=20)
    parser.add_argument("--dir", type=Path)
    args = parser.parse_args()
    with scratch_folder("prune", under=args.dir or Path.cwd()) as folder:
        path = folder / "ledger.db"
        cutoff = asyncio.run(
            _fill(path, tasks=args.tasks, progress=args.progress, items=args.items)
        )
        with sqlite3.connect(path) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        rows: list[tuple[str, int, int, int, float | None]] = [
            ("before", _count(path, "events"), _count(path, "tasks"), _size(path), None)
        ]
        started = time.perf_counter()
        result = prune_file(path, before=cutoff)
        pruned_s = time.perf_counter() - started
        with sqlite3.connect(path) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        rows.append(
            ("after prune", _count(path, "events"), _count(path, "tasks"), _size(path), pruned_s)
        )
        started = time.perf_counter()
        prune_file(path, before=cutoff, vacuum=True)
        vacuum_s = time.perf_counter() - started
        rows.append(
            ("after VACUUM", _count(path, "events"), _count(path, "tasks"), _size(path), vacuum_s)
        )
        print(
            f"{args.tasks} tasks x ({args.progress} progress events, {args.items} items);"
            f" 80% finished before the cut-off, 10% after, 10% running;"
            f" pruned {result.tasks} tasks, {result.events} events"
        )
        print()
        print("| ledger | events | task rows | file (db + wal) | seconds |")
        print("|---|---:|---:|---:|---:|")
        for name, events, tasks, size, seconds in rows:
            took = f"{seconds:.2f}" if seconds is not None else "-"
            print(f"| {name} | {events:,} | {tasks:,} | {size / 2**20:.1f} MiB | {took} |")


if __name__ == "__main__":
    main()
