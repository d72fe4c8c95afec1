"""Ledger throughput: durable appends with 1/10/100 concurrent appenders, a raw sqlite3
baseline on the same schema in the same run, and replay read throughput.

    .venv/bin/python benchmarks/bench_ledger.py [--events N] [--dir PATH]

Every append is a ``task_progress`` event for one of 1000 submitted tasks (the poller's
steady-state load): it is validated, folded into the tasks projection in the same
transaction, committed with ``synchronous=FULL`` and acknowledged. The raw baseline inserts
the same rows into the same ``events`` table with ``executemany`` in transactions of 100 and
1000 rows (WAL, ``synchronous=FULL``), without projections. Files go to ``--dir`` (default: a
temporary folder on the same disk as this checkout, never a tmpfs, so fsync costs are real).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import tempfile
import time
from pathlib import Path

from radical.orbit.ledger import Ledger, SubmitRequested, TaskProgress, TaskSubmitted
from radical.orbit.ledger.events import TransferItem, TransferRequest
from radical.orbit.ledger.schema import connect, split_statements
from radical.orbit.migrations import load_migrations

__all__ = ["main"]

TASKS = 1000


def _submits(n: int) -> list[SubmitRequested | TaskSubmitted]:
    request = TransferRequest(
        source="src", destination="dst", items=(TransferItem(source="/a", destination="/b"),)
    )
    events: list[SubmitRequested | TaskSubmitted] = []
    for i in range(n):
        events.append(
            SubmitRequested(
                owner="bench",
                session_id=f"s{i % 10}",
                submission_id=f"sub-{i}",
                type="TRANSFER",
                request=request,
            )
        )
        events.append(
            TaskSubmitted(
                owner="bench", session_id=f"s{i % 10}", submission_id=f"sub-{i}", task_id=f"t{i}"
            )
        )
    return events


async def _appenders(ledger: Ledger, *, appenders: int, total: int) -> tuple[float, float]:
    """Seconds to append ``total`` events from ``appenders`` tasks; events per commit."""
    per = total // appenders
    commits_before = ledger.commits

    async def one(worker: int) -> None:
        rng = random.Random(worker)
        for i in range(per):
            await ledger.append(
                TaskProgress(
                    task_id=f"t{rng.randrange(TASKS)}",
                    bytes_transferred=i * 1000,
                    files_transferred=i,
                    nice_status="OK",
                )
            )

    start = time.perf_counter()
    await asyncio.gather(*(one(w) for w in range(appenders)))
    elapsed = time.perf_counter() - start
    commits = max(1, ledger.commits - commits_before)
    return elapsed, per * appenders / commits


def _raw_baseline(path: Path, *, total: int, batch: int) -> float:
    """Seconds to insert ``total`` event rows, ``batch`` rows per durable transaction."""
    conn = connect(path)
    conn.execute("BEGIN")
    for migration in load_migrations():
        for statement in split_statements(migration.sql):
            conn.execute(statement)
    conn.execute("COMMIT")
    rng = random.Random(0)
    seq = 0
    start = time.perf_counter()
    for _ in range(total // batch):
        rows = []
        now = time.time()
        for i in range(batch):
            seq += 1
            task_id = f"t{rng.randrange(TASKS)}"
            data = {
                "task_id": task_id,
                "status": "ACTIVE",
                "nice_status": "OK",
                "label": None,
                "bytes_transferred": i * 1000,
                "files_transferred": i,
            }
            rows.append((seq, now, "task_progress", "bench", "s1", task_id, json.dumps(data)))
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO events (seq, time, kind, owner, session_id, task_id, data) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed


async def _run(folder: Path, *, events: int) -> list[tuple[str, int, float, str]]:
    rows: list[tuple[str, int, float, str]] = []
    path = folder / "ledger.db"
    ledger = await Ledger.open(path)
    try:
        await ledger.append_many(_submits(TASKS))
        for appenders, total in ((1, max(events // 50, 200)), (10, events // 5), (100, events)):
            elapsed, per_commit = await _appenders(ledger, appenders=appenders, total=total)
            rows.append(
                (
                    f"ledger.append, {appenders} appender(s)",
                    total,
                    total / elapsed,
                    f"{per_commit:.1f} events/commit",
                )
            )
        head = await ledger.head()
        start = time.perf_counter()
        count = 0
        async for _ in ledger.events_since(0):
            count += 1
        elapsed = time.perf_counter() - start
        assert count == head, (count, head)
        rows.append(("replay events_since(0)", count, count / elapsed, "page 1000"))
    finally:
        await ledger.close()
    for batch in (100, 1000):
        raw = folder / f"raw{batch}.db"
        elapsed = _raw_baseline(raw, total=events, batch=batch)
        rows.append(
            (f"raw sqlite3 executemany, batch {batch}", events, events / elapsed, "events only")
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000, help="events at 100 appenders")
    parser.add_argument("--dir", type=Path, default=None, help="folder for the database files")
    args = parser.parse_args(argv)
    base = args.dir or Path(__file__).resolve().parent.parent / "build"
    base.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="bench-ledger-", dir=base))
    try:
        rows = asyncio.run(_run(folder, events=args.events))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(f"{'ledger benchmark':<42} {'events':>9} {'events/s':>11}  note")
    for name, count, rate, note in rows:
        print(f"{name:<42} {count:>9} {rate:>11,.0f}  {note}")
    rates = {name: rate for name, _, rate, _ in rows}
    at100 = rates["ledger.append, 100 appender(s)"]
    raw100 = rates["raw sqlite3 executemany, batch 100"]
    raw1000 = rates["raw sqlite3 executemany, batch 1000"]
    print(
        f"100 appenders vs raw: {at100 / raw100:.2f}x (batch 100), {at100 / raw1000:.2f}x "
        f"(batch 1000); targets: >= 50,000/s at 100 appenders, >= 0.4x raw, "
        f"replay >= 200,000/s"
    )


if __name__ == "__main__":
    main()
